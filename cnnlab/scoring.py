"""Scoring a finished run: one function, used by `train` when it ends and by `evaluate`.

Each split is predicted once; the same probabilities give the scores, the per-class reports,
the mistakes grid and (for an unlabelled Kaggle test set) the submission.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import keras
import numpy as np

from cnnlab import reports, runs
from cnnlab.data import Dataset
from cnnlab.data.kaggle_csv import write_submission
from cnnlab.gradcam import feature_layer, gradcam
from cnnlab.inference import (
    VIEWS,
    choose_thresholds,
    class_probabilities,
    run_thresholds,
    scores,
)
from cnnlab.utils.atomic import write_json
from cnnlab.utils.console import note, say
from cnnlab.utils.errors import CnnlabError, DataError


def score_run(
    run_dir: Path,
    model: keras.Model,
    data: Dataset,
    out_file: str,
    *,
    splits: tuple[str, ...] = ("val", "test"),
    extra: dict | None = None,
    complete: bool = False,
    tta: str = "none",
    train_sample: int | None = None,
    timings: dict[str, float] | None = None,
) -> dict:
    """Score `model` on `data`'s splits, write the result and redraw the run's reports.

    Args:
        run_dir: the run directory.
        model: the run's best model.
        data: the run's data, split as in training.
        out_file: the JSON file in `run_dir` that receives {split: {loss, accuracy} or None
            (no labels), "scored": {split: {"images", "views"}}, **extra}.
        splits: which of train, val and test to score.
        extra: more entries for `out_file` (train's timings and settings).
        complete: the end of training: write submission.csv when the test images have no
            labels, mark the run completed and drop its resume record; with several labels
            per image, choose each class's threshold on the validation split (F1 at its
            best) and write them to the run (thresholds.json), which later scores read.
        tta: the run's model.tta (test-time augmentation), applied to validation and test,
            and to train unless `train_sample` is given.
        train_sample: score at most this many training images (a seeded sample), one view: a
            check for overfitting in seconds rather than the whole split with every view.
        timings: receives the seconds spent scoring ("score") and drawing ("reports").

    Returns:
        What was written to `out_file`.
    """
    started = time.monotonic()
    probs: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray | None] = {}
    scored: dict[str, dict[str, int]] = {}
    for split in splits:
        x, y = data.split(split)
        if x is None or (y is None and split != "test"):
            continue
        split_tta, of = tta, ""
        if split == "train" and train_sample is not None:
            split_tta = "none"
            if len(x) > train_sample:
                of = f" of {len(x):,}"
                picked = np.sort(np.random.default_rng(0).choice(len(x), train_sample, False))
                x, y = x[picked], y[picked]
        views = f" x {VIEWS[split_tta]} views ({split_tta})" if VIEWS[split_tta] > 1 else ""
        # After training among its lines; beside evaluate's JSON on stderr.
        (say if complete else note)(f"scoring {split}: {len(x):,}{of} images{views}")
        probs[split], labels[split] = class_probabilities(model, x, split_tta), y
        scored[split] = {"images": len(x), "views": VIEWS[split_tta]}
    # Per-class results on the test set when it has labels, else on the validation set.
    shown = "test" if data.y_test is not None else "val"
    wanted = {shown, "val"} if data.multi_label and complete else {shown}
    for split in sorted(wanted - set(probs)):
        probs[split] = class_probabilities(model, data.split(split)[0], tta)
        labels[split] = data.split(split)[1]
    # Every prediction is made and checked before the first file is written: a failure
    # leaves the run's earlier results as they were.
    _check_classes(data, probs, labels)
    thresholds = None
    if data.multi_label:
        if complete:
            thresholds = choose_thresholds(probs["val"], labels["val"])
        else:
            thresholds = run_thresholds(run_dir, data.class_names)
    results: dict = {split: _scores(split, probs, labels, thresholds) for split in splits}
    results["scored"] = scored
    results.update(extra or {})
    if thresholds is not None and complete:
        runs.write_thresholds(run_dir, data.class_names, thresholds)
    write_json(run_dir / out_file, results)
    if complete:
        if data.x_test is not None and data.y_test is None:
            submission = runs.RunDir(run_dir).submission
            write_submission(probs["test"].argmax(axis=1), submission)
            say(f"wrote {submission}")
        runs.write_state(run_dir, "completed")
        # The resume record duplicates last.keras; a completed run has no use for it.
        shutil.rmtree(runs.RunDir(run_dir).resume, ignore_errors=True)
    drawn = time.monotonic()
    reports.write_run_reports(
        run_dir, data, shown, probs[shown], _heatmaps(model), thresholds=thresholds
    )
    if timings is not None:
        timings["score"] = round(drawn - started, 3)
        timings["reports"] = round(time.monotonic() - drawn, 3)
    return results


def _scores(split: str, probs: dict, labels: dict, thresholds) -> dict | None:
    y = labels.get(split)
    return None if y is None else scores(probs[split], y, thresholds)


def _check_classes(data: Dataset, probs: dict[str, np.ndarray], labels: dict) -> None:
    """Refuse data whose classes are not the model's outputs: its labels would score the
    wrong outputs, or none."""
    for split, p in probs.items():
        y = labels.get(split)
        if len(data.class_names) != p.shape[1] or (
            y is not None
            and len(y)
            and (y.shape[1] != p.shape[1] if y.ndim == 2 else y.max() >= p.shape[1])
        ):
            raise DataError(
                f"the data has {len(data.class_names)} classes, the model tells {p.shape[1]} "
                f"apart: {split} cannot be scored; nothing was written"
            )


def _heatmaps(model: keras.Model):
    """Grad-CAM for the report's mistakes grid; None for a model without convolutions."""
    try:
        layer = feature_layer(model)
    except CnnlabError:
        return None
    return lambda images, classes: gradcam(model, images, classes, layer)
