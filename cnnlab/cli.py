"""The `cnnlab` command. Thin: parse arguments, load the config, import the worker inside.

TensorFlow takes seconds to import, so `cnnlab --help` and config errors never import it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli_data import data_app
from cnnlab.cli_support import (
    Backend,
    ConnectTimeout,
    Coordinator,
    Mlflow,
    NumProcesses,
    Overrides,
    ProcessId,
    RunDirs,
    open_finished_run,
    run_backend,
    set_debug,
    start_backend,
    user_errors,
    with_mlflow,
)
from cnnlab.errors import CnnlabError

app = typer.Typer(
    help="Image-classification experiments with Keras: YAML in, trained and evaluated run out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when something fails.")
    ] = False,
) -> None:
    set_debug(debug)


@app.command()
@user_errors
def train(
    config: Annotated[Path | None, typer.Argument(help="Experiment YAML file.")] = None,
    overrides: Overrides = None,
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
    """Train a model as CONFIG describes into a new run directory, or continue one (--resume)."""
    from cnnlab.cluster import cluster_from, join
    from cnnlab.config import load_config

    if config is None and resume is None:
        raise CnnlabError("give a CONFIG file, or --resume RUN_DIR")
    if config is None and (overrides or mlflow):
        raise CnnlabError(
            "--set and --mlflow need a CONFIG; a resumed run keeps the config it started with"
        )
    overrides = with_mlflow(overrides, mlflow)
    if seeds is not None and resume is not None:
        raise CnnlabError("--seeds starts new runs; it cannot be combined with --resume")
    seed_list = _parse_seeds(seeds) if seeds is not None else []
    configs = [load_config(config, [*(overrides or []), f"seed={s}"]) for s in seed_list]
    cfg = load_config(config, overrides or []) if config is not None and not seeds else None
    cluster = cluster_from(coordinator, num_processes, process_id)
    if configs or cfg is not None:
        first = configs[0] if configs else cfg
    else:
        from cnnlab.runs import open_run

        first = open_run(resume)[1]  # a resumed run keeps its config, backend included
    start_backend(first.backend, first.deterministic)
    if cluster.processes > 1:
        _check_cluster_backend(first.backend)
    from cnnlab.train import start_or_resume, train_seeds
    from cnnlab.train import train as run_training

    join(cluster, connect_timeout)
    if configs:
        train_seeds(configs, cluster)
        return
    ask = (lambda q: typer.confirm(q, default=True)) if sys.stdin.isatty() else None
    cfg, resume = start_or_resume(cfg, resume, ask, cluster)
    run_training(cfg, resume, cluster=cluster)


def _check_cluster_backend(backend: str) -> None:
    if backend != "jax":
        raise CnnlabError(
            "several processes train one model with train.distribute: data_parallel on the jax "
            f"backend; this config's backend is {backend} (TensorFlow's multi-worker training "
            "fails under Keras 3, keras-team/keras#20585)"
        )


def _parse_seeds(text: str) -> list[int]:
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


@app.command()
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
    backend: Backend = None,
) -> None:
    """Score a run's best model and write evaluation.json into the run directory.

    Several runs: their averaged probabilities (an ensemble) are scored instead, on the test set.
    """
    opened = [open_finished_run(run_dir) for run_dir in run_dirs]
    start_backend(run_backend(opened[0], backend))
    if len(run_dirs) == 1:
        if output is not None:
            raise CnnlabError("--output is for several runs; one run writes evaluation.json")
        from cnnlab.evaluate import evaluate as run_evaluation

        results = run_evaluation(run_dirs[0], csv)
    else:
        from cnnlab.evaluate import evaluate_ensemble

        results = evaluate_ensemble(run_dirs, csv, output)
    typer.echo(json.dumps(results, indent=2))


@app.command("predict-csv")
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
    opened = [open_finished_run(run_dir) for run_dir in run_dirs]
    start_backend(run_backend(opened[0], backend))
    from cnnlab.predict import predict_csv as run_prediction

    out, rows = run_prediction(run_dirs, test_csv, output, overwrite)
    members = f" (average of {len(run_dirs)} runs)" if len(run_dirs) > 1 else ""
    typer.echo(f"wrote {rows:,} predictions{members} to {out}")


@app.command()
@user_errors
def predict(
    items: Annotated[
        list[str],
        typer.Argument(
            help="Run directories made by `cnnlab train` (several: their probabilities are "
            "averaged), then image files, folders (searched recursively) and glob patterns "
            "(quote them: 'photos/**/*.jpg').",
            metavar="RUN_DIR... PATH...",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CSV of predictions, one row per image.")
    ] = Path("predictions.csv"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    backend: Backend = None,
) -> None:
    """Classify image files with a trained run, decoded as its training images were.

    Exit code 0 when every image was read, 3 when some could not be (they are listed).
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
    opened = [open_finished_run(run_dir) for run_dir in runs]
    start_backend(run_backend(opened[0], backend))
    from cnnlab.predict import predict_images

    result = predict_images(runs, inputs, output, overwrite)
    _show_predictions(result)
    if result.skipped:
        raise typer.Exit(3)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _show_predictions(result) -> None:
    """The first rows of the predictions, counts per class, and what was left out."""
    from rich.table import Table

    from cnnlab.console import print_table

    frame, shown = result.frame, 20
    table = Table("path", "predicted", "probability")
    for row in frame.head(shown).itertuples(index=False):
        table.add_row(str(row.path), str(row.predicted), f"{row.probability:.4f}")
    print_table(table)
    if len(frame) > shown:
        typer.echo(f"... and {len(frame) - shown:,} more")
    counts = frame["predicted"].value_counts()
    typer.echo("predicted: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))
    typer.echo(f"wrote {len(frame):,} predictions to {result.out}")
    if result.ignored:
        verb = "is" if result.ignored == 1 else "are"
        typer.echo(f"note: ignored {_count(result.ignored, 'file')} that {verb} not an image")
    if result.skipped:
        typer.echo(f"skipped {_count(len(result.skipped), 'unreadable file')}:", err=True)
        for path, reason in result.skipped[:shown]:
            typer.echo(f"  {path}: {reason}", err=True)
        if len(result.skipped) > shown:
            typer.echo(f"  ... and {len(result.skipped) - shown:,} more", err=True)


@app.command()
@user_errors
def export(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="The run directory made by `cnnlab train` whose best model to export (one run; "
            "an ensemble is not exported as one file).",
            metavar="RUN_DIR",
            show_default=False,
        ),
    ],
    format: Annotated[
        str, typer.Option("--format", "-f", help="savedmodel, tflite or onnx.", show_default=False)
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write (a folder for savedmodel; default: RUN_DIR/export/model.<format>).",
        ),
    ] = None,
    quantize: Annotated[
        str | None,
        typer.Option(help="tflite only: float16, or int8 calibrated on the run's training images."),
    ] = None,
    samples: Annotated[
        int, typer.Option(min=1, help="Validation images the check runs through both models.")
    ] = 1000,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Export a run's best model for serving or devices, checked against the .keras model.

    The exported model takes uint8 pixels as the run's images come and gives class probabilities.
    Agreement, accuracy, size and latency are printed and written to export.json beside it.
    """
    from cnnlab.export import check_request

    if len(run_dirs) > 1:
        raise CnnlabError(
            "export takes one run; an ensemble is not exported as one file: export each run and "
            "average their probabilities"
        )
    run_dir = run_dirs[0]
    open_finished_run(run_dir)
    path = check_request(run_dir, format, quantize, output, overwrite)
    # The converters are TensorFlow's: the .keras model loads there whatever it trained on.
    start_backend("tensorflow")
    from cnnlab.export.convert import export_run

    record = export_run(run_dir, format, path, overwrite, quantize, samples, say=typer.echo)
    _show_export(record, path)


def _show_export(record: dict, path: Path) -> None:
    fmt, checked = record["format"], record["checked_on"]
    latency = record["latency_ms"]
    saved = ""
    if record["precision"] != "float32":
        saved = (
            f" (to the saved {record['precision']} model: {record['max_abs_diff_to_saved']:.2g}, "
            f"top-1 {record['top1_agreement_to_saved']:.2%})"
        )
    typer.echo(
        f"{checked['images']:,} {checked['split']} images: max probability difference "
        f"{record['max_abs_diff']:.2g}, top-1 agreement {record['top1_agreement']:.2%}{saved}, "
        f"accuracy {record['accuracy']:.4f} (Keras model {record['keras_accuracy']:.4f})"
    )
    typer.echo(
        f"size {record['size_bytes'] / 1e6:,.2f} MB; one image takes {latency[fmt]:.2f} ms "
        f"(Keras {latency['keras']:.2f} ms)"
    )
    typer.echo(f"wrote {path}")


@app.command()
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
    from cnnlab.atomic import atomic_write
    from cnnlab.compare import compare as compare_runs
    from cnnlab.compare import print_table, to_markdown

    frame = compare_runs(paths or [Path("outputs")], sort, ascending)
    print_table(frame)
    if csv is not None:
        atomic_write(csv, frame.to_csv(index=False))
        typer.echo(f"wrote {csv}")
    if markdown is not None:
        atomic_write(markdown, to_markdown(frame))
        typer.echo(f"wrote {markdown}")


@app.command()
@user_errors
def summary(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    overrides: Overrides = None,
) -> None:
    """Build CONFIG's model without training or data; print its layers, parameters and FLOPs."""
    from cnnlab.config import load_config

    cfg = load_config(config, overrides or [], need_data=False)
    start_backend(cfg.backend)
    from cnnlab.check import count_flops, parameter_counts, summarize

    model, note = summarize(cfg)
    if note:
        typer.echo(f"note: {note}", err=True)
    model.summary()
    counts = parameter_counts(model)
    typer.echo(
        f"parameters: {counts['total']:,} ({counts['trainable']:,} trainable, "
        f"{counts['non_trainable']:,} non-trainable)"
    )
    typer.echo(f"FLOPs per image (conv and dense layers): {count_flops(model) / 1e6:,.2f} M")


