"""What every `cnnlab` command shares: one-line errors, the --debug switch, starting
the Keras backend quietly, opening a finished run, and the argument types several commands take."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.errors import CnnlabError

_debug = False  # --debug: tracebacks and TensorFlow's start-up notices are shown


def set_debug(on: bool) -> None:
    global _debug
    _debug = on


def fail(message: str, code: int) -> None:
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
            fail("interrupted", 130)
        except CnnlabError as e:
            if _debug:
                raise
            fail(str(e), e.exit_code)
        except Exception as e:
            if _debug:
                raise
            fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)", 1)

    return wrapper


def start_backend(backend: str, deterministic: bool = False) -> None:
    """Load Keras on `backend` before a command's work; start-up notices only with --debug."""
    from cnnlab.environment import start_backend_quietly

    start_backend_quietly(backend, deterministic, quiet=not _debug)


def run_backend(cfg, choice: str | None) -> str:
    """The backend to load a run's model with: `choice` (--backend), else that of the run
    whose config is `cfg`."""
    from cnnlab.config import BACKENDS

    if choice is None:
        return cfg.backend
    if choice not in BACKENDS:
        raise CnnlabError(f"--backend: {choice!r} is not one of {', '.join(BACKENDS)}")
    return choice


def open_finished_run(run_dir: Path):
    """The run's config; fail before Keras loads on a wrong path, say so when the run did not
    complete."""
    from cnnlab.runs import open_run, read_state

    _, cfg = open_run(run_dir)
    state = read_state(run_dir)
    if state["state"] != "completed":
        reason = f" ({state['reason']})" if state.get("reason") else ""
        typer.echo(
            f"note: {run_dir} is {state['state']}{reason}; using its best model so far", err=True
        )
    return cfg


Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a config value (repeatable), e.g. --set train.epochs=3.",
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


# Several processes training one model (data_parallel on JAX): see cnnlab.cluster.
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
