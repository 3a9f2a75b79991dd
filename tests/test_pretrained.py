"""The `pretrained` builder: keras.applications' classifiers as frozen bases under a new head,
built with `weights: none` or weights files written here (no network)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.config.models import BACKBONES, PretrainedModel
from cnnlab.utils.errors import ConfigError

from .helpers import invoke
from .images import write_class_folders

LISTED = [
    "MobileNetV3Small", "MobileNetV3Large", "EfficientNetV2B0", "EfficientNetV2B1",
    "EfficientNetV2B2", "EfficientNetV2B3", "ConvNeXtTiny", "ResNet50V2", "Xception",
    "DenseNet121", "VGG16",
]  # fmt: skip


def side(backbone: str) -> int:
    return max(32, BACKBONES[backbone][0])


def build(backbone: str, classes: int = 3, **kwargs):
    from cnnlab.models import build_model

    cfg = PretrainedModel(builder="pretrained", backbone=backbone, **{"weights": "none", **kwargs})
    return build_model(cfg, (side(backbone), side(backbone), 3), classes)


@pytest.mark.parametrize("backbone", LISTED)
def test_the_base_is_keras_applications_own(backbone):
    import keras

    from cnnlab.models.transfer import FEATURES, find_base

    model = build(backbone)
    shape = (side(backbone), side(backbone), 3)
    own = getattr(keras.applications, backbone)(include_top=False, weights=None, input_shape=shape)
    base = find_base(model)
    assert base.count_params() == own.count_params() and not base.trainable
    features = model.get_layer(FEATURES).output.shape[-1]
    assert model.count_params() == own.count_params() + features * 3 + 3  # the softmax head


def test_a_weights_file_is_loaded_exactly(tmp_path):
    import keras

    from cnnlab.models.transfer import find_base

    keras.utils.set_random_seed(3)
    own = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = tmp_path / "mobilenet_v3_small_notop.weights.h5"
    own.save_weights(path)
    keras.utils.set_random_seed(4)  # other random weights, unless the file is read
    base = find_base(build("MobileNetV3Small", weights=str(path)))
    for ours, theirs in zip(base.get_weights(), own.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_imagenet_weights_out_of_reach_are_one_line_before_any_run(
    tmp_path, mnist_arrays, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # an empty cache
    root = write_class_folders(tmp_path / "photos", mnist_arrays, 4, size=40)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [40, 40]}}\n"
        "model: {builder: pretrained, backbone: MobileNetV3Small}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    result = invoke("train", config)
    (line,) = [x for x in result.output.splitlines() if x.startswith("error: ")]
    assert result.exit_code == 2  # a config error
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5 into " in line
    assert f"{tmp_path / 'keras' / 'models'}, or set model.weights to the file's path" in line
    assert not (tmp_path / "out").exists()  # nothing half-built


def test_a_backbone_s_smallest_input_is_checked_in_the_config(tmp_path):
    from cnnlab.config import load_config

    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {tmp_path}, image_size: [64, 64]}}\n"
        "model: {builder: pretrained, backbone: Xception, weights: none}\n"
    )
    with pytest.raises(
        ConfigError, match=r"at least 71x71.*data.image_size to at least \[71, 71\]"
    ):
        load_config(config)
    with pytest.raises(ConfigError, match="backbone: .*'Resnet50'"):
        load_config(config, ["model.backbone=Resnet50"])


def test_unfreezing_keeps_batchnorm_in_inference_mode():
    import keras

    from cnnlab.models.transfer import find_base, set_trainable

    model = build("MobileNetV3Small", classes=2)
    set_trainable(model, "all")
    base = find_base(model)
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    others = [layer for layer in base.layers if layer not in norms]
    assert base.trainable and all(layer.trainable for layer in others)
    # A training step changes the unfrozen weights and leaves the normalisation statistics.
    assert norms and not any(layer.trainable for layer in norms)
    kernels = [w.numpy().copy() for w in base.trainable_weights]
    before = [layer.moving_mean.numpy().copy() for layer in norms]
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    model.train_on_batch(x, np.array([0, 1, 0, 1]))
    for layer, mean in zip(norms, before, strict=True):
        np.testing.assert_array_equal(layer.moving_mean.numpy(), mean)
    after = [w.numpy() for w in base.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(after, kernels, strict=True))
