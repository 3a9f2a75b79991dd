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
from cnnlab.data.dataset import above
from cnnlab.runs import (
    THRESHOLDS_FILE,
    load_run_model,
    open_run,
    read_class_names,
    read_thresholds,
)
from cnnlab.utils.errors import RunDirError

if TYPE_CHECKING:
    import keras

# Images per forward pass when predicting: inference holds no gradients, so larger than training.
BATCH_SIZE = 512


VIEWS = {"none": 1, "horizontal_flip": 2, "flip_and_shift": 6}  # images predicted per image


def class_probabilities(model: keras.Model, x: np.ndarray, tta: str = "none") -> np.ndarray:
    """(N, classes) float64 probabilities; a one-unit sigmoid output becomes [P(0), P(1)], and
    a sigmoid per class (several labels per image) gives each class's own probability.

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
    from cnnlab.models.common import is_multi_label

    if len(x) <= BATCH_SIZE:  # one batch: without predict's per-call data pipeline (serve)
        probs = np.asarray(model.predict_on_batch(x), np.float64)
    else:
        probs = predict(model, x, BATCH_SIZE).astype(np.float64)
    if probs.shape[-1] == 1:
        return np.concatenate([1 - probs, probs], axis=1)
    if is_multi_label(model):
        return probs
    # A float32 softmax sums to 1 only within rounding; make each row a distribution.
    return probs / probs.sum(axis=1, keepdims=True)


def scores(
    probs: np.ndarray, y: np.ndarray, thresholds: np.ndarray | None = None
) -> dict[str, float]:
    """Cross-entropy loss, accuracy, balanced accuracy (the mean of the classes' recalls) and
    macro-F1 (the mean of the classes' F1) of class probabilities against integer labels.

    The last two weigh every class alike however many images it has: with imbalanced classes
    they show what accuracy hides. Both are over the classes present in `y`.

    Several labels per image (`y` of 0/1 per class): multi_label_scores, at `thresholds`.
    """
    import warnings

    if y.ndim == 2:
        return multi_label_scores(probs, y, thresholds)

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


# The scores of a split as one number, by whether labels are one class or several per image.
HEADLINE = {False: "accuracy", True: "mean_average_precision"}


def headline(split_scores: dict) -> tuple[str, float]:
    """(name, value) of a split's main score: accuracy, or mean average precision for several
    labels per image."""
    name = HEADLINE["accuracy" not in split_scores]
    return name, split_scores[name]


def multi_label_scores(
    probs: np.ndarray, y: np.ndarray, thresholds: np.ndarray | None = None
) -> dict[str, float]:
    """Scores of several labels per image: binary cross-entropy loss; mean average precision
    (the mean over the classes that have positives of each class's average precision, which
    needs no threshold); and, each class predicted where its probability is at least its
    threshold (0.5 without `thresholds`), micro-F1 (every image-class decision pooled),
    macro-F1 (the mean of the classes' F1) and subset accuracy (images whose whole set of
    classes is right)."""
    import warnings

    from sklearn.metrics import accuracy_score, average_precision_score, f1_score

    y = np.asarray(y, np.int64)
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    present = np.flatnonzero(y.sum(axis=0) > 0)
    predicted = above(probs, thresholds)
    with warnings.catch_warnings():  # a class never predicted has F1 0, said in the score
        warnings.simplefilter("ignore")
        return {
            "loss": float(loss),
            "mean_average_precision": float(
                average_precision_score(y[:, present], probs[:, present], average="macro")
            )
            if len(present)
            else 0.0,
            "micro_f1": float(f1_score(y, predicted, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
            "subset_accuracy": float(accuracy_score(y, predicted)),
        }


def choose_thresholds(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each class's threshold that maximises its F1 on (`probs`, `y`), the validation split:
    halfway between the lowest probability it predicts the class for and the next lower one,
    so that rounding (another runtime, a float32 export) does not move an image across it;
    0.5 for a class with no positive image there."""
    from sklearn.metrics import precision_recall_curve

    found = np.full(probs.shape[1], 0.5)
    for k in range(probs.shape[1]):
        if not y[:, k].any():
            continue
        precision, recall, cuts = precision_recall_curve(y[:, k], probs[:, k])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        cut = cuts[int(np.argmax(f1[:-1]))]
        lower = probs[:, k][probs[:, k] < cut]
        found[k] = (cut + lower.max()) / 2 if len(lower) else cut
    return found


class Predicts(Protocol):
    """A run ready to predict: a Member, or an exported file in its runtime (serve --onnx)."""

    run_dir: Path
    cfg: Config
    class_names: list[str]

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


def run_thresholds(run_dir: Path, class_names: list[str]) -> np.ndarray:
    """A several-labels run's per-class thresholds (thresholds.json); 0.5 for every class,
    said once, when the run has none (it did not finish: they are chosen when training ends)."""
    found = read_thresholds(run_dir, class_names)
    if found is None:
        from cnnlab.utils.console import warn

        warn(
            f"{run_dir}: no {THRESHOLDS_FILE} (they are chosen on the validation split when "
            "training ends): every class at 0.5"
        )
        found = np.full(len(class_names), 0.5)
    return found


def member_thresholds(member: Predicts) -> np.ndarray | None:
    """The per-class thresholds of a run with several labels per image, None for a run of one
    label per image."""
    if not member.cfg.data.multi_label:
        return None
    return run_thresholds(member.run_dir, member.class_names)


def ensemble_thresholds(members: list[Predicts]) -> np.ndarray | None:
    """The per-class thresholds of runs with several labels per image (the mean of theirs, as
    their probabilities are averaged), or None for runs of one label per image."""
    several = [m.run_dir for m in members if m.cfg.data.multi_label]
    if not several:
        return None
    if len(several) < len(members):
        one = next(m.run_dir for m in members if not m.cfg.data.multi_label)
        raise RunDirError(
            f"{one}: one label per image, but {several[0]} has several; an ensemble needs runs "
            "of the same task"
        )
    return np.mean([member_thresholds(m) for m in members], axis=0)


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
