"""Class probabilities, labels and scores: the one path that train, evaluate, predict, predict-csv
and the reports use to run a model on images."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from cnnlab.errors import RunDirError
from cnnlab.models.common import output_classes
from cnnlab.runs import load_run_model

# Images per forward pass when predicting: inference holds no gradients, so larger than training.
BATCH_SIZE = 512


def class_probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """(N, classes) float64 probabilities; a one-unit sigmoid output becomes [P(0), P(1)]."""
    probs = model.predict(x, batch_size=BATCH_SIZE, verbose=0).astype(np.float64)
    if probs.shape[-1] == 1:
        return np.concatenate([1 - probs, probs], axis=1)
    # A float32 softmax sums to 1 only within rounding; make each row a distribution.
    return probs / probs.sum(axis=1, keepdims=True)


def scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Cross-entropy loss and accuracy of class probabilities against integer labels."""
    from sklearn.metrics import accuracy_score, log_loss

    return {
        "loss": float(log_loss(y, probs, labels=np.arange(probs.shape[1]))),
        "accuracy": float(accuracy_score(y, probs.argmax(axis=1))),
    }


def load_members(run_dirs: list[Path]) -> list[keras.Model]:
    """The best models of `run_dirs`, checked to take the same images and give the same classes."""
    models = [load_run_model(run_dir) for run_dir in run_dirs]
    first = models[0]
    for run_dir, model in zip(run_dirs[1:], models[1:], strict=True):
        for what, ours, theirs in (
            ("input shape", first.input_shape, model.input_shape),
            ("number of classes", output_classes(first), output_classes(model)),
        ):
            if ours != theirs:
                raise RunDirError(
                    f"{run_dir}: its model's {what} {theirs} differs from {run_dirs[0]}'s "
                    f"{ours}; an ensemble needs models of the same task"
                )
    return models


def member_probabilities(models: list[keras.Model], x: np.ndarray) -> list[np.ndarray]:
    """Each model's class probabilities for `x`; their mean is the ensemble's (soft voting)."""
    return [class_probabilities(model, x) for model in models]
