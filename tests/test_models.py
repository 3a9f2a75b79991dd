"""Every registered builder: shape, parameter count, and one real training step."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.config import MODEL_SCHEMAS
from cnnlab.models import BUILDERS, build_model

# Parameter counts the reference models are known by, on their reference input.
REFERENCE = {
    "mlp": ((28, 28, 1), 10, 669_706),
    "small_cnn": ((28, 28, 1), 10, 104_202),
    "deep_cnn": ((28, 28, 1), 10, 936_426),
    "lenet5": ((28, 28, 1), 10, 61_706),
    "strided_cnn": ((28, 28, 1), 10, 327_242),  # Deotte's Kaggle kernel summary
    "alexnet_lite": ((32, 32, 3), 10, 1_465_930),
    # Counted by hand: stem 312; blocks 51,200, 739,328, 1,181,696; dense 2,570.
    "airbench": ((32, 32, 3), 10, 1_975_106),
    # Chollet, Deep Learning with Python 2nd ed. (ch. 8) and 1st ed. (5.3) model summaries.
    "convnet": ((180, 180, 3), 2, 991_041),
    "vgg16": ((150, 150, 3), 2, 16_812_353),
    # keras.applications' MobileNetV3Small without its top (939,120) and a sigmoid unit on its
    # 576 pooled features.
    "pretrained": ((96, 96, 3), 2, 939_697),
}
# The smallest inputs the tests use: the MNIST shape, or what each architecture needs.
SMALL = {
    "alexnet_lite": (32, 32, 3), "convnet": (80, 80, 3), "vgg16": (32, 32, 3),
    "pretrained": (32, 32, 3),
}  # fmt: skip


# One batch through a builder runs eagerly: tracing a graph for it takes seconds per builder,
# and the tiny runs of the shipped configs train the builders' graphs. strided_cnn's shipped
# configs read the Kaggle CSVs, which a fresh clone lacks, so its graph is traced here.
TRACED = {"strided_cnn"}


def small_shape(name: str, channels: int | None = None) -> tuple[int, int, int]:
    shape = SMALL.get(name, (28, 28, 1))
    return shape if channels is None else (*shape[:2], channels)


def default_cfg(name: str, **kwargs):
    if name in ("vgg16", "pretrained"):
        kwargs.setdefault("weights", "none")  # ImageNet weights would be downloaded
    if name == "pretrained":
        kwargs.setdefault("backbone", "MobileNetV3Small")
    return MODEL_SCHEMAS[name](builder=name, **kwargs)


def test_every_builder_has_a_reference_parameter_count():
    assert set(REFERENCE) == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_reference_parameter_count(name):
    shape, classes, params = REFERENCE[name]
    model = build_model(default_cfg(name), shape, classes)
    assert model.count_params() == params
    assert model.output_shape == (None, 1 if classes == 2 else classes)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_one_step_on_raw_pixels_gives_finite_loss(name):
    import keras

    from cnnlab.config import TrainConfig
    from cnnlab.training.phases import build_step_state, compile_model

    keras.utils.set_random_seed(0)
    shape = small_shape(name)
    model = build_model(default_cfg(name), shape, 10)
    compile_model(model, TrainConfig(), train_size=16)
    model.run_eagerly = name not in TRACED
    x = np.random.default_rng(0).integers(0, 256, (16, *shape), dtype=np.uint8)
    y = np.arange(16) % 10
    build_step_state(model, x[:1], y[:1])  # as a phase does before fitting
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss[0] if isinstance(loss, list) else loss)
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_a_phase_traces_its_train_step_once():
    # The optimizer's slots and the metrics' totals exist before fit: TensorFlow traces the
    # step once, not again after a first call that created them (seconds per phase).
    import keras

    from cnnlab.config import TrainConfig
    from cnnlab.training.phases import build_step_state, compile_model

    traces = []

    class Counted(keras.Model):
        def train_step(self, data):
            traces.append(len(traces))  # Python runs once per trace, not per step
            return super().train_step(data)

    built = build_model(default_cfg("mlp"), (28, 28, 1), 10)
    model = Counted(inputs=built.input, outputs=built.output)
    compile_model(model, TrainConfig(), train_size=64)
    x = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
    y = np.arange(64) % 10
    build_step_state(model, x[:1], y[:1])
    assert model.optimizer.built and model.metrics_names == ["loss", "compile_metrics"]
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert traces == [0]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_colour_input_and_other_class_counts(name):
    shape = small_shape(name, channels=3)
    model = build_model(default_cfg(name), (max(32, shape[0]), max(32, shape[1]), 3), 7)
    assert model.input_shape == (None, max(32, shape[0]), max(32, shape[1]), 3)
    assert model.output_shape == (None, 7)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_two_classes_train_one_sigmoid_unit_with_binary_loss(name):
    import keras

    from cnnlab.config import TrainConfig
    from cnnlab.inference import class_probabilities
    from cnnlab.training.phases import build_step_state, compile_model

    keras.utils.set_random_seed(0)
    shape = small_shape(name)
    model = build_model(default_cfg(name), shape, 2)
    assert model.output_shape == (None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    compile_model(model, TrainConfig(), train_size=16)
    model.run_eagerly = name not in TRACED
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy)
    x = np.random.default_rng(0).integers(0, 256, (16, *shape), dtype=np.uint8)
    y = np.arange(16) % 2
    build_step_state(model, x[:1], y[:1])
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and 0 <= logs["accuracy"] <= 1
    probs = class_probabilities(model, x)
    assert probs.shape == (16, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[:, 1], model.predict(x, verbose=0)[:, 0], rtol=1e-6)


def test_too_small_input_is_a_config_error_naming_the_builder():
    from cnnlab.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="model.builder convnet cannot take images of 32x32x3"):
        build_model(default_cfg("convnet"), (32, 32, 3), 2)


def test_configurable_widths_change_the_model():
    from cnnlab.config.models import DeepCnnModel, MlpModel

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


AUGMENT_ALL = {
    "flip": "horizontal",
    "rotation": 10,
    "zoom": 0.1,
    "translation": 0.1,
    "contrast": 0.2,
    "fill_mode": "constant",
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_augmentation_acts_in_training_only_and_adds_no_parameters(name):
    import keras

    shape = small_shape(name)
    plain = build_model(default_cfg(name), shape, 10)
    model = build_model(default_cfg(name, augmentation=AUGMENT_ALL), shape, 10)
    assert model.count_params() == plain.count_params()
    names = {layer.name for layer in model.layers}
    assert {"random_flip", "random_affine", "random_contrast"} <= names
    # The augmented tensor: after the last transform.
    probe = keras.Model(model.input, model.get_layer("random_contrast").output)
    x = np.random.default_rng(1).integers(0, 256, (8, *shape), dtype=np.uint8)
    np.testing.assert_allclose(probe(x, training=False), x / 255, atol=1e-6)
    assert not np.allclose(probe(x, training=True), x / 255, atol=1e-3)


def test_only_the_transforms_asked_for_are_added():
    cfg = MODEL_SCHEMAS["small_cnn"](builder="small_cnn", augmentation={"rotation": 15})
    names = [layer.name for layer in build_model(cfg, (28, 28, 1), 10).layers]
    assert [n for n in names if n.startswith("random_")] == ["random_affine"]


def test_xla_is_left_off_for_the_affine_augmentation_on_tensorflow():
    import warnings

    affine = MODEL_SCHEMAS["small_cnn"](builder="small_cnn", augmentation={"translation": 0.1})
    flip = MODEL_SCHEMAS["small_cnn"](builder="small_cnn", augmentation={"flip": "horizontal"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Proceeding with jit_compile=False"
        for cfg, compiled in ((affine, False), (flip, True)):
            model = build_model(cfg, (28, 28, 1), 10)
            model.compile(loss="sparse_categorical_crossentropy", jit_compile=True)
            assert model.jit_compile is compiled


def test_augmented_model_saves_and_loads(tmp_path):
    import keras

    cfg = MODEL_SCHEMAS["deep_cnn"](builder="deep_cnn", augmentation=AUGMENT_ALL)
    model = build_model(cfg, (28, 28, 1), 10)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(2).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_float32_weights_and_output(policy):
    import keras

    from cnnlab.utils.environment import dtype_policy

    with dtype_policy(policy):
        model = build_model(default_cfg("strided_cnn"), (28, 28, 1), 10)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    conv = model.get_layer(index=2)
    assert conv.compute_dtype == policy.removeprefix("mixed_")
    assert all(w.dtype == "float32" for w in model.weights)
    assert model.get_layer("predictions").compute_dtype == "float32"
    x = np.random.default_rng(3).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    probs = model.predict(x, verbose=0)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def _transform(image, **params):
    """One image through affine_matrix and Keras' affine_transform, fill 0, nearest pixels."""
    from keras import ops

    from cnnlab.models.layers import affine_matrix

    h, w = image.shape[:2]
    p = {"angle": 0.0, "scale": 1.0, "shift_x": 0.0, "shift_y": 0.0, **params}
    matrix = affine_matrix(*(np.array([p[k]], "float32") for k in p), h, w)
    out = ops.image.affine_transform(
        image[None].astype("float32"), matrix, interpolation="nearest", fill_mode="constant"
    )
    return np.asarray(ops.convert_to_numpy(out))[0]


