"""A phase's optimizer: Nesterov SGD, decoupled weight decay, per-variable learning-rate
multipliers, warmup then linear or cosine decay, the weight average; each on a small model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cnnlab.config import TrainConfig
from cnnlab.models.optimizers import WarmupLinearDecay, learning_rate, make_optimizer
from cnnlab.utils.errors import CnnlabError


def bn_model() -> keras.Model:
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(scale=False)(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_warmup_then_linear_decay_as_airbench():
    schedule = WarmupLinearDecay(1.5, decay_steps=100, warmup_steps=23, start=0.2, end=0.07)
    rates = [float(schedule(step)) for step in (0, 23, 100, 200)]
    assert rates == pytest.approx([0.3, 1.5, 0.105, 0.105])
    assert float(schedule(11.5)) == pytest.approx(1.5 * 0.6)  # half way up
    assert float(schedule(61.5)) == pytest.approx(1.5 * (1 + 0.07) / 2)  # half way down
    again = WarmupLinearDecay.from_config(schedule.get_config())
    assert float(again(40)) == pytest.approx(float(schedule(40)))


def test_the_schedules_span_the_phase_steps():
    keys = {"epochs": 4, "learning_rate": 1.0, "warmup": 0.25, "warmup_from": 0.1, "lr_end": 0.2}
    linear = learning_rate(TrainConfig(lr_schedule="linear", **keys), steps_per_epoch=10)
    cosine = learning_rate(TrainConfig(lr_schedule="cosine", **keys), steps_per_epoch=10)
    for schedule in (linear, cosine):
        assert float(schedule(0)) == pytest.approx(0.1)
        assert float(schedule(10)) == pytest.approx(1.0)
        assert float(schedule(40)) == pytest.approx(0.2, abs=1e-6)
    # Without warmup keys, cosine is Keras' decay to 0, as before they existed.
    plain = learning_rate(TrainConfig(lr_schedule="cosine", epochs=2), steps_per_epoch=5)
    assert float(plain(0)) == pytest.approx(1e-3) and float(plain(10)) == pytest.approx(0)
    assert learning_rate(TrainConfig(), steps_per_epoch=5) == 1e-3


def one_step(cfg: TrainConfig) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, value before, change) of each trainable variable of a fresh `bn_model` after one
    step on a gradient of 1 everywhere; the model's weights are seeded, so alike each time."""
    keras.utils.set_random_seed(0)
    model = bn_model()
    optimizer = make_optimizer(cfg, steps_per_epoch=1, model=model)
    before = [v.numpy().copy() for v in model.trainable_variables]
    grads = [keras.ops.ones(v.shape) for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)
    return [
        (v.name, old, v.numpy() - old)
        for v, old in zip(model.trainable_variables, before, strict=True)
    ]


def test_a_multiplied_rate_moves_its_variables_faster_and_decays_them_alike():
    plain = one_step(TrainConfig(optimizer="sgd", learning_rate=0.1))
    scaled = one_step(
        TrainConfig(optimizer="sgd", learning_rate=0.1, lr_multipliers={"beta": 64.0})
    )
    assert [name for name, _, _ in scaled] == ["kernel", "beta", "kernel", "bias"]
    for (name, _, step), (_, _, plain_step) in zip(scaled, plain, strict=True):
        np.testing.assert_allclose(step, plain_step * (64.0 if name == "beta" else 1.0), rtol=1e-6)
    # Weight decay is applied apart from the step, at the base rate (a multiplier does not
    # scale it): each weight also shrinks by learning_rate x weight_decay of itself.
    decayed = one_step(
        TrainConfig(
            optimizer="sgd", learning_rate=0.1, weight_decay=0.5, lr_multipliers={"beta": 64.0}
        )
    )
    for name, old, step in decayed:
        rate = 0.1 * (64.0 if name == "beta" else 1.0)
        np.testing.assert_allclose(step, -rate - 0.1 * 0.5 * old, rtol=1e-5, atol=1e-7)


