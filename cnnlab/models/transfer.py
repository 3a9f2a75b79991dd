"""Networks on a pretrained convolutional base (transfer learning)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import keras
from keras import layers

from cnnlab.config.models import BACKBONES, PretrainedModel, Vgg16Model
from cnnlab.models.common import EXACT, classifier, dense_stack, image_input
from cnnlab.models.layers import ImageNetPreprocess
from cnnlab.models.registry import register_builder
from cnnlab.utils.errors import ConfigError

FEATURES = "features"  # the layer whose output is the base's feature vector


@register_builder
def pretrained(cfg: PretrainedModel, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """An ImageNet classifier of keras.applications as a frozen base under a new head.

    pixels → scale → [augmentation] → the backbone's own preprocessing → base (inference mode)
    → pooling ("features") → dense layers → dropout → classifier. The base is a nested model;
    `set_trainable` unfreezes its top layers for fine-tuning.
    """
    return _on_base(cfg, cfg.backbone, input_shape, num_classes, f"{cfg.backbone.lower()}_transfer")


@register_builder
def vgg16(cfg: Vgg16Model, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """VGG16's convolutional base, frozen, under a new head (Chollet's feature extraction):
    the `pretrained` builder with backbone VGG16 and this builder's defaults (flatten, a
    256-unit layer, dropout 0.5). 14,714,688 base parameters; with the default head on
    150x150x3 and two classes, 16,812,353 in all.
    """
    return _on_base(cfg, "VGG16", input_shape, num_classes, "vgg16_transfer")


def _on_base(cfg, backbone: str, input_shape: tuple[int, ...], num_classes: int, name: str):
    inputs, x = image_input(input_shape, cfg.augmentation)
    base = load_base(backbone, cfg.weights, input_shape)
    base.trainable = False
    mode = BACKBONES[backbone][1]
    if mode == "none":  # the network rescales 0-255 pixels itself
        x = layers.Rescaling(255.0, name=f"{base.name}_preprocess", **EXACT)(x)
    else:
        x = ImageNetPreprocess(mode, name=f"{base.name}_preprocess", **EXACT)(x)
    # Inference mode for the base. Keras 3 lets fit's training=True override this inside a
    # functional model (keras-team/keras#20285), so set_trainable also keeps the base's
    # BatchNormalization layers frozen: a frozen one always normalises as trained.
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
    return keras.Model(inputs, classifier(x, num_classes), name=name)


def load_base(backbone: str, weights: str | Path, input_shape: tuple[int, ...]) -> keras.Model:
    """keras.applications' `backbone` without its top, with `weights` (imagenet, none or a
    file's path).

    Raises:
        ConfigError: a weights file that does not fit, or ImageNet weights that are neither
            in Keras' cache nor downloadable (naming the file and where it belongs).
    """
    network = getattr(keras.applications, backbone)
    given = None if weights == "none" else "imagenet" if weights == "imagenet" else str(weights)
    try:
        return network(include_top=False, weights=given, input_shape=tuple(input_shape))
    except ValueError as e:  # wrong file contents or layer shapes, or an input it cannot take
        raise ConfigError(f"model.weights: cannot use {weights} for {backbone}: {e}") from None
    except Exception as e:  # the ImageNet download: urllib raises a variety of errors offline
        if given != "imagenet":
            raise ConfigError(f"model.weights: cannot load {weights}: {e}") from None
        found = re.search(r"https?://\S+/([^/\s:]+\.h5)", str(e))
        name = found.group(1) if found else f"the {backbone} no-top weights file"
        folder = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
        reason = str(e).rpartition(" -- ")[2].strip() or type(e).__name__
        raise ConfigError(
            f"model.weights: imagenet: the {backbone} weights are not in Keras' cache and "
            f"cannot be downloaded here ({reason}); put {name} into {folder}, or set "
            "model.weights to the file's path"
        ) from None


def check_weights(model_cfg, input_shape: tuple[int, ...]) -> None:
    """Load a pretrained base's weights once (downloading ImageNet's into Keras' cache), so
    that weights that cannot be had fail before a run directory is made.

    Raises:
        ConfigError: as load_base.
    """
    backbone = getattr(model_cfg, "backbone", "VGG16" if model_cfg.builder == "vgg16" else None)
    if backbone is not None and model_cfg.weights != "none":
        load_base(backbone, model_cfg.weights, input_shape)


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
    # Fine-tuning keeps the ImageNet statistics: a frozen BatchNormalization layer runs in
    # inference mode even while fit trains the model around it (Chollet's fine-tuning).
    for layer in _all_layers(base):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _all_layers(model: keras.Model) -> list[keras.Layer]:
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_all_layers(layer))
    return found


def split_at_features(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(extractor, head): pixels → features, and features → probabilities, sharing weights."""
    features = model.get_layer(FEATURES).output
    return keras.Model(model.inputs, features), keras.Model(features, model.outputs)
