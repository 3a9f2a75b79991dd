"""Convolutional networks trained from scratch."""

from __future__ import annotations

import keras
from keras import layers

from cnnlab.config.models import (
    AirbenchModel,
    AlexnetLiteModel,
    ConvnetModel,
    DeepCnnModel,
    Lenet5Model,
    SmallCnnModel,
    StridedCnnModel,
)
from cnnlab.models.common import classifier, dense_stack, image_input
from cnnlab.models.layers import BatchNorm, Gelu, PartialDirac, PatchWhitening
from cnnlab.models.registry import register_builder


@register_builder
def small_cnn(cfg: SmallCnnModel, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Chollet's MNIST convnet: conv32-pool-conv64-pool-conv128-flatten-dense.

    104,202 parameters on MNIST; 'valid' padding, so 28 → 26 → 13 → 11 → 5 → 3.
    """
    inputs, x = image_input(input_shape, cfg.augmentation)
    for i, filters in enumerate(cfg.filters):
        if i:
            x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(filters, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout)(x)
    return keras.Model(inputs, classifier(x, num_classes), name="small_cnn")


@register_builder
def deep_cnn(cfg: DeepCnnModel, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The Kaggle digit-recognizer net: [conv3x3 ×2 (same), max-pool] per block, dense layers.

    With the defaults: conv32×2-pool-dropout0.25-conv64×2-pool-dense256-dense256-dropout0.5,
    936,426 parameters on MNIST.
    """
    inputs, x = image_input(input_shape, cfg.augmentation)
    for i, filters in enumerate(cfg.filters):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
        if cfg.conv_dropout and i < len(cfg.filters) - 1:
            x = layers.Dropout(cfg.conv_dropout)(x)
    x = dense_stack(layers.Flatten()(x), cfg.dense_units)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout)(x)
    return keras.Model(inputs, classifier(x, num_classes), name="deep_cnn")


