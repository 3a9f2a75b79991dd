"""`cnnlab data ...`: preparing datasets (Kaggle CSVs from MNIST, a cats-vs-dogs split) and
scoring a submission offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.errors import user_errors
from cnnlab.utils.console import echo

data_app = typer.Typer(help="Prepare datasets.", no_args_is_help=True)


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
        echo(f"wrote {path} ({name})")


@data_app.command("cats-vs-dogs-subset")
@user_errors
def cats_vs_dogs_subset(
    kaggle_train_dir: Annotated[
        Path, typer.Argument(help="Kaggle Dogs vs. Cats train/ folder (cat.0.jpg, dog.0.jpg, ...).")
    ],
    out_dir: Annotated[Path, typer.Argument(help="New (or empty) folder for the split.")],
    train: Annotated[int, typer.Option(min=1, help="Training images per class.")] = 1000,
    val: Annotated[int, typer.Option(min=1, help="Validation images per class.")] = 500,
    test: Annotated[int, typer.Option(min=1, help="Test images per class.")] = 1000,
    seed: Annotated[int, typer.Option(help="Picks which images; same seed, same split.")] = 0,
) -> None:
    """Copy a small cats-vs-dogs split: OUT_DIR/{train,validation,test}/{cats,dogs}."""
    from cnnlab.data.cats_vs_dogs import make_subset

    counts = make_subset(kaggle_train_dir, out_dir, train, val, test, seed)
    listed = ", ".join(f"{split} {n:,}" for split, n in counts.items())
    echo(f"copied {sum(counts.values()):,} images into {out_dir} ({listed})")


@data_app.command("score")
@user_errors
def score_submission(
    submission: Annotated[
        Path,
        typer.Argument(
            help="A submission: ImageId,Label, or any sample's columns.", metavar="SUBMISSION"
        ),
    ],
    answers: Annotated[
        Path,
        typer.Argument(
            help="The answers in the same columns, e.g. test_labels.csv.", metavar="ANSWERS"
        ),
    ],
    tags: Annotated[
        bool | None,
        typer.Option(
            "--tags/--labels",
            help="One column of text: tags, several classes per image (--tags), or one class "
            "per cell (--labels); default: told from the answers.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score a submission against the answers, as the competition would: accuracy of class
    labels; log loss of probabilities against 0/1 (and accuracy at 0.5); mean column-wise log
    loss and ROC AUC of one column per class; mean F2 of space-separated tags."""
    from cnnlab.commands.score import score_submission as score

    result = score(submission, answers, tags)
    for name, value in result.metrics.items():
        echo(f"{name} {value:.4f} on {result.rows:,} images")
    for line in result.notes:
        echo(f"note: {line}")
