"""`cnnlab data ...`: preparing datasets (Kaggle CSVs from MNIST, a cats-vs-dogs split) and
scoring a Kaggle submission offline."""

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
    submission: Annotated[Path, typer.Argument(help="ImageId,Label predictions.")],
    labels: Annotated[Path, typer.Argument(help="ImageId,Label answers, e.g. test_labels.csv.")],
) -> None:
    """Accuracy of a Kaggle submission against the true labels, as Kaggle would score it."""
    from cnnlab.data.kaggle_csv import score_submission as score

    accuracy, rows = score(submission, labels)
    echo(f"accuracy {accuracy:.4f} on {rows:,} images")
