"""The input and output ends every builder shares."""

from __future__ import annotations

import keras
from keras import layers


def image_input(input_shape: tuple[int, ...]) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """A raw-pixel input and its [0, 1]-scaled tensor.

    Scaling inside the model means a saved model takes the same uint8 pixels the loaders
    produce, and nobody re-implements preprocessing at predict time.
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    return inputs, layers.Rescaling(1.0 / 255, name="scale")(inputs)


def classifier(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    """Class probabilities, kept float32 so a mixed-precision model still gives exact softmax."""
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
