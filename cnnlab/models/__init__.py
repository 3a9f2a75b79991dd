"""Model builders: `BUILDERS[cfg.model.builder](cfg.model, input_shape, num_classes)`.

Each returns an uncompiled keras.Model that takes raw uint8 pixels (scaling is its first layer).
The registry key is the `model.builder` name in YAML and the function's name; the config schema
for each lives in cnnlab.config.MODEL_SCHEMAS under the same key.
"""

from cnnlab.models.cnn import deep_cnn, lenet5, small_cnn, strided_cnn
from cnnlab.models.dense import mlp

BUILDERS = {
    "mlp": mlp,
    "small_cnn": small_cnn,
    "deep_cnn": deep_cnn,
    "lenet5": lenet5,
    "strided_cnn": strided_cnn,
}


def build_model(model_cfg, input_shape: tuple[int, ...], num_classes: int):
    """Build the (uncompiled) model a config's `model` block describes."""
    return BUILDERS[model_cfg.builder](model_cfg, input_shape, num_classes)


__all__ = ["BUILDERS", "build_model"]
