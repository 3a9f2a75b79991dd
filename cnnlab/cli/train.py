"""`cnnlab train` and `cnnlab check`: starting runs, and the preflight before one."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.errors import user_errors
from cnnlab.cli.options import (
    ConnectTimeout,
    Coordinator,
    Mlflow,
    NumProcesses,
    Overrides,
    ProcessId,
    parse_seeds,
    with_mlflow,
)
from cnnlab.utils.console import echo
from cnnlab.utils.errors import CnnlabError

Source = Annotated[
    Path,
    typer.Argument(
        help="Experiment YAML file, or a folder of photos (class folders, or train/ and test/ "
        "folders of them): a config is made from it.",
        metavar="CONFIG|DIR",
        show_default=False,
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="With a folder: the builder (convnet, airbench, ...) or keras.applications "
        "backbone (Xception, EfficientNetV2B0, ...) to train; default: a backbone whose "
        "ImageNet weights are at hand, else airbench from scratch.",
        show_default=False,
    ),
]


@user_errors
def train(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="Experiment YAML file, or a folder of photos (class folders, or train/ and "
            "test/ folders of them): a config is made from it.",
            metavar="[CONFIG|DIR]",
        ),
    ] = None,
    overrides: Overrides = None,
    model: Model = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue this interrupted run from its last complete epoch."),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            metavar="N,N,...",
            help="Train one run per seed (e.g. 1,2,3), one after another: the members of an "
            "ensemble for `cnnlab evaluate` / `predict-csv` with several runs.",
        ),
    ] = None,
    mlflow: Mlflow = None,
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    connect_timeout: ConnectTimeout = 120,
) -> None:
    """Train a model as CONFIG describes (or on a folder of photos) into a new run directory,
    or continue one (--resume)."""
    from cnnlab.api import train as run_training

    if config is None and resume is None:
        raise CnnlabError("give a CONFIG file, or --resume RUN_DIR")
    if config is None and (overrides or mlflow):
        raise CnnlabError(
            "--set and --mlflow need a CONFIG; a resumed run keeps the config it started with"
        )
    if seeds is not None and resume is not None:
        raise CnnlabError("--seeds starts new runs; it cannot be combined with --resume")
    ask = (lambda q: typer.confirm(q, default=True)) if sys.stdin.isatty() else None
    run_training(
        config, with_mlflow(overrides, mlflow),
        seeds=parse_seeds(seeds) if seeds is not None else None, resume=resume, model=model,
        ask=ask,
        coordinator=coordinator, num_processes=num_processes, process_id=process_id,
        connect_timeout=connect_timeout,
    )  # fmt: skip


@user_errors
def check(
    config: Source,
    overrides: Overrides = None,
    model: Model = None,
    preview: Annotated[
        bool,
        typer.Option("--preview", help="Also draw the first training batch after augmentation."),
    ] = False,
    preview_file: Annotated[
        Path, typer.Option(help="Where --preview draws it (never replaced).")
    ] = Path("train_batch.png"),
) -> None:
    """Preflight: validate CONFIG, load its data, build its model; exit 0 if train can start."""
    from cnnlab.api import check as preflight
    from cnnlab.api import load

    cfg = load(config, overrides, model=model)
    if preview and preview_file.exists():
        raise CnnlabError(f"--preview-file {preview_file}: exists; give another file name")
    echo(
        f"config: {config} is valid (loader {cfg.data.loader}, builder {cfg.model.builder}, "
        f"backend {cfg.backend})"
    )
    for line in preflight(cfg, preview=preview_file if preview else None):
        echo(line)
    words = ["cnnlab", "train", str(config), *(["--model", model] if model else [])]
    command = shlex.join([*words, *_set_flags(overrides)])
    echo(f"ok: `{command}` would start; runs go to {cfg.output_dir}")


@user_errors
def init(
    folder: Annotated[
        Path, typer.Argument(help="A folder of photos (class folders, or split folders of them).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The config file to write.")
    ] = Path("config.yaml"),
    model: Model = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Write the config `cnnlab train FOLDER` would use, commented, to edit before training."""
    from cnnlab.api import init as write_config

    out = write_config(folder, output, model, overwrite)
    echo(f"wrote {out}; next: cnnlab check {shlex.quote(str(out))} --preview")


def _set_flags(overrides: list[str] | None) -> list[str]:
    return [word for item in overrides or [] for word in ("--set", item)]
