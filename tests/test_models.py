"""Every registered builder: shape, parameter count, and one real training step."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.config import MODEL_SCHEMAS
from cnnlab.models import BUILDERS, build_model

# Parameter counts on MNIST (28x28x1, 10 classes) that the reference models are known by.
MNIST_PARAMS = {"mlp": 669_706, "small_cnn": 104_202, "deep_cnn": 936_426, "lenet5": 61_706}


def default_cfg(name: str):
    return MODEL_SCHEMAS[name](builder=name)


def test_every_builder_has_a_known_mnist_parameter_count():
    assert set(MNIST_PARAMS) == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_mnist_parameter_count(name):
    model = build_model(default_cfg(name), (28, 28, 1), 10)
    assert model.count_params() == MNIST_PARAMS[name]
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_one_step_on_raw_pixels_gives_finite_loss(name):
    import keras

    from cnnlab.config import TrainConfig
    from cnnlab.train import compile_model

    keras.utils.set_random_seed(0)
    model = build_model(default_cfg(name), (28, 28, 1), 10)
    compile_model(model, TrainConfig(), train_size=16)
    x = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
    y = np.arange(16) % 10
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss[0] if isinstance(loss, list) else loss)
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_colour_input_and_other_class_counts(name):
    model = build_model(default_cfg(name), (32, 32, 3), 7)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 7)


def test_configurable_widths_change_the_model():
    from cnnlab.config import DeepCnnModel, MlpModel

    mlp = build_model(MlpModel(builder="mlp", units=[32]), (28, 28, 1), 10)
    assert mlp.count_params() == 784 * 32 + 32 + 32 * 10 + 10
    deep = build_model(
        DeepCnnModel(builder="deep_cnn", filters=[8], dense_units=[16]), (28, 28, 1), 10
    )
    # two 3x3 convs of 8, pool to 14x14x8, dense 16, output 10
    assert deep.count_params() == (9 * 8 + 8) + (9 * 8 * 8 + 8) + (14 * 14 * 8 * 16 + 16) + 170


def test_scaling_is_inside_the_model():
    model = build_model(default_cfg("mlp"), (28, 28, 1), 10)
    assert model.layers[1].name == "scale"
    assert model.layers[1].scale == pytest.approx(1 / 255)