def test_affine_matrix_shifts_rotates_and_zooms_as_documented():
    image = np.arange(1, 37, dtype="float32").reshape(6, 6, 1)
    shifted = _transform(image, shift_x=2.0, shift_y=1.0)
    expected = np.zeros_like(image)
    expected[1:, 2:] = image[:-1, :-2]
    np.testing.assert_array_equal(shifted, expected)
    # A positive angle turns the image clockwise as seen on screen (rows go down, so the
    # mathematically positive sense is clockwise): the top-left pixel moves to the top right.
    turned = _transform(image, angle=np.pi / 2)
    np.testing.assert_array_equal(turned, np.rot90(image, k=-1))
    assert turned[0, -1, 0] == image[0, 0, 0]
    np.testing.assert_array_equal(_transform(image, angle=0.0, scale=1.0), image)
    # Zooming in by 2 about the centre: the centre pixels spread over the middle.
    zoomed = _transform(np.pad(np.ones((2, 2, 1), "float32"), ((2, 2), (2, 2), (0, 0))), scale=2.0)
    assert zoomed[1:5, 1:5].all() and zoomed.sum() == 16


def test_random_affine_is_one_resampling_in_training_only():
    from cnnlab.models.layers import RandomAffine

    layer = RandomAffine(rotation=10, zoom=0.1, translation=0.1, fill_mode="constant", seed=1)
    x = np.random.default_rng(4).random((16, 28, 28, 1)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    moved = np.asarray(layer(x, training=True))
    assert moved.shape == x.shape
    # Different images get different transforms.
    diffs = np.abs(moved - x).reshape(16, -1).mean(axis=1)
    assert (diffs > 0).all() and len(np.unique(diffs.round(6))) > 1
    assert RandomAffine.from_config(layer.get_config()).get_config() == layer.get_config()


def test_flops_count_the_nested_base():
    from cnnlab.commands.check import count_flops

    # VGG16's convolutions at 224x224: 15.35 G multiply-adds (Simonyan & Zisserman's 15.5 G
    # includes the dense top this model leaves out).
    model = build_model(default_cfg("vgg16", dense_units=[]), (224, 224, 3), 10)
    head = 2 * 7 * 7 * 512 * 10
    assert count_flops(model) == 2 * 15_346_630_656 + head


def test_label_smoothing_matches_the_formula_and_survives_saving(tmp_path):
    from cnnlab.config import TrainConfig
    from cnnlab.runs import load_model_file
    from cnnlab.training.phases import compile_model

    model = build_model(default_cfg("mlp", units=[8]), (6, 6, 1), 4)
    compile_model(model, TrainConfig(label_smoothing=0.2), train_size=8)
    x = np.random.default_rng(5).integers(0, 256, (8, 6, 6, 1), dtype=np.uint8)
    y = np.arange(8) % 4
    probs = model.predict(x, verbose=0).astype(np.float64)
    # Targets: 1 - 0.2 + 0.2/4 for the true class, 0.2/4 for the three others.
    targets = np.full((8, 4), 0.05)
    targets[np.arange(8), y] = 0.85
    expected = -(targets * np.log(probs)).sum(axis=1).mean()
    loss = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(expected, rel=1e-4)
    plain = -np.log(probs[np.arange(8), y]).mean()
    assert abs(loss - plain) > 1e-3  # smoothing changes the loss
    model.save(tmp_path / "m.keras")
    loaded = load_model_file(tmp_path / "m.keras")
    assert type(loaded.loss).__name__ == "SparseSmoothedCrossentropy"
    assert loaded.loss.label_smoothing == 0.2
    assert loaded.evaluate(x, y, verbose=0, return_dict=True)["loss"] == pytest.approx(loss)
