"""The `cnnlab` command. Thin: parse arguments, load the config, import the worker inside.

TensorFlow takes seconds to import, so `cnnlab --help` and config errors never import it.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.errors import CnnlabError

app = typer.Typer(
    help="Image-classification experiments with Keras: YAML in, trained and evaluated run out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Prepare datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_debug = False


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when something fails.")
    ] = False,
) -> None:
    global _debug
    _debug = debug


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(command: Callable) -> Callable:
    """Turn errors into one line on stderr and a non-zero exit; --debug shows the traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except CnnlabError as e:
            if _debug:
                raise
            _fail(str(e), e.exit_code)
        except Exception as e:
            if _debug:
                raise
            _fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)", 1)

    return wrapper


Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a config value (repeatable), e.g. --set train.epochs=3.",
    ),
]


@app.command()
@user_errors
def train(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    overrides: Overrides = None,
) -> None:
    """Train a model as CONFIG describes and write a new run directory under output_dir."""
    from cnnlab.config import load_config

    cfg = load_config(config, overrides or [])
    from cnnlab.train import train as run_training

    run_training(cfg)


@app.command()
@user_errors
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `cnnlab train`.")],
    csv: Annotated[
        Path | None,
        typer.Option(help="Score this labelled Kaggle-format CSV instead of the run's data."),
    ] = None,
) -> None:
    """Score a run's best model and write evaluation.json into the run directory."""
    from cnnlab.runs import open_run

    open_run(run_dir)  # a wrong path or broken config fails before TensorFlow loads
    from cnnlab.evaluate import evaluate as run_evaluation

    results = run_evaluation(run_dir, csv)
    typer.echo(json.dumps(results, indent=2))


@app.command("predict-csv")
@user_errors
def predict_csv(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `cnnlab train`.")],
    test_csv: Annotated[Path, typer.Argument(help="Kaggle-format CSV of pixels (test.csv).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Submission file [default: RUN_DIR/submission.csv]."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Write a Kaggle submission (ImageId,Label) with a run's best model."""
    from cnnlab.runs import open_run

    open_run(run_dir)
    from cnnlab.predict import predict_csv as run_prediction

    out, rows = run_prediction(run_dir, test_csv, output, overwrite)
    typer.echo(f"wrote {rows:,} predictions to {out}")


@data_app.command("mnist-to-kaggle")
@user_errors
def mnist_to_kaggle(
    npz: Annotated[Path, typer.Argument(help="MNIST .npz, e.g. data/mnist.npz.")],
    out_dir: Annotated[
        Path, typer.Argument(help="Folder for train.csv, test.csv, test_labels.csv.")
    ],
    overwrite: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
) -> None:
    """Write MNIST as Kaggle Digit Recognizer CSVs, with the test labels kept aside."""
    from cnnlab.data.mnist import mnist_to_kaggle as convert

    for name, path in convert(npz, out_dir, overwrite).items():
        typer.echo(f"wrote {path} ({name})")


@data_app.command("score")
@user_errors
def score_submission(
    submission: Annotated[Path, typer.Argument(help="ImageId,Label predictions.")],
    labels: Annotated[Path, typer.Argument(help="ImageId,Label answers, e.g. test_labels.csv.")],
) -> None:
    """Accuracy of a Kaggle submission against the true labels, as Kaggle would score it."""
    from cnnlab.data.kaggle_csv import score_submission as score

    accuracy, rows = score(submission, labels)
    typer.echo(f"accuracy {accuracy:.4f} on {rows:,} images")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
