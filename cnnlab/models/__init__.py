"""Model builders: `BUILDERS[cfg.model.builder](cfg.model, input_shape, num_classes)`.

Each returns an uncompiled keras.Model that takes raw uint8 pixels (scaling is its first layer).
The registry key is the `model.builder` name in YAML and the function's name; the config schema
for each lives in cnnlab.config.MODEL_SCHEMAS under the same key.
"""

from cnnlab.errors import ConfigError
from cnnlab.models.cnn import (
    airbench,
    alexnet_lite,
    convnet,
    deep_cnn,
    lenet5,
    small_cnn,
    strided_cnn,
)
from cnnlab.models.dense import mlp
from cnnlab.models.transfer import vgg16

BUILDERS = {
    "mlp": mlp,
    "small_cnn": small_cnn,
    "deep_cnn": deep_cnn,
    "lenet5": lenet5,
    "strided_cnn": strided_cnn,
    "airbench": airbench,
    "alexnet_lite": alexnet_lite,
    "convnet": convnet,
    "vgg16": vgg16,
}


def build_model(model_cfg, input_shape: tuple[int, ...], num_classes: int):
    """Build the (uncompiled) model a config's `model` block describes.

    Raises:
        ConfigError: the architecture cannot take images of `input_shape` (too small for its
            convolutions and poolings).
    """
    try:
        return BUILDERS[model_cfg.builder](model_cfg, input_shape, num_classes)
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"model.builder {model_cfg.builder} cannot take images of "
            f"{'x'.join(map(str, input_shape))} ({first}); use larger images (data.resize or "
            "data.image_size) or fewer layers"
        ) from None


__all__ = ["BUILDERS", "build_model"]
