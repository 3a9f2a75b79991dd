"""`cnnlab evaluate`, `predict`, `predict-csv` and `explain`: using trained runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.errors import user_errors
from cnnlab.cli.options import Backend, DataOverrides, RunDirs
from cnnlab.cli.show import show_predictions
from cnnlab.utils.console import echo
from cnnlab.utils.errors import CnnlabError


@user_errors
def evaluate(
    run_dirs: RunDirs,
    csv: Annotated[
        Path | None,
        typer.Option(help="Score this labelled Kaggle-format CSV instead of the run's data."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Several runs: also write the result as JSON here."),
    ] = None,
    overrides: DataOverrides = None,
    backend: Backend = None,
) -> None:
    """Score a run's best model and write evaluation.json into the run directory.

    Several runs: their averaged probabilities (an ensemble) are scored instead, on the test set.
    """
    from cnnlab.api import evaluate as score

    echo(json.dumps(score(run_dirs, csv, output, backend, overrides), indent=2))


@user_errors
def predict_csv(
    run_dirs: RunDirs,
    test_csv: Annotated[
        Path, typer.Argument(help="Kaggle-format CSV of pixels (test.csv).", metavar="TEST_CSV")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Submission file (default: RUN_DIR/submission.csv; several runs: "
            "submission-ensemble.csv).",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    backend: Backend = None,
) -> None:
    """Write a Kaggle submission (ImageId,Label) with a run's best model, or several runs'."""
    from cnnlab.api import predict_csv as submit

    out, rows = submit(run_dirs, test_csv, output, overwrite, backend)
    members = f" (average of {len(run_dirs)} runs)" if len(run_dirs) > 1 else ""
    echo(f"wrote {rows:,} predictions{members} to {out}")


@user_errors
def predict(
    items: Annotated[
        list[str],
        typer.Argument(
            help="Run directories made by `cnnlab train` (several: their probabilities are "
            "averaged), then image files, folders (searched recursively) and glob patterns "
            "(quote them: 'photos/**/*.jpg'); with --sample-submission, one folder of test "
            "images.",
            metavar="RUN_DIR... PATH...",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="CSV of predictions, one row per image (default predictions.csv; with "
            "--sample-submission, submission.csv).",
            show_default=False,
        ),
    ] = None,
    sample_submission: Annotated[
        Path | None,
        typer.Option(
            help="Write a submission in this sample submission's format: its ids (the first "
            "column) name the images of the folder, its other columns say what to write.",
            show_default=False,
        ),
    ] = None,
    label_map: Annotated[
        str | None,
        typer.Option(
            help="With --sample-submission: the run's classes as the competition names them, "
            "NAME=VALUE,... (cats=0,dogs=1).",
            show_default=False,
        ),
    ] = None,
    clip: Annotated[
        bool,
        typer.Option(
            help="With --sample-submission: clip probabilities to [0.005, 0.995] (log loss "
            "rewards it)."
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    backend: Backend = None,
) -> None:
    """Classify image files with a trained run, decoded as its training images were.

    Exit code 0 when every image was read, 3 when some could not be (they are listed). With
    --sample-submission, every image must be read (1 otherwise).
    """
    from cnnlab.runs import CONFIG_FILE

    runs = []
    for item in items:
        if not (Path(item) / CONFIG_FILE).is_file():
            break
        runs.append(Path(item))
    inputs = items[len(runs) :]
    if not runs:
        raise CnnlabError(
            f"{items[0]}: not a run directory (no {CONFIG_FILE}); give RUN_DIR first, then the "
            "images"
        )
    if not inputs:
        raise CnnlabError("give image files, folders or patterns after the run directories")
    if sample_submission is not None:
        from cnnlab.api import submission

        if len(inputs) != 1:
            raise CnnlabError(
                f"--sample-submission: give one folder of test images after the run "
                f"directories, not {len(inputs)} paths"
            )
        out = output or Path("submission.csv")
        made = submission(
            runs, inputs[0], sample_submission, out, label_map, clip, overwrite, backend
        )
        for line in made.notes:
            echo(f"note: {line}")
        members = f" (average of {len(runs)} runs)" if len(runs) > 1 else ""
        columns = ",".join(str(c) for c in made.frame.columns)
        echo(f"wrote {len(made.frame):,} rows of {columns}{members} to {out}")
        return
    for given, name in ((label_map is not None, "--label-map"), (clip, "--clip")):
        if given:
            raise CnnlabError(f"{name} is for --sample-submission")
    from cnnlab.api import predictions

    result = predictions(runs, inputs, output or Path("predictions.csv"), overwrite, backend)
    show_predictions(result)
    if result.skipped:
        raise typer.Exit(3)


@user_errors
def explain(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `cnnlab train`.")],
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (searched recursively) and glob patterns.",
            metavar="PATH...",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Folder for the PNGs (default RUN_DIR/explain)."),
    ] = None,
    class_name: Annotated[
        str | None,
        typer.Option(
            "--class",
            help="Show where the model looks for this class (default: the predicted one).",
        ),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="The layer whose feature map is weighed (default: the last after "
            "the last convolution)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace PNGs already there.")] = False,
) -> None:
    """Grad-CAM: where the run's model looks, as a heatmap over each image and a contact
    sheet (gradcam.png)."""
    from cnnlab.api import explain as gradcam

    result = gradcam(run_dir, inputs, output, class_name, layer, overwrite)
    for path, predicted, probability, shown, png in result["images"]:
        looked = "" if shown == predicted else f", showing {shown}"
        echo(f"{path}: {predicted} {probability:.1%}{looked} -> {png}")
    for path, reason in result["skipped"]:
        echo(f"skipped {path}: {reason}")
    echo(f"Grad-CAM at layer {result['layer']}; contact sheet {result['folder']}/gradcam.png")
    if result["skipped"]:
        raise typer.Exit(3)
