"""Kaggle submissions: `ImageId,Label` for every row of an unlabelled CSV, from one run or the
average of several (an ensemble)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.data import read_csv_for
from cnnlab.errors import RunDirError
from cnnlab.inference import load_members, member_probabilities
from cnnlab.models.common import output_classes
from cnnlab.runs import open_run
from cnnlab.scoring import SUBMISSION, write_submission

ENSEMBLE_SUBMISSION = Path("submission-ensemble.csv")


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
        out = run_dirs[0] / SUBMISSION if len(run_dirs) == 1 else ENSEMBLE_SUBMISSION
    if out.exists() and not overwrite:
        raise RunDirError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.resolve().parent.is_dir():
        raise RunDirError(f"{out}: folder {out.parent} does not exist")
    models = load_members(run_dirs)
    x, _ = read_csv_for(opened[0][1].data, csv_in, output_classes(models[0]), require_label=False)
    write_submission(np.mean(member_probabilities(models, x), axis=0).argmax(axis=1), out)
    return out, len(x)
