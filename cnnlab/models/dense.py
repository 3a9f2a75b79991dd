"""Fully connected networks."""

from __future__ import annotations

import keras
from keras import layers

from cnnlab.config import MlpModel
from cnnlab.models.common import classifier, image_input


def mlp(cfg: MlpModel, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Dense layers on the flattened image: 784-512-512-10 (669,706 parameters) on MNIST."""
    inputs, x = image_input(input_shape, cfg.augmentation)
    x = layers.Flatten()(x)
    for units in cfg.units:
        x = layers.Dense(units, activation=cfg.activation)(x)
        if cfg.dropout:
            x = layers.Dropout(cfg.dropout)(x)
    return keras.Model(inputs, classifier(x, num_classes), name="mlp")
