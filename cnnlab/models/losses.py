"""cnnlab's own losses, registered so that saved models (which keep their compile settings)
load, and resume, wherever cnnlab is installed."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cnnlab")
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against targets smoothed towards uniform.

    The true class gets 1 - s + s/K and every other class s/K (Keras' categorical label
    smoothing, which its sparse loss lacks), so the labels stay integers in the pipeline.
    """

    def __init__(self, label_smoothing: float = 0.1, name: str = "smoothed_crossentropy", **kw):
        super().__init__(name=name, **kw)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        targets = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            targets, y_pred, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="cnnlab")
class LabelWeightedCrossentropy(keras.losses.Loss):
    """Binary cross-entropy of several 0/1 labels per image, each class's positives and
    negatives weighted on their own (`train.class_weight` with several labels per image), the
    targets smoothed towards 0.5 by `label_smoothing` as Keras' BinaryCrossentropy does."""

    def __init__(
        self,
        positive: list[float],
        negative: list[float],
        label_smoothing: float = 0.0,
        name: str = "label_weighted_crossentropy",
        **kw,
    ):
        super().__init__(name=name, **kw)
        self.positive, self.negative = list(positive), list(negative)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        targets = ops.cast(y_true, "float32")
        if self.label_smoothing:
            targets = targets * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        eps = keras.backend.epsilon()
        p = ops.clip(y_pred, eps, 1 - eps)
        positive = ops.convert_to_tensor(self.positive, "float32")
        negative = ops.convert_to_tensor(self.negative, "float32")
        per_label = -(positive * targets * ops.log(p) + negative * (1 - targets) * ops.log(1 - p))
        return ops.mean(per_label, axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "positive": self.positive,
            "negative": self.negative,
            "label_smoothing": self.label_smoothing,
        }
