"""Scoring a trained run: on its own validation/test data, or on another labelled CSV."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from cnnlab import reports
from cnnlab.data import load_dataset
from cnnlab.data.kaggle_csv import read_digits_csv
from cnnlab.runs import load_run_model, open_run, write_json

EVAL_BATCH_SIZE = 512


def score(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Loss and accuracy of a compiled model on (x, y), in inference mode."""
    results = model.evaluate(x, y, batch_size=EVAL_BATCH_SIZE, verbose=0, return_dict=True)
    return {"loss": float(results["loss"]), "accuracy": float(results["accuracy"])}


def evaluate(run_dir: str | Path, csv: Path | None = None) -> dict:
    """Score a run's best model and write the result into the run directory.

    Args:
        run_dir: a directory made by `cnnlab train`.
        csv: a labelled Kaggle-format CSV; by default the data in the run's config (the same
            seeded validation split as in training, and the test set when it has labels).

    Returns:
        {"val": {...}, "test": {...} or None} or, with `csv`, {"csv": path, "test": {...}};
        the same dict is written to evaluation.json (evaluation-<csv stem>.json with `csv`).
        Without `csv`, the run's plots and report.html are drawn again as well.
    """
    run_dir, cfg = open_run(run_dir)
    model = load_run_model(run_dir)
    if csv is not None:
        x, y = read_digits_csv(
            csv,
            image_shape=tuple(model.input_shape[1:]),
            num_classes=int(model.output_shape[-1]),
            require_label=True,
        )
        results = {"csv": str(Path(csv).resolve()), "test": score(model, x, y)}
        out = run_dir / f"evaluation-{Path(csv).stem}.json"
    else:
        data = load_dataset(cfg.data, cfg.seed)
        results = {
            "val": score(model, data.x_val, data.y_val),
            "test": None if data.y_test is None else score(model, data.x_test, data.y_test),
        }
        out = run_dir / "evaluation.json"
        reports.write_run_reports(run_dir, model, data)
    write_json(out, results)
    return results
