"""Scoring a trained run: on its own validation/test data, or on another labelled CSV; several
runs as an ensemble."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.data import load_dataset, read_csv_for
from cnnlab.inference import load_members, member_probabilities, scores
from cnnlab.models.common import output_classes
from cnnlab.runs import EVALUATION_FILE, RunDir
from cnnlab.scoring import score_run
from cnnlab.utils.atomic import write_json
from cnnlab.utils.errors import RunDirError


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
    (run,) = load_members([run_dir])
    data_cfg = run.cfg.data
    if csv is None:
        data = load_dataset(data_cfg, run.cfg.seed)
        return score_run(run.run_dir, run.model, data, EVALUATION_FILE, tta=run.cfg.model.tta)
    x, y = read_csv_for(data_cfg, csv, output_classes(run.model), require_label=True)
    results = {"csv": str(Path(csv).resolve()), "test": scores(run.probabilities(x), y)}
    write_json(RunDir(run.run_dir).csv_evaluation(csv), results)
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
    members = load_members(run_dirs)
    dirs = [member.run_dir for member in members]
    first = members[0]
    if csv is not None:
        x, y = read_csv_for(first.cfg.data, csv, output_classes(first.model), require_label=True)
    else:
        for member in members[1:]:
            if member.cfg.data != first.cfg.data:
                raise RunDirError(
                    f"{member.run_dir}: its data config differs from {first.run_dir}'s, so they "
                    "have no common test set; pass --csv with a labelled test file"
                )
        data = load_dataset(first.cfg.data, first.cfg.seed)
        if data.y_test is None:
            raise RunDirError(
                f"{first.run_dir}: its data config has no labelled test set; pass --csv with one"
            )
        x, y = data.x_test, data.y_test
    probs = member_probabilities(members, x)
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
