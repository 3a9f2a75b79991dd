"""Kaggle submissions: `ImageId,Label` for every row of an unlabelled CSV, from one run or the
average of several (an ensemble)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from cnnlab.atomic import atomic_path
from cnnlab.data.dataset import adapt_images
from cnnlab.data.kaggle_csv import read_digits_csv
from cnnlab.errors import RunDirError
from cnnlab.models.common import output_classes
from cnnlab.runs import load_run_model, open_run

PREDICT_BATCH_SIZE = 512
ENSEMBLE_SUBMISSION = Path("submission-ensemble.csv")


def class_probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """(N, classes) probabilities; a one-unit sigmoid output becomes [P(0), P(1)] columns."""
    probs = model.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=0).astype(np.float64)
    return np.concatenate([1 - probs, probs], axis=1) if probs.shape[-1] == 1 else probs


def predict_labels(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The most probable class index for each image."""
    return class_probabilities(model, x).argmax(axis=1)


def read_csv_for(model: keras.Model, data_cfg, csv: Path, require_label: bool):
    """A Kaggle-format CSV read as the run's model takes it.

    The file holds images as the run's data config stores them (its raw shape); they are
    resized and converted as that config says, and labels must lie within the model's classes.
    """
    x, y = read_digits_csv(
        csv,
        image_shape=tuple(data_cfg.raw_shape),
        num_classes=output_classes(model),
        require_label=require_label,
    )
    return adapt_images(x, data_cfg), y


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


def write_submission(labels: np.ndarray, path: Path) -> None:
    """Write `ImageId,Label` rows, ImageId counting from 1 in input order."""
    import pandas as pd

    frame = pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": labels})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def predict_csv(
    run_dirs: list[str | Path],
    csv_in: Path,
    csv_out: Path | None = None,
    overwrite: bool = False,
) -> tuple[Path, int]:
    """Predict a label for every row of `csv_in` with a run's best model, or several runs'.

    Args:
        run_dirs: directories made by `cnnlab train`; with more than one, their class
            probabilities are averaged.
        csv_in: Kaggle-format pixels (a `label` column, if present, is ignored).
        csv_out: where to write; default `<run_dir>/submission.csv` for one run,
            `submission-ensemble.csv` in the working directory for several.
        overwrite: replace an existing `csv_out`.

    Returns:
        The path written and the number of rows.
    """
    opened = [open_run(run_dir) for run_dir in run_dirs]
    run_dirs = [run_dir for run_dir, _ in opened]
    if csv_out is not None:
        out = Path(csv_out)
    else:
        out = run_dirs[0] / "submission.csv" if len(run_dirs) == 1 else ENSEMBLE_SUBMISSION
    if out.exists() and not overwrite:
        raise RunDirError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.resolve().parent.is_dir():
        raise RunDirError(f"{out}: folder {out.parent} does not exist")
    models = load_members(run_dirs)
    x, _ = read_csv_for(models[0], opened[0][1].data, csv_in, require_label=False)
    write_submission(np.mean(member_probabilities(models, x), axis=0).argmax(axis=1), out)
    return out, len(x)
