"""Model builders: `BUILDERS[cfg.model.builder](cfg.model, input_shape, num_classes)`.

Each returns an uncompiled keras.Model that takes raw uint8 pixels (scaling is its first layer).
A builder is a function filed with `@register_builder` (cnnlab.models.registry): its name is
the `model.builder` name in YAML, and cnnlab.config.MODEL_SCHEMAS holds its schema under it.
"""

from cnnlab.models import cnn, dense, transfer  # noqa: F401  (each registers its builders)
from cnnlab.models.registry import BUILDERS
from cnnlab.utils.errors import ConfigError, first_line


def build_model(model_cfg, input_shape: tuple[int, ...], num_classes: int):
    """Build the (uncompiled) model a config's `model` block describes.

    Raises:
        ConfigError: the architecture cannot take images of `input_shape` (too small for its
            convolutions and poolings).
    """
    try:
        return BUILDERS[model_cfg.builder](model_cfg, input_shape, num_classes)
    except ValueError as e:
        raise ConfigError(
            f"model.builder {model_cfg.builder} cannot take images of "
            f"{'x'.join(map(str, input_shape))} ({first_line(e)}); use larger images "
            "(data.resize or data.image_size) or fewer layers"
        ) from None


# Training images the whitening stem's statistics are computed from (airbench uses 5,000).
ADAPT_IMAGES = 5000


def adapt_model(model, x_train) -> list[str]:
    """Set the layers whose weights come from data (the whitening stem) from the first
    ADAPT_IMAGES training images, as those layers receive them; the names of the layers set.
    Called on a new model before fit, with the training split only."""
    import keras

    from cnnlab.data.pipeline import predict
    from cnnlab.models.layers import PatchWhitening

    adapted = []
    for layer in model.layers:
        if isinstance(layer, PatchWhitening):
            reaches = keras.Model(model.input, layer.input)  # augmentation off: training=False
            layer.adapt(predict(reaches, x_train[:ADAPT_IMAGES], 500))
            adapted.append(layer.name)
    return adapted


__all__ = ["ADAPT_IMAGES", "BUILDERS", "adapt_model", "build_model"]
