"""Networks on a pretrained convolutional base (transfer learning)."""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from cnnlab.config.models import Vgg16Model
from cnnlab.models.common import EXACT, classifier, dense_stack, image_input
from cnnlab.models.layers import ImageNetPreprocess
from cnnlab.models.registry import register_builder
from cnnlab.utils.errors import ConfigError

FEATURES = "features"  # the layer whose output is the base's feature vector


@register_builder
def vgg16(cfg: Vgg16Model, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """VGG16's convolutional base, frozen, under a new head (Chollet's feature extraction).

    pixels → scale → [augmentation] → VGG16 preprocessing → base (inference mode) → pooling
    ("features") → dense layers → dropout → classifier. The base is a nested model named
    "vgg16"; `set_trainable` unfreezes its top layers for fine-tuning. 14,714,688 base
    parameters; with the default head on 150x150x3 and two classes, 16,812,353 in all.
    """
    inputs, x = image_input(input_shape, cfg.augmentation)
    base = _vgg16_base(cfg.weights, input_shape)
    base.trainable = False
    x = ImageNetPreprocess("caffe", name="vgg16_preprocess", **EXACT)(x)
    # training=False keeps the base in inference mode even when its layers are unfrozen
    # (matters for bases with BatchNormalization or dropout).
    x = base(x, training=False)
    if cfg.pooling == "flatten":
        x = layers.Flatten(name=FEATURES)(x)
    elif cfg.pooling == "avg":
        x = layers.GlobalAveragePooling2D(name=FEATURES)(x)
    else:
        x = layers.GlobalMaxPooling2D(name=FEATURES)(x)
    x = dense_stack(x, cfg.dense_units)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout)(x)
    return keras.Model(inputs, classifier(x, num_classes), name="vgg16_transfer")


def _vgg16_base(weights: str | Path, input_shape: tuple[int, ...]) -> keras.Model:
    if weights == "none":
        weights = None
    elif weights != "imagenet":
        weights = str(weights)
    try:
        return keras.applications.VGG16(
            include_top=False, weights=weights, input_shape=input_shape, name="vgg16"
        )
    except ValueError as e:  # wrong file contents or layer shapes
        raise ConfigError(f"model.weights: cannot use {weights}: {e}") from None
    except Exception as e:  # the ImageNet download: urllib raises a variety of errors offline
        if weights != "imagenet":
            raise ConfigError(f"model.weights: cannot load {weights}: {e}") from None
        raise ConfigError(
            f"model.weights: imagenet: cannot download the VGG16 weights ({type(e).__name__}: "
            f"{e}); download vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 elsewhere and "
            "set model.weights to its path"
        ) from None


def find_base(model: keras.Model) -> keras.Model | None:
    """The pretrained base nested in `model`, or None for a model trained from scratch."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if nested else None


def set_trainable(model: keras.Model, unfreeze: int | str) -> None:
    """Freeze the base but its top `unfreeze` layers ("all": none frozen); the head trains.

    Recompile afterwards: Keras fixes the trainable weights when a model is compiled.
    """
    base = find_base(model)
    if base is None:
        if unfreeze:
            raise ConfigError(f"{model.name} has no pretrained base to unfreeze")
        return
    base.trainable = bool(unfreeze)
    if unfreeze and unfreeze != "all":
        for layer in base.layers[: len(base.layers) - unfreeze]:
            layer.trainable = False


def split_at_features(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(extractor, head): pixels → features, and features → probabilities, sharing weights."""
    features = model.get_layer(FEATURES).output
    return keras.Model(model.inputs, features), keras.Model(features, model.outputs)