@register_builder
def lenet5(cfg: Lenet5Model, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """LeCun et al. (1998): conv6(5x5)-avgpool-conv16(5x5)-avgpool-120-84-classes.

    The first convolution pads to keep 28x28 (the paper pads MNIST to 32x32); the C5 layer is
    a dense layer on the flattened 5x5x16 maps, which equals the paper's 5x5 convolution and
    works for other input sizes. 61,706 parameters on MNIST.
    """
    inputs, x = image_input(input_shape, cfg.augmentation)
    x = layers.Conv2D(6, 5, padding="same", activation=cfg.activation)(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(16, 5, activation=cfg.activation)(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation=cfg.activation)(x)
    x = layers.Dense(84, activation=cfg.activation)(x)
    return keras.Model(inputs, classifier(x, num_classes), name="lenet5")


@register_builder
def strided_cnn(
    cfg: StridedCnnModel, input_shape: tuple[int, ...], num_classes: int
) -> keras.Model:
    """Deotte's Kaggle MNIST net (99.65%+ single, 99.75% as an ensemble of 15).

    Per block: conv3x3-BN, conv3x3-BN, conv5x5 stride 2 ('same')-BN, dropout. Then a 4x4
    convolution to `head_filters`, BN, flatten, dropout, classifier. With the defaults on MNIST:
    32C3-32C3-32C5S2-64C3-64C3-64C5S2-128C4, 28 → 26 → 24 → 12 → 10 → 8 → 4 → 1.
    """
    inputs, x = image_input(input_shape, cfg.augmentation)

    def conv(x, filters, size, **kwargs):
        x = layers.Conv2D(filters, size, activation="relu", **kwargs)(x)
        return layers.BatchNormalization()(x)

    for filters in cfg.filters:
        x = conv(x, filters, 3)
        x = conv(x, filters, 3)
        x = conv(x, filters, 5, strides=2, padding="same")
        x = layers.Dropout(cfg.dropout)(x)
    x = conv(x, cfg.head_filters, min(4, *x.shape[1:3]))
    x = layers.Flatten()(x)
    x = layers.Dropout(cfg.dropout)(x)
    return keras.Model(inputs, classifier(x, num_classes), name="strided_cnn")


@register_builder
def alexnet_lite(
    cfg: AlexnetLiteModel, input_shape: tuple[int, ...], num_classes: int
) -> keras.Model:
    """A small AlexNet for CIFAR-sized images: conv-pool ×3, two dense layers with dropout.

    With the defaults on 32x32x3: conv64(5x5)-pool-conv128(5x5)-pool-conv256(3x3)-pool, all
    'same' convs and 3x3 stride-2 max pooling (32 → 15 → 7 → 3), then dense 384-192 with
    dropout 0.5: 1,466,634 parameters for 10 classes.
    """
    inputs, x = image_input(input_shape, cfg.augmentation)
    for filters, size in zip(cfg.filters, cfg.kernel_sizes, strict=True):
        x = layers.Conv2D(filters, size, padding="same", use_bias=not cfg.batch_norm)(x)
        if cfg.batch_norm:
            x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        if min(x.shape[1:3]) >= 3:  # overlapping pooling, as in AlexNet
            x = layers.MaxPooling2D(3, strides=2)(x)
    x = dense_stack(layers.Flatten()(x), cfg.dense_units, dropout=cfg.dropout)
    return keras.Model(inputs, classifier(x, num_classes), name="alexnet_lite")


@register_builder
def convnet(cfg: ConvnetModel, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Chollet's cats-vs-dogs convnet (Deep Learning with Python, 2nd ed., ch. 8).

    A 3x3 ReLU conv per entry of `filters`, 2x2 max pooling after each but the last, flatten,
    optional dropout and dense layers, then the classifier. With the defaults on 180x180x3
    and two classes: 991,041 parameters.
    """
    inputs, x = image_input(input_shape, cfg.augmentation)
    for i, filters in enumerate(cfg.filters):
        if i and min(x.shape[1:3]) >= 2:
            x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(filters, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout)(x)
    x = dense_stack(x, cfg.dense_units)
    return keras.Model(inputs, classifier(x, num_classes), name="convnet")


@register_builder
def airbench(cfg: AirbenchModel, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Keller Jordan's airbench94 network (94% on CIFAR-10 in seconds on a GPU), in Keras layers.

    conv2x2(24) then, per block, conv3x3-maxpool-BN-GELU-conv3x3-BN-GELU (64, 256, 256), global
    max pooling and the classifier: 1,975,106 parameters on CIFAR-10. airbench's method is in
    config keys: the whitened first layer (`stem: whitening`), BatchNorm without scale, the
    scaled head, and in `train` Nesterov SGD, weight decay, per-variable rates, the warmup and
    linear decay, the weight average; alternating flips and six-view TTA in augmentation/tta.
    """
    inputs, x = image_input(input_shape, cfg.augmentation)
    if cfg.stem == "whitening":
        x = PatchWhitening(2, name="stem")(x)  # its filters: set by `adapt` before fit
    else:
        x = layers.Conv2D(cfg.stem_filters, 2, name="stem")(x)
    x = Gelu()(x)

    def conv(filters: int):
        init = PartialDirac() if cfg.conv_init == "dirac" else "glorot_uniform"
        return layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=init)

    for filters in cfg.filters:
        x = conv(filters)(x)
        x = layers.MaxPooling2D(2)(x)
        x = BatchNorm(momentum=cfg.bn_momentum, scale=cfg.bn_scale)(x)
        x = Gelu()(x)
        x = conv(filters)(x)
        x = BatchNorm(momentum=cfg.bn_momentum, scale=cfg.bn_scale)(x)
        x = Gelu()(x)
    x = layers.GlobalMaxPooling2D()(x)
    if cfg.head_scale != 1.0:
        x = layers.Rescaling(cfg.head_scale, name="head_scale")(x)
    outputs = classifier(x, num_classes, use_bias=cfg.head_bias)
    return keras.Model(inputs, outputs, name="airbench")
