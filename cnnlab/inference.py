"""Class probabilities, labels and scores: the one path that train, evaluate, predict, predict-csv,
serve and the reports use to run a model on images.

Keras is imported by the callers that load models, not here: `cnnlab serve --onnx` runs the
same ensemble step on onnxruntime sessions without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from cnnlab.config import Config
from cnnlab.runs import load_run_model, open_run, read_class_names
from cnnlab.utils.errors import RunDirError

if TYPE_CHECKING:
    import keras

# Images per forward pass when predicting: inference holds no gradients, so larger than training.
BATCH_SIZE = 512


VIEWS = {"none": 1, "horizontal_flip": 2, "flip_and_shift": 6}  # images predicted per image


def class_probabilities(model: keras.Model, x: np.ndarray, tta: str = "none") -> np.ndarray:
    """(N, classes) float64 probabilities; a one-unit sigmoid output becomes [P(0), P(1)].

    `tta` is a run's model.tta: horizontal_flip averages each image's probabilities with its
    mirror image's; flip_and_shift weighs that average 1/2 and the same for the image shifted
    one pixel down-right and up-left (edges reflected) 1/4 each: airbench's six views.
    """
    if tta == "flip_and_shift":
        height, width = x.shape[1:3]
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        shifted = (padded[:, :height, :width], padded[:, 2:, 2:])
        return (_mirrored(model, x) + sum(_mirrored(model, s) for s in shifted) / 2) / 2
    if tta == "horizontal_flip":
        return _mirrored(model, x)
    return _predict(model, x)


def _mirrored(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return (_predict(model, x) + _predict(model, x[:, :, ::-1])) / 2


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    from cnnlab.data.pipeline import predict

    if len(x) <= BATCH_SIZE:  # one batch: without predict's per-call data pipeline (serve)
        probs = np.asarray(model.predict_on_batch(x), np.float64)
    else:
        probs = predict(model, x, BATCH_SIZE).astype(np.float64)
    if probs.shape[-1] == 1:
        return np.concatenate([1 - probs, probs], axis=1)
    # A float32 softmax sums to 1 only within rounding; make each row a distribution.
    return probs / probs.sum(axis=1, keepdims=True)


def scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Cross-entropy loss, accuracy, balanced accuracy (the mean of the classes' recalls) and
    macro-F1 (the mean of the classes' F1) of class probabilities against integer labels.

    The last two weigh every class alike however many images it has: with imbalanced classes
    they show what accuracy hides. Both are over the classes present in `y`.
    """
    import warnings

    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss

    predicted = probs.argmax(axis=1)
    present = np.unique(y)
    with warnings.catch_warnings():  # a class never predicted has F1 0, said in the score
        warnings.simplefilter("ignore")
        return {
            "loss": float(log_loss(y, probs, labels=np.arange(probs.shape[1]))),
            "accuracy": float(accuracy_score(y, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
            "macro_f1": float(f1_score(y, predicted, labels=present, average="macro")),
        }


class Predicts(Protocol):
    """A run ready to predict: a Member, or an exported file in its runtime (serve --onnx)."""

    cfg: Config

    def probabilities(self, x: np.ndarray) -> np.ndarray: ...


class Member(NamedTuple):
    """A trained run ready to predict: its folder, resolved config, best model, class names."""

    run_dir: Path
    cfg: Config
    model: keras.Model
    class_names: list[str]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for `x`, with the run's test-time augmentation."""
        return class_probabilities(self.model, x, self.cfg.model.tta)


def load_members(run_dirs: list[str | Path]) -> list[Member]:
    """The runs in `run_dirs` with their best models, checked to take the same images and to
    tell the same classes apart (one run, or the members of an ensemble)."""
    from cnnlab.models.common import output_classes

    members = []
    for path in run_dirs:
        run_dir, cfg = open_run(path)
        model = load_run_model(run_dir)
        names = read_class_names(run_dir, output_classes(model))
        members.append(Member(run_dir, cfg, model, names))
    first = members[0]
    for member in members[1:]:
        a, b = first.model, member.model
        for what, ours, theirs in (
            ("model's input shape", a.input_shape, b.input_shape),
            ("model's number of classes", output_classes(a), output_classes(b)),
            ("class names", first.class_names, member.class_names),
        ):
            if ours != theirs:
                raise RunDirError(
                    f"{member.run_dir}: its {what} {theirs} differs from {first.run_dir}'s "
                    f"{ours}; an ensemble needs models of the same task"
                )
    return members


def member_probabilities(members: list[Predicts], x: np.ndarray) -> list[np.ndarray]:
    """Each member's class probabilities for `x`; their mean is the ensemble's (soft voting)."""
    return [member.probabilities(x) for member in members]


def decoding(member: Predicts) -> tuple:
    """How a member's images are decoded from files: its image format and the model's input
    shape (after the data config's resize and to_rgb). Members with the same key share one
    decoding of each file."""
    return member.cfg.data.image_format, member.cfg.data.input_shape


def ensemble_probabilities(members: list[Predicts], decoded: dict[tuple, np.ndarray]) -> list:
    """Each member's probabilities for the same images, `decoded` once per `decoding` key."""
    return [member.probabilities(decoded[decoding(member)]) for member in members]
