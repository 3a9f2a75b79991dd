"""The input and output ends every builder shares."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers

from cnnlab.config import AugmentationConfig
from cnnlab.models.layers import RandomAffine, RandomShift

# Image transforms compute in float32 whatever the precision policy: they resample pixels, and
# bfloat16 keeps only 8 bits of mantissa.
EXACT = {"dtype": "float32"}
# The classes `augmentation_layers` uses: an export replaces them (cnnlab.commands.export).
AUGMENTATION_LAYERS = (layers.RandomFlip, RandomAffine, RandomShift, layers.RandomContrast)


def augmentation_layers(cfg: AugmentationConfig) -> list[keras.Layer]:
    """Keras preprocessing layers for the transforms `cfg` asks for, on [0, 1]-scaled images.

    They run on whole batches inside the model's graph, and only when called with
    training=True (fit); otherwise each passes its input through unchanged.
    """
    found: list[keras.Layer] = []
    if cfg.flip not in ("none", "alternating"):  # alternating: cnnlab.data.pipeline's
        found.append(layers.RandomFlip(cfg.flip, name="random_flip", **EXACT))
    if cfg.rotation or cfg.zoom or cfg.translation:
        found.append(
            RandomAffine(
                cfg.rotation,
                cfg.zoom,
                cfg.translation,
                fill_mode=cfg.fill_mode,
                name="random_affine",
                **EXACT,
            )
        )
    if cfg.shift:
        found.append(RandomShift(cfg.shift, cfg.fill_mode, name="random_shift", **EXACT))
    if cfg.contrast:
        found.append(
            layers.RandomContrast(cfg.contrast, value_range=(0, 1), name="random_contrast", **EXACT)
        )
    return found


def augment(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """uint8 `images` through `model`'s augmentation layers as in training, back as uint8."""
    x = keras.ops.convert_to_tensor(images.astype("float32") / 255)
    for layer in model.layers:
        if isinstance(layer, AUGMENTATION_LAYERS):
            x = keras.ops.cast(layer(x, training=True), "float32")
    return np.clip(np.round(keras.ops.convert_to_numpy(x) * 255), 0, 255).astype(np.uint8)


def has_augmentation(model: keras.Model) -> bool:
    return any(isinstance(layer, AUGMENTATION_LAYERS) for layer in model.layers)


def image_input(
    input_shape: tuple[int, ...], augmentation: AugmentationConfig | None = None
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """A raw-pixel input and its [0, 1]-scaled, optionally augmented, tensor.

    Scaling inside the model means a saved model takes the same uint8 pixels the loaders
    produce, and nobody re-implements preprocessing at predict time.
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    for layer in augmentation_layers(augmentation) if augmentation is not None else []:
        x = layer(x)
    return inputs, x


def dense_stack(
    x: keras.KerasTensor, units: list[int], activation: str = "relu", dropout: float = 0.0
) -> keras.KerasTensor:
    """A Dense layer per entry of `units`, each followed by dropout when `dropout` is set."""
    for n in units:
        x = layers.Dense(n, activation=activation)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    return x


def classifier(x: keras.KerasTensor, num_classes: int, use_bias: bool = True) -> keras.KerasTensor:
    """Class probabilities, kept float32 so a mixed-precision model still gives exact softmax.

    Two classes get one sigmoid unit (the probability of class 1) and are trained with binary
    cross-entropy; more get a softmax over `num_classes` units.
    """
    units, activation = (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")
    dense = layers.Dense(
        units, activation=activation, use_bias=use_bias, dtype="float32", name="predictions"
    )
    return dense(x)


def multi_label_head(model: keras.Model, num_classes: int) -> keras.Model:
    """`model` with its classifier replaced by one float32 sigmoid per class: several labels
    per image, each class's probability on its own (trained with binary cross-entropy)."""
    old = model.get_layer("predictions")
    head = layers.Dense(
        num_classes,
        activation="sigmoid",
        use_bias=old.use_bias,
        dtype="float32",
        name="predictions",
    )
    return keras.Model(model.input, head(old.input), name=model.name)


def is_multi_label(model) -> bool:
    """Whether `model` gives several labels per image: a sigmoid per class (more than one)."""
    try:
        head = model.get_layer("predictions")
    except ValueError:
        return False
    activation = getattr(head, "activation", None)
    return int(model.output_shape[-1]) > 1 and activation is keras.activations.sigmoid


def output_classes(model: keras.Model) -> int:
    """How many classes a model built by `classifier` tells apart (2 for one sigmoid unit)."""
    units = int(model.output_shape[-1])
    return 2 if units == 1 else units


def trainable_parameters(model: keras.Model) -> int:
    """How many weights training updates (frozen layers and BatchNorm statistics excluded)."""
    return sum(int(math.prod(w.shape)) for w in model.trainable_weights)
