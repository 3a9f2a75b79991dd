"""`cnnlab compare`, `summary`, `tune` and `lr-find`: studying models and runs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.errors import user_errors
from cnnlab.cli.options import Mlflow, Overrides, with_mlflow
from cnnlab.utils.console import echo, note


@user_errors
def compare(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Run directories, or folders of them (default: outputs)."),
    ] = None,
    sort: Annotated[str, typer.Option(help="Column to sort by.")] = "test_accuracy",
    ascending: Annotated[bool, typer.Option(help="Smallest first.")] = False,
    csv: Annotated[Path | None, typer.Option(help="Also write the table as CSV.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Also write it as Markdown.")] = None,
) -> None:
    """Compare runs: dataset, builder, parameters, accuracy, time; unfinished runs included."""
    from cnnlab.api import compare as compare_runs
    from cnnlab.commands.compare import print_table, to_markdown
    from cnnlab.utils.atomic import atomic_write

    frame = compare_runs(paths or [Path("outputs")], sort, ascending)
    print_table(frame)
    if csv is not None:
        atomic_write(csv, frame.to_csv(index=False))
        echo(f"wrote {csv}")
    if markdown is not None:
        atomic_write(markdown, to_markdown(frame))
        echo(f"wrote {markdown}")


@user_errors
def summary(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    overrides: Overrides = None,
) -> None:
    """Build CONFIG's model without training or data; print its layers, parameters and FLOPs."""
    from cnnlab.api import summary as build

    model, counts = build(config, overrides)
    if counts["remark"]:
        note(counts["remark"])
    model.summary()
    echo(
        f"parameters: {counts['total']:,} ({counts['trainable']:,} trainable, "
        f"{counts['non_trainable']:,} non-trainable)"
    )
    echo(f"FLOPs per image (conv and dense layers): {counts['flops'] / 1e6:,.2f} M")


@user_errors
def tune(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file: the base of every trial.")],
    space: Annotated[
        Path, typer.Option("--space", help="Search space YAML: config keys and distributions.")
    ],
    trials: Annotated[int, typer.Option(min=1, help="Trials this process runs.")] = 10,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna RDB URL shared by every process of the study (default: SQLite "
            "in the study folder)."
        ),
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="Study name (default: <config name>-tune).")
    ] = None,
    overrides: Overrides = None,
    mlflow: Mlflow = None,
) -> None:
    """Search hyperparameters with Optuna; each trial is a run in OUTPUT_DIR/<study>/."""
    from cnnlab.api import tune as run_study

    result = run_study(
        config, space, trials=trials, storage=storage, study=study,
        overrides=with_mlflow(overrides, mlflow),
    )  # fmt: skip
    echo(f"study {result['study']} ({result['storage']}); runs in {result['folder']}")
    best = result["best"]
    if best is None:
        echo("no trial has completed yet")
        return
    params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
    echo(f"best trial #{best['number']}: {best['value']:.4f} with {params}")
    echo(f"best config: {best['config']} (run {best['run']})")
    echo(f"compare the trials: cnnlab compare {result['folder']}")


@user_errors
def lr_find(
    config: Annotated[
        Path,
        typer.Argument(help="Experiment YAML file, or a folder of photos.", metavar="CONFIG|DIR"),
    ],
    overrides: Overrides = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="With a folder: the builder or backbone (as for train).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="Batches to train while the rate rises.")] = 100,
    low: Annotated[float, typer.Option("--min", help="The first learning rate.")] = 1e-7,
    high: Annotated[float, typer.Option("--max", help="The last learning rate.")] = 1.0,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder to write (default OUTPUT_DIR/<name>-lr-find-<timestamp>).",
        ),
    ] = None,  # fmt: skip
) -> None:
    """Find a learning rate: train a fresh model while the rate rises exponentially, plot the
    smoothed loss (lr_find.png) and suggest a rate."""
    from cnnlab.api import lr_find as find_rate

    record = find_rate(
        config, overrides, model=model, steps=steps, low=low, high=high, output=output
    )
    echo(f"wrote {record['folder']}/lr_find.png, lr_find.csv, lr_find.json")
    rate = record["suggested_learning_rate"]
    if rate is None:
        echo(f"no suggestion: {record['reason']}")
        return
    echo(f"suggested learning rate {rate:.3g} ({record['reason']})")
    sets = [*(overrides or []), f"train.learning_rate={rate:.3g}"]
    words = ["cnnlab", "train", str(config), *(["--model", model] if model else [])]
    echo("  " + shlex.join([*words, *[w for item in sets for w in ("--set", item)]]))
