"""Fully connected networks."""

from __future__ import annotations

import keras
from keras import layers

from cnnlab.config.models import MlpModel
from cnnlab.models.common import classifier, dense_stack, image_input
from cnnlab.models.registry import register_builder


@register_builder
def mlp(cfg: MlpModel, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Dense layers on the flattened image: 784-512-512-10 (669,706 parameters) on MNIST."""
    inputs, x = image_input(input_shape, cfg.augmentation)
    x = layers.Flatten()(x)
    x = dense_stack(x, cfg.units, cfg.activation, cfg.dropout)
    return keras.Model(inputs, classifier(x, num_classes), name="mlp")
