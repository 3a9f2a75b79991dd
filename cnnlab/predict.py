"""Kaggle submissions: `ImageId,Label` for every row of an unlabelled CSV."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from cnnlab.data.kaggle_csv import read_digits_csv
from cnnlab.errors import RunDirError
from cnnlab.runs import atomic_path, load_run_model, open_run

PREDICT_BATCH_SIZE = 512


def predict_labels(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The most probable class index for each image."""
    return model.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=0).argmax(axis=1)


def write_submission(labels: np.ndarray, path: Path) -> None:
    """Write `ImageId,Label` rows, ImageId counting from 1 in input order."""
    import pandas as pd

    frame = pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": labels})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def predict_csv(
    run_dir: str | Path, csv_in: Path, csv_out: Path | None = None, overwrite: bool = False
) -> tuple[Path, int]:
    """Predict a label for every row of `csv_in` with a run's best model.

    Args:
        run_dir: a directory made by `cnnlab train`.
        csv_in: Kaggle-format pixels (a `label` column, if present, is ignored).
        csv_out: where to write; default `<run_dir>/submission.csv`.
        overwrite: replace an existing `csv_out`.

    Returns:
        The path written and the number of rows.
    """
    run_dir, _ = open_run(run_dir)
    out = Path(csv_out) if csv_out is not None else run_dir / "submission.csv"
    if out.exists() and not overwrite:
        raise RunDirError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise RunDirError(f"{out}: folder {out.parent} does not exist")
    model = load_run_model(run_dir)
    x, _ = read_digits_csv(
        csv_in,
        image_shape=tuple(model.input_shape[1:]),
        num_classes=int(model.output_shape[-1]),
        require_label=False,
    )
    write_submission(predict_labels(model, x), out)
    return out, len(x)
