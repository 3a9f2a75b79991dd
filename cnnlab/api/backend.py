"""Starting the Keras backend for the work at hand, and opening the finished runs it reads
(their configs say which backend loads their models)."""

from __future__ import annotations

from pathlib import Path

from cnnlab.utils.console import debugging, note
from cnnlab.utils.errors import CnnlabError


def start_backend(backend: str, deterministic: bool = False) -> None:
    """Load Keras on `backend` before the work that needs it; TensorFlow's start-up notices
    only when debugging (--debug)."""
    from cnnlab.utils.environment import start_backend_quietly

    start_backend_quietly(backend, deterministic, quiet=not debugging())


def open_runs(run_dirs: list[str | Path], backend: str | None = None) -> list:
    """The runs' configs, each checked before Keras loads (a wrong path fails at once, a run
    that did not complete is noted); then the backend that loads their models is started:
    `backend` (--backend), else the first run's.

    Returns:
        The runs' configs, in order.
    """
    from cnnlab.config import BACKENDS

    if backend is not None and backend not in BACKENDS:
        raise CnnlabError(f"--backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    configs = [open_finished_run(run_dir) for run_dir in run_dirs]
    start_backend(backend or configs[0].backend)
    return configs


def open_finished_run(run_dir: str | Path):
    """The run's config; fail before Keras loads on a wrong path, say so when the run did not
    complete."""
    from cnnlab.runs import open_run, read_state

    _, cfg = open_run(run_dir)
    state = read_state(run_dir)
    if state["state"] != "completed":
        reason = f" ({state['reason']})" if state.get("reason") else ""
        note(f"{run_dir} is {state['state']}{reason}; using its best model so far")
    return cfg
