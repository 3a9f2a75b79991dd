"""Convolutional networks trained from scratch."""

from __future__ import annotations

import keras
from keras import layers

from cnnlab.config import DeepCnnModel, Lenet5Model, SmallCnnModel
from cnnlab.models.common import classifier, image_input


def small_cnn(cfg: SmallCnnModel, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Chollet's MNIST convnet: conv32-pool-conv64-pool-conv128-flatten-dense.

    104,202 parameters on MNIST; 'valid' padding, so 28 → 26 → 13 → 11 → 5 → 3.
    """
    inputs, x = image_input(input_shape)
    for i, filters in enumerate(cfg.filters):
        if i:
            x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(filters, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout)(x)
    return keras.Model(inputs, classifier(x, num_classes), name="small_cnn")


def deep_cnn(cfg: DeepCnnModel, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The Kaggle digit-recognizer net: [conv3x3 ×2 (same), max-pool] per block, dense layers.

    With the defaults: conv32×2-pool-dropout0.25-conv64×2-pool-dense256-dense256-dropout0.5,
    936,426 parameters on MNIST.
    """
    inputs, x = image_input(input_shape)
    for i, filters in enumerate(cfg.filters):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
        if cfg.conv_dropout and i < len(cfg.filters) - 1:
            x = layers.Dropout(cfg.conv_dropout)(x)
    x = layers.Flatten()(x)
    for units in cfg.dense_units:
        x = layers.Dense(units, activation="relu")(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout)(x)
    return keras.Model(inputs, classifier(x, num_classes), name="deep_cnn")


def lenet5(cfg: Lenet5Model, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """LeCun et al. (1998): conv6(5x5)-avgpool-conv16(5x5)-avgpool-120-84-classes.

    The first convolution pads to keep 28x28 (the paper pads MNIST to 32x32); the C5 layer is
    a dense layer on the flattened 5x5x16 maps, which equals the paper's 5x5 convolution and
    works for other input sizes. 61,706 parameters on MNIST.
    """
    inputs, x = image_input(input_shape)
    x = layers.Conv2D(6, 5, padding="same", activation=cfg.activation)(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(16, 5, activation=cfg.activation)(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation=cfg.activation)(x)
    x = layers.Dense(84, activation=cfg.activation)(x)
    return keras.Model(inputs, classifier(x, num_classes), name="lenet5")
