"""Scoring a trained run: on its own validation/test data, or on another labelled CSV; several
runs as an ensemble."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.atomic import write_json
from cnnlab.data import load_dataset, read_csv_for
from cnnlab.errors import RunDirError
from cnnlab.inference import class_probabilities, load_members, member_probabilities, scores
from cnnlab.models.common import output_classes
from cnnlab.runs import load_run_model, open_run
from cnnlab.scoring import score_run

EVALUATION = "evaluation.json"


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
    if csv is None:
        return score_run(run_dir, model, load_dataset(cfg.data, cfg.seed), EVALUATION)
    x, y = read_csv_for(cfg.data, csv, output_classes(model), require_label=True)
    results = {"csv": str(Path(csv).resolve()), "test": scores(class_probabilities(model, x), y)}
    write_json(run_dir / f"evaluation-{Path(csv).stem}.json", results)
    return results


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
    first_dir, first = opened[0]
    if csv is not None:
        x, y = read_csv_for(first.data, csv, output_classes(models[0]), require_label=True)
    else:
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
        "members": [{"run": str(d), **scores(p, y)} for d, p in zip(dirs, probs, strict=True)],
        "test": scores(np.mean(probs, axis=0), y),
    }
    if csv is not None:
        results["csv"] = str(Path(csv).resolve())
    if output is not None:
        write_json(Path(output), results)
    return results
