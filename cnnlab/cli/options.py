"""The argument and option types several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.utils.errors import CnnlabError

Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a config value (repeatable), e.g. --set train.epochs=3.",
    ),
]

DataOverrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="data.KEY=VALUE",
        help="Point the run at its data where it now is (repeatable), e.g. --set data.root=photos.",
    ),
]


Mlflow = Annotated[
    str | None,
    typer.Option(
        "--mlflow",
        metavar="URI",
        help="Log to MLflow: a tracking server (http://host:5000) or a local folder; the same "
        "as --set tracking.mlflow.uri=URI.",
    ),
]


def with_mlflow(overrides: list[str] | None, uri: str | None) -> list[str]:
    """--set overrides with --mlflow's as one more."""
    return [*(overrides or []), *([f"tracking.mlflow.uri={uri}"] if uri else [])]


# Several processes training one model (data_parallel on JAX): see cnnlab.training.cluster.
_PROCESSES = "Several processes"
Coordinator = Annotated[
    str | None,
    typer.Option(
        metavar="HOST:PORT",
        help="Process 0's address, the same for all (default: $KERAS_DISTRIBUTION_JOB_ADDRESSES).",
        rich_help_panel=_PROCESSES,
    ),
]
NumProcesses = Annotated[
    int | None,
    typer.Option(
        help="How many processes train the model (default: $KERAS_DISTRIBUTION_NUM_PROCESSES, "
        "else 1).",
        rich_help_panel=_PROCESSES,
        show_default=False,
    ),
]
ProcessId = Annotated[
    int | None,
    typer.Option(
        help="This process, 0 to N-1; process 0 writes the run directory (default: "
        "$KERAS_DISTRIBUTION_PROCESS_ID).",
        rich_help_panel=_PROCESSES,
        show_default=False,
    ),
]
ConnectTimeout = Annotated[
    float,
    typer.Option(
        min=1,
        help="Seconds to wait for all processes to reach the coordinator.",
        rich_help_panel=_PROCESSES,
    ),
]


Backend = Annotated[
    str | None,
    typer.Option(
        help="Load the model on this Keras backend, tensorflow or jax (default: the one the run "
        "trained on; a .keras model scores the same on either).",
        show_default=False,
    ),
]


RunDirs = Annotated[
    list[Path],
    typer.Argument(
        help="Run directories made by `cnnlab train`; several make an ensemble: their class "
        "probabilities are averaged.",
        metavar="RUN_DIR",
        show_default=False,
    ),
]


def parse_seeds(text: str) -> list[int]:
    """'1,2,3' → [1, 2, 3]; a malformed or repeated seed is an error naming it."""
    seeds = []
    for part in text.split(","):
        try:
            seed = int(part.strip())
        except ValueError:
            raise CnnlabError(
                f"--seeds: {part.strip()!r} is not an integer; give e.g. --seeds 1,2,3"
            ) from None
        if seed in seeds:
            raise CnnlabError(f"--seeds: seed {seed} is given twice")
        seeds.append(seed)
    return seeds