def test_nesterov_and_the_weight_average_reach_keras():
    cfg = TrainConfig(
        optimizer="sgd", learning_rate=0.1, momentum=0.85, nesterov=True,
        ema={"momentum": 0.9, "overwrite_every": 5},
    )  # fmt: skip
    optimizer = make_optimizer(cfg, steps_per_epoch=1)
    assert optimizer.nesterov and optimizer.momentum == 0.85
    assert optimizer.use_ema and optimizer.ema_momentum == 0.9
    assert optimizer.ema_overwrite_frequency == 5


def test_a_multiplier_for_no_variable_is_one_line():
    with pytest.raises(CnnlabError, match=r"no trainable variable .* named 'betta'; its names"):
        make_optimizer(TrainConfig(lr_multipliers={"betta": 2.0}), 1, bn_model())


def test_a_model_with_these_optimizers_saves_and_loads(tmp_path):
    model = bn_model()
    cfg = TrainConfig(
        optimizer="sgd", learning_rate=1.5, momentum=0.85, nesterov=True, weight_decay=0.01,
        lr_multipliers={"beta": 64.0}, lr_schedule="linear", warmup=0.2, warmup_from=0.2,
    )  # fmt: skip
    model.compile(make_optimizer(cfg, 10, model), "mse")
    model.fit(np.ones((8, 3)), np.zeros((8, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    from cnnlab.runs import load_model_file

    loaded = load_model_file(tmp_path / "m.keras")
    assert loaded.optimizer.lr_multipliers == {"beta": 64.0}
    assert int(loaded.optimizer.iterations) == 1
    assert isinstance(loaded.optimizer._learning_rate, WarmupLinearDecay)


def test_a_rising_average_follows_airbench_lookahead_schedule():
    cfg = TrainConfig(
        optimizer="sgd", learning_rate=0.1, epochs=2,
        ema={"momentum": 0.95, "overwrite_every": 5, "rise": True},
    )  # fmt: skip
    model = bn_model()
    optimizer = make_optimizer(cfg, steps_per_epoch=50, model=model)
    assert optimizer.ema_momentum == 0.95  # before any step: the configured value
    optimizer.build(model.trainable_variables)
    for step, expected in ((0, 0.0), (50, 0.95 * 0.5**0.6), (100, 0.95), (150, 0.95)):
        optimizer.iterations.assign(step)
        assert float(optimizer.ema_momentum) == pytest.approx(expected, rel=1e-5)
    # Per copy of 5 steps the average keeps momentum ** 5 of itself: 0.95 ** 5 x progress ** 3.
    optimizer.iterations.assign(50)
    assert float(optimizer.ema_momentum) ** 5 == pytest.approx(0.95**5 * 0.5**3, rel=1e-4)
    assert optimizer.get_config()["ema_momentum"] == 0.95
    assert optimizer.get_config()["ema_rise_steps"] == 100


@pytest.mark.subprocess
def test_without_cnnlab_keys_the_model_loads_in_plain_keras(tmp_path):
    """A run that uses none of cnnlab's optimizer keys saves Keras' own optimizer class, so its
    model.keras loads where cnnlab is not installed."""
    import subprocess
    import sys

    cfg = TrainConfig(optimizer="rmsprop", learning_rate=1e-3, lr_schedule="cosine")
    optimizer = make_optimizer(cfg, 10)
    assert type(optimizer) is keras.optimizers.RMSprop
    model = bn_model()
    model.compile(optimizer, "mse")
    model.fit(np.ones((8, 3)), np.zeros((8, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    load = "import keras, sys; keras.models.load_model(sys.argv[1]); print('cnnlab' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", load, str(tmp_path / "m.keras")], capture_output=True, text=True,
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def conv_model() -> keras.Model:
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(scale=False)(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def newton_schulz(matrix: np.ndarray, steps: int) -> np.ndarray:
    """airbench94_muon's zeropower_via_newtonschulz5, in float64 NumPy."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = matrix / np.linalg.norm(matrix)
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T
    for _ in range(steps):
        square = x @ x.T
        x = a * x + (b * square + c * square @ square) @ x
    return x if wide else x.T


def test_muon_orthogonalises_the_kernels_steps_and_leaves_the_rest_to_sgd():
    cfg = TrainConfig(
        optimizer="muon", learning_rate=0.1, momentum=0.85, nesterov=True, weight_decay=0.5,
        muon={"learning_rate": 0.3, "momentum": 0.6, "ns_steps": 3},
        lr_multipliers={"beta": 64.0}, lr_schedule="linear", warmup=0.5, warmup_from=0.5,
    )  # fmt: skip
    keras.utils.set_random_seed(0)
    model = conv_model()
    optimizer = make_optimizer(cfg, steps_per_epoch=10, model=model)
    variables = model.trainable_variables
    assert [v.name for v in variables] == ["kernel", "beta", "kernel", "bias"]
    before = [v.numpy().astype("float64") for v in variables]
    grads = [np.random.default_rng(i).normal(size=v.shape) for i, v in enumerate(variables)]
    optimizer.apply([keras.ops.convert_to_tensor(g, "float32") for g in grads], variables)
    rate = 0.5  # the first step of a warmup from half the rate
    # The conv kernel: rescaled to norm sqrt(4 filters), then moved by its Nesterov update
    # (g + 0.6 x g on the first step) orthogonalised as a (3 x 3 x 3, 4) matrix, at the muon
    # rate on the schedule; no weight decay and no multiplier.
    kernel, grad = before[0], grads[0]
    rescaled = kernel * 2.0 / np.linalg.norm(kernel)
    step = newton_schulz((1.6 * grad).reshape(-1, 4), 3).reshape(kernel.shape)
    np.testing.assert_allclose(variables[0].numpy(), rescaled - 0.3 * rate * step, atol=2e-5)
    # The others: Nesterov SGD (g + 0.85 x g) at the base rate on the schedule, beta's
    # multiplied, every one decayed by rate x 0.1 x 0.5 of itself.
    for variable, old, grad, factor in zip(
        variables[1:], before[1:], grads[1:], (64, 1, 1), strict=True
    ):
        expected = old - 0.1 * rate * 0.5 * old - 0.1 * rate * factor * 1.85 * grad
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_muon_steps_along_the_nesterov_momentum_of_each_kernel():
    cfg = TrainConfig(optimizer="muon", learning_rate=0.1, muon={"momentum": 0.5, "ns_steps": 5})
    model = conv_model()
    optimizer = make_optimizer(cfg, steps_per_epoch=10, model=model)
    kernel, *others = model.trainable_variables
    first, second = (np.random.default_rng(i).normal(size=kernel.shape) for i in (1, 2))
    for grad in (first, second):
        before = kernel.numpy().astype("float64")
        grads = [keras.ops.convert_to_tensor(grad, "float32")]
        optimizer.apply(grads + [keras.ops.zeros(v.shape) for v in others], [kernel, *others])
    # The buffer is 0.5 x first + second; the step follows second + 0.5 x that buffer.
    (momentum,) = [m for m in optimizer.muon_momentums if m is not None]
    np.testing.assert_allclose(momentum.numpy(), 0.5 * first + second, rtol=1e-5, atol=1e-6)
    update = newton_schulz((1.5 * second + 0.25 * first).reshape(-1, 4), 5).reshape(kernel.shape)
    expected = before * 2.0 / np.linalg.norm(before) - 0.02 * update
    np.testing.assert_allclose(kernel.numpy(), expected, atol=2e-5)


def test_muon_keys_need_optimizer_muon():
    with pytest.raises(ValueError, match="muon needs optimizer: muon"):
        TrainConfig(optimizer="sgd", muon={"learning_rate": 0.2})
    assert TrainConfig(optimizer="muon", momentum=0.9, nesterov=True).muon is None


def test_a_model_trained_by_muon_saves_and_loads_with_its_state(tmp_path):
    model = conv_model()
    cfg = TrainConfig(optimizer="muon", learning_rate=0.5, muon={"learning_rate": 0.2})
    model.compile(make_optimizer(cfg, 10, model), "mse")
    model.fit(np.ones((8, 6, 6, 3)), np.zeros((8, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    from cnnlab.runs import load_model_file

    loaded = load_model_file(tmp_path / "m.keras").optimizer
    assert type(loaded).__name__ == "Muon"
    assert (loaded.muon_scale, loaded.muon_momentum, loaded.ns_steps) == (0.4, 0.95, 5)
    saved = [m for m in model.optimizer.muon_momentums if m is not None]
    restored = [m for m in loaded.muon_momentums if m is not None]
    np.testing.assert_allclose(restored[0].numpy(), saved[0].numpy())