@app.command()
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
    from cnnlab.config import load_config

    base = load_config(config, with_mlflow(overrides, mlflow))
    start_backend(base.backend, base.deterministic)
    from cnnlab.tune import tune as run_study

    result = run_study(config, space, trials, storage, study, with_mlflow(overrides, mlflow))
    typer.echo(f"study {result['study']} ({result['storage']}); runs in {result['folder']}")
    best = result["best"]
    if best is None:
        typer.echo("no trial has completed yet")
        return
    params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
    typer.echo(f"best trial #{best['number']}: {best['value']:.4f} with {params}")
    typer.echo(f"best config: {best['config']} (run {best['run']})")
    typer.echo(f"compare the trials: cnnlab compare {result['folder']}")


@app.command()
@user_errors
def check(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    overrides: Overrides = None,
) -> None:
    """Preflight: validate CONFIG, load its data, build its model; exit 0 if train can start."""
    from cnnlab.config import load_config

    cfg = load_config(config, overrides or [])
    typer.echo(
        f"config: {config} is valid (loader {cfg.data.loader}, builder {cfg.model.builder}, "
        f"backend {cfg.backend})"
    )
    start_backend(cfg.backend, cfg.deterministic)
    from cnnlab.check import preflight

    for line in preflight(cfg):
        typer.echo(line)
    typer.echo(f"ok: `cnnlab train {config}` would start; runs go to {cfg.output_dir}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
