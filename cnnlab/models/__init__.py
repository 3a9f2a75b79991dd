"""Model builders: `BUILDERS[cfg.model.builder](cfg.model, input_shape, num_classes)`.

Each returns an uncompiled keras.Model that takes raw uint8 pixels (scaling is its first layer).
A builder is a function filed with `@register_builder` (cnnlab.models.registry): its name is
the `model.builder` name in YAML, and cnnlab.config.MODEL_SCHEMAS holds its schema under it.
"""

from cnnlab.models import cnn, dense, transfer  # noqa: F401  (each registers its builders)
from cnnlab.models.registry import BUILDERS
from cnnlab.utils.errors import ConfigError, first_line


def build_model(model_cfg, input_shape: tuple[int, ...], num_classes: int, data_cfg=None):
    """Build the (uncompiled) model a config's `model` block describes.

    Args:
        data_cfg: the config's `data` block: an error then names the setting of that loader
            that gives images the model can take; with several labels per image
            (`data_cfg.multi_label`) the model ends in one sigmoid per class.

    Raises:
        ConfigError: the architecture cannot take images of `input_shape` (too small for its
            convolutions and poolings).
    """
    try:
        model = BUILDERS[model_cfg.builder](model_cfg, input_shape, num_classes)
    except ValueError as e:
        fix = "use larger images or fewer layers"
        smallest = _smallest_side(model_cfg, input_shape, num_classes)
        if data_cfg is not None and smallest is not None:
            from cnnlab.config import InputNeeds

            fix = data_cfg.how_to_give(InputNeeds(smallest, input_shape[-1]))
        raise ConfigError(
            f"model.builder {model_cfg.builder} cannot take images of "
            f"{'x'.join(map(str, input_shape))} ({first_line(e)}); {fix}"
        ) from None
    if data_cfg is not None and data_cfg.multi_label:
        from cnnlab.models.common import multi_label_head

        model = multi_label_head(model, num_classes)
    return model


def _smallest_side(model_cfg, input_shape: tuple[int, ...], num_classes: int) -> int | None:
    """The smallest square side (up to 1,024) the builder takes, by building it: None if
    none does."""

    def builds(side: int) -> bool:
        try:
            BUILDERS[model_cfg.builder](model_cfg, (side, side, input_shape[-1]), num_classes)
        except ValueError:
            return False
        return True

    low, high = max(input_shape[:2]), None  # low fails
    side = low
    while high is None and side < 1024:
        side = min(side * 2, 1024)
        if builds(side):
            high = side
        else:
            low = side
    if high is None:
        return None
    while high - low > 1:  # the first side that builds
        middle = (low + high) // 2
        low, high = (low, middle) if builds(middle) else (middle, high)
    return high


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
