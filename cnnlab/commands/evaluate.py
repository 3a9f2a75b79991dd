"""Scoring a trained run: on its own validation/test data, or on another labelled CSV; several
runs as an ensemble."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.config import Config
from cnnlab.data import Dataset, load_dataset, read_csv_for
from cnnlab.inference import (
    Member,
    ensemble_thresholds,
    load_members,
    member_probabilities,
    member_thresholds,
    scores,
)
from cnnlab.models.common import output_classes
from cnnlab.runs import CLASSES_FILE, EVALUATION_FILE, RunDir, locate_data
from cnnlab.scoring import score_run
from cnnlab.utils.atomic import write_json
from cnnlab.utils.errors import CnnlabError, DataError, RunDirError


def evaluate(
    run_dir: str | Path, csv: Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> dict:
    """Score a run's best model and write the result into the run directory.

    Args:
        run_dir: a directory made by `cnnlab train`.
        csv: a labelled Kaggle-format CSV; by default the data in the run's config (the same
            seeded validation split as in training, and the test set when it has labels).
        overrides: `data.KEY=VALUE` items that point the run at its data where it now is.

    Returns:
        {"val": {...}, "test": {...} or None} or, with `csv`, {"csv": path, "test": {...}};
        the same dict is written to evaluation.json (evaluation-<csv stem>.json with `csv`).
        Without `csv`, the run's plots and report.html are drawn again as well.
    """
    if csv is not None and overrides:
        raise CnnlabError("--set points a run at its data, --csv scores a file instead: not both")
    cfg = locate_data(run_dir, overrides) if csv is None else None  # before Keras loads a model
    (run,) = load_members([run_dir])
    if cfg is not None:
        data = load_dataset(cfg.data, cfg.seed)
        as_run_classes(data, run, cfg)
        return score_run(run.run_dir, run.model, data, EVALUATION_FILE, tta=run.cfg.model.tta)
    x, y = read_csv_for(run.cfg.data, csv, output_classes(run.model), require_label=True)
    results = {"csv": str(Path(csv).resolve()), "test": scores(run.probabilities(x), y)}
    write_json(RunDir(run.run_dir).csv_evaluation(csv), results)
    return results


def as_run_classes(data: Dataset, run: Member, cfg: Config) -> None:
    """Label `data` with the run's classes, by class name: the data may hold some of them, in
    any order (a folder of two of the five classes a run knows), never a class it does not.

    Raises:
        DataError: a class of the data that the run was not trained on, named.
    """
    known = run.class_names
    if not (run.run_dir / CLASSES_FILE).is_file() and len(data.class_names) == len(known):
        known = data.class_names  # a run from before class names were recorded: as it trained
    unknown = [name for name in data.class_names if name not in known]
    if unknown:
        where = next((str(path) for _, path in cfg.data if isinstance(path, Path)), "the data")
        listed = ", ".join(known[:10]) + (
            f" and {len(known) - 10:,} more" if len(known) > 10 else ""
        )
        raise DataError(
            f"{where}: class '{unknown[0]}' is not one that {run.run_dir} was trained on "
            f"({listed}); nothing was scored"
        )
    position = np.array([known.index(name) for name in data.class_names])
    for split in ("train", "val", "test"):
        x, y = data.split(split)
        if y is not None and y.ndim == 2:  # 0/1 per class: the columns move
            moved = np.zeros((len(y), len(known)), y.dtype)
            moved[:, position] = y
            data.set_split(split, x, moved)
        elif y is not None:
            data.set_split(split, x, position[y])
    data.class_names = list(known)


def evaluate_ensemble(
    run_dirs: list[str | Path],
    csv: Path | None = None,
    output: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict:
    """Score the average of several runs' class probabilities on a labelled test set.

    Args:
        run_dirs: directories made by `cnnlab train` for the same task (e.g. one config trained
            with different seeds).
        csv: a labelled Kaggle-format CSV; by default the test set of the runs' data config,
            which must then be the same for every run and have labels. (Validation sets are not
            scored: with different seeds each member trained on others' validation images.)
        output: also write the result here as JSON; nothing is written into the runs.
        overrides: `data.KEY=VALUE` items that point every run at its data where it now is.

    Returns:
        {"runs": [...], "members": [{"run", "loss", "accuracy"}, ...], "test": {...}} with
        "csv" when `csv` was given.
    """
    if csv is not None and overrides:
        raise CnnlabError("--set points runs at their data, --csv scores a file instead: not both")
    configs = [locate_data(run_dir, overrides) for run_dir in run_dirs] if csv is None else []
    members = load_members(run_dirs)
    dirs = [member.run_dir for member in members]
    first = members[0]
    if csv is not None:
        x, y = read_csv_for(first.cfg.data, csv, output_classes(first.model), require_label=True)
    else:
        for member, cfg in zip(members[1:], configs[1:], strict=True):
            if cfg.data != configs[0].data:
                raise RunDirError(
                    f"{member.run_dir}: its data config differs from {first.run_dir}'s, so they "
                    "have no common test set; pass --csv with a labelled test file"
                )
        data = load_dataset(configs[0].data, configs[0].seed)
        if data.y_test is None:
            raise RunDirError(
                f"{first.run_dir}: its data config has no labelled test set; pass --csv with one"
            )
        as_run_classes(data, first, configs[0])
        x, y = data.x_test, data.y_test
    probs = member_probabilities(members, x)
    # Several labels per image: each member at its thresholds, the mean at their mean.
    limits = [member_thresholds(m) for m in members]
    results = {
        "runs": [str(d) for d in dirs],
        "members": [
            {"run": str(d), **scores(p, y, t)} for d, p, t in zip(dirs, probs, limits, strict=True)
        ],
        "test": scores(np.mean(probs, axis=0), y, ensemble_thresholds(members)),
    }
    if csv is not None:
        results["csv"] = str(Path(csv).resolve())
    if output is not None:
        write_json(Path(output), results)
    return results
