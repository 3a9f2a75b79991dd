"""Scoring a finished run: one function, used by `train` when it ends and by `evaluate`.

Each split is predicted once; the same probabilities give the scores, the per-class reports,
the mistakes grid and (for an unlabelled Kaggle test set) the submission.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np

from cnnlab import reports, runs
from cnnlab.data import Dataset
from cnnlab.data.kaggle_csv import write_submission
from cnnlab.gradcam import feature_layer, gradcam
from cnnlab.inference import VIEWS, class_probabilities, scores
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
) -> dict:
    """Score `model` on `data`'s splits, write the result and redraw the run's reports.

    Args:
        run_dir: the run directory.
        model: the run's best model.
        data: the run's data, split as in training.
        out_file: the JSON file in `run_dir` that receives {split: {loss, accuracy} or None
            (no labels), **extra}.
        splits: which of train, val and test to score.
        extra: more entries for `out_file` (train's timings and settings).
        complete: the end of training: write submission.csv when the test images have no
            labels, mark the run completed and drop its resume record.
        tta: the run's model.tta (test-time augmentation), applied to every split.

    Returns:
        What was written to `out_file`.
    """
    probs: dict[str, np.ndarray] = {}
    for split in splits:
        x, y = data.split(split)
        if x is not None and (y is not None or split == "test"):
            views = f" x {VIEWS[tta]} views ({tta})" if VIEWS[tta] > 1 else ""
            # After training among its lines; beside evaluate's JSON on stderr.
            (say if complete else note)(f"scoring {split}: {len(x):,} images{views}")
            probs[split] = class_probabilities(model, x, tta)
    # Per-class results on the test set when it has labels, else on the validation set.
    shown = "test" if data.y_test is not None else "val"
    if shown not in probs:
        probs[shown] = class_probabilities(model, data.split(shown)[0], tta)
    # Every prediction is made and checked before the first file is written: a failure
    # leaves the run's earlier results as they were.
    _check_classes(data, probs)
    results: dict = {split: _scores(data, split, probs) for split in splits}
    results.update(extra or {})
    write_json(run_dir / out_file, results)
    if complete:
        if data.x_test is not None and data.y_test is None:
            submission = runs.RunDir(run_dir).submission
            write_submission(probs["test"].argmax(axis=1), submission)
            say(f"wrote {submission}")
        runs.write_state(run_dir, "completed")
        # The resume record duplicates last.keras; a completed run has no use for it.
        shutil.rmtree(runs.RunDir(run_dir).resume, ignore_errors=True)
    reports.write_run_reports(run_dir, data, shown, probs[shown], _heatmaps(model))
    return results


def _scores(data: Dataset, split: str, probs: dict[str, np.ndarray]) -> dict | None:
    y = data.split(split)[1]
    return None if y is None else scores(probs[split], y)


def _check_classes(data: Dataset, probs: dict[str, np.ndarray]) -> None:
    """Refuse data whose classes are not the model's outputs: its labels would score the
    wrong outputs, or none."""
    for split, p in probs.items():
        y = data.split(split)[1]
        if len(data.class_names) != p.shape[1] or (
            y is not None and len(y) and y.max() >= p.shape[1]
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
