"""Scoring a trained run: on its own validation/test data, or on another labelled CSV."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from cnnlab import reports
from cnnlab.atomic import write_json
from cnnlab.data import load_dataset
from cnnlab.errors import RunDirError
from cnnlab.predict import load_members, member_probabilities, read_csv_for
from cnnlab.runs import load_run_model, open_run

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
        x, y = read_csv_for(model, cfg.data, csv, require_label=True)
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


def probability_scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Cross-entropy and accuracy of class probabilities against integer labels."""
    picked = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return {
        "loss": float(-np.log(picked).mean()),
        "accuracy": float((probs.argmax(axis=1) == y).mean()),
    }


def evaluate_ensemble(
    run_dirs: list[str | Path], csv: Path | None = None, output: Path | None = None
) -> dict:
    """Score the average of several runs' class probabilities on a labelled test set.

    Args:
        run_dirs: directories made by `cnnlab train` for the same task (e.g. one config trained
            with different seeds).
        csv: a labelled Kaggle-format CSV; by default the test set of the runs' data config,
            which must then be the same for every run and have labels. (Validation sets are not
            scored: with different seeds each member trained on others' validation images.)
        output: also write the result here as JSON; nothing is written into the runs.

    Returns:
        {"runs": [...], "members": [{"run", "loss", "accuracy"}, ...], "test": {...}} with
        "csv" when `csv` was given.
    """
    opened = [open_run(run_dir) for run_dir in run_dirs]
    dirs = [run_dir for run_dir, _ in opened]
    models = load_members(dirs)
    if csv is not None:
        x, y = read_csv_for(models[0], opened[0][1].data, csv, require_label=True)
    else:
        first_dir, first = opened[0]
        for run_dir, cfg in opened[1:]:
            if cfg.data != first.data:
                raise RunDirError(
                    f"{run_dir}: its data config differs from {first_dir}'s, so they have no "
                    "common test set; pass --csv with a labelled test file"
                )
        data = load_dataset(first.data, first.seed)
        if data.y_test is None:
            raise RunDirError(
                f"{first_dir}: its data config has no labelled test set; pass --csv with one"
            )
        x, y = data.x_test, data.y_test
    probs = member_probabilities(models, x)
    results = {
        "runs": [str(d) for d in dirs],
        "members": [
            {"run": str(d), **probability_scores(p, y)} for d, p in zip(dirs, probs, strict=True)
        ],
        "test": probability_scores(np.mean(probs, axis=0), y),
    }
    if csv is not None:
        results["csv"] = str(Path(csv).resolve())
    if output is not None:
        write_json(Path(output), results)
    return results
