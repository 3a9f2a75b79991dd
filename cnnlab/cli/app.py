"""The `cnnlab` command. Thin: parse arguments, load the config, import the worker inside.

TensorFlow takes seconds to import, so `cnnlab --help` and config errors never import it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.backend import open_finished_run, open_runs, start_backend
from cnnlab.cli.data import data_app
from cnnlab.cli.errors import set_debug, user_errors
from cnnlab.cli.options import (
    Backend,
    ConnectTimeout,
    Coordinator,
    DataOverrides,
    Mlflow,
    NumProcesses,
    Overrides,
    ProcessId,
    RunDirs,
    parse_seeds,
    with_mlflow,
)
from cnnlab.cli.show import show_export, show_predictions
from cnnlab.utils.console import echo, note
from cnnlab.utils.errors import CnnlabError

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
    from cnnlab.config import load_config
    from cnnlab.training.cluster import check_backend, cluster_from, join

    if config is None and resume is None:
        raise CnnlabError("give a CONFIG file, or --resume RUN_DIR")
    if config is None and (overrides or mlflow):
        raise CnnlabError(
            "--set and --mlflow need a CONFIG; a resumed run keeps the config it started with"
        )
    overrides = with_mlflow(overrides, mlflow)
    if seeds is not None and resume is not None:
        raise CnnlabError("--seeds starts new runs; it cannot be combined with --resume")
    seed_list = parse_seeds(seeds) if seeds is not None else []
    configs = [load_config(config, [*(overrides or []), f"seed={s}"]) for s in seed_list]
    cfg = load_config(config, overrides or []) if config is not None and not seeds else None
    cluster = cluster_from(coordinator, num_processes, process_id)
    if configs or cfg is not None:
        first = configs[0] if configs else cfg
    else:
        from cnnlab.runs import open_run

        # A resumed run keeps its config, backend included.
        first = open_run(resume, need_data=True)[1]
    start_backend(first.backend, first.deterministic)
    check_backend(cluster, first.backend)
    from cnnlab.training.trainer import start_or_resume, train_seeds
    from cnnlab.training.trainer import train as run_training

    join(cluster, connect_timeout)
    if configs:
        train_seeds(configs, cluster)
        return
    ask = (lambda q: typer.confirm(q, default=True)) if sys.stdin.isatty() else None
    cfg, resume = start_or_resume(cfg, resume, ask, cluster)
    run_training(cfg, resume, cluster=cluster)


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
    overrides: DataOverrides = None,
    backend: Backend = None,
) -> None:
    """Score a run's best model and write evaluation.json into the run directory.

    Several runs: their averaged probabilities (an ensemble) are scored instead, on the test set.
    """
    if csv is None:
        from cnnlab.runs import locate_data

        for run_dir in run_dirs:  # the data is there, before Keras loads
            locate_data(run_dir, overrides or [])
    open_runs(run_dirs, backend)
    if len(run_dirs) == 1:
        if output is not None:
            raise CnnlabError("--output is for several runs; one run writes evaluation.json")
        from cnnlab.commands.evaluate import evaluate as run_evaluation

        results = run_evaluation(run_dirs[0], csv, overrides or [])
    else:
        from cnnlab.commands.evaluate import evaluate_ensemble

        results = evaluate_ensemble(run_dirs, csv, output, overrides or [])
    echo(json.dumps(results, indent=2))


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
    open_runs(run_dirs, backend)
    from cnnlab.commands.predict import predict_csv as run_prediction

    out, rows = run_prediction(run_dirs, test_csv, output, overwrite)
    members = f" (average of {len(run_dirs)} runs)" if len(run_dirs) > 1 else ""
    echo(f"wrote {rows:,} predictions{members} to {out}")


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
    open_runs(runs, backend)
    from cnnlab.commands.predict import predict_images

    result = predict_images(runs, inputs, output, overwrite)
    show_predictions(result)
    if result.skipped:
        raise typer.Exit(3)


@app.command()
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
    (cfg,) = open_runs([run_dir])
    from cnnlab.commands.explain import explain_images

    result = explain_images(run_dir, inputs, output, class_name, layer, overwrite)
    for path, predicted, probability, shown, png in result["images"]:
        looked = "" if shown == predicted else f", showing {shown}"
        echo(f"{path}: {predicted} {probability:.1%}{looked} -> {png}")
    for path, reason in result["skipped"]:
        echo(f"skipped {path}: {reason}")
    echo(f"Grad-CAM at layer {result['layer']}; contact sheet {result['folder']}/gradcam.png")
    if result["skipped"]:
        raise typer.Exit(3)


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
    from cnnlab.commands.export import check_request

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
    from cnnlab.commands.export.convert import export_run

    record = export_run(run_dir, format, path, overwrite, quantize, samples)
    show_export(record, path)


@app.command()
@user_errors
def serve(
    run_dirs: RunDirs,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 opens the API to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    onnx: Annotated[
        bool,
        typer.Option(
            "--onnx",
            help="Run each run's export/model.onnx (`cnnlab export RUN --format onnx`) in "
            "onnxruntime: no TensorFlow is loaded.",
        ),
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CNNLAB_SERVE_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on the API (also from the variable).",
            show_default=False,
        ),
    ] = None,
    cors: Annotated[
        list[str] | None,
        typer.Option(help="An origin whose pages may call the API (repeatable); none by default."),
    ] = None,
    max_bytes: Annotated[int, typer.Option(help="Largest request body, in bytes.", min=1)] = 20
    * 1024
    * 1024,
    max_files: Annotated[int, typer.Option(help="Most images in one request.", min=1)] = 32,
    max_batch: Annotated[
        int, typer.Option(help="Most images in one model call (1: one request at a time).", min=1)
    ] = 32,
    batch_wait_ms: Annotated[
        float,
        typer.Option(help="How long a request waits for others to share its batch.", min=0),
    ] = 5.0,
    backend: Backend = None,
) -> None:
    """Serve trained runs over HTTP: POST /predict, GET /health, and a page at /.

    Uploads are decoded as `cnnlab predict` decodes files (size, colour mode, EXIF orientation,
    the run's TTA); several runs average their probabilities.
    """
    if token is not None and not token:
        raise CnnlabError("--token: empty; give the token clients must send")
    if onnx:
        from cnnlab.cli.backend import open_finished_run

        for run_dir in run_dirs:
            open_finished_run(run_dir)
    else:
        open_runs(run_dirs, backend)
    from cnnlab.commands.serve import serve as serve_runs
    from cnnlab.commands.serve.app import Limits

    limits = Limits(max_bytes, max_files, max_batch, batch_wait_ms)
    serve_runs(
        run_dirs, host, port, onnx=onnx, token=token, cors=cors or [], limits=limits,
    )  # fmt: skip


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
    from cnnlab.commands.compare import compare as compare_runs
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
    from cnnlab.commands.check import count_flops, parameter_counts, summarize

    model, remark = summarize(cfg)
    if remark:
        note(remark)
    model.summary()
    counts = parameter_counts(model)
    echo(
        f"parameters: {counts['total']:,} ({counts['trainable']:,} trainable, "
        f"{counts['non_trainable']:,} non-trainable)"
    )
    echo(f"FLOPs per image (conv and dense layers): {count_flops(model) / 1e6:,.2f} M")


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
    from cnnlab.commands.tune import tune as run_study

    result = run_study(config, space, trials, storage, study, with_mlflow(overrides, mlflow))
    echo(f"study {result['study']} ({result['storage']}); runs in {result['folder']}")
    best = result["best"]
    if best is None:
        echo("no trial has completed yet")
        return
    params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
    echo(f"best trial #{best['number']}: {best['value']:.4f} with {params}")
    echo(f"best config: {best['config']} (run {best['run']})")
    echo(f"compare the trials: cnnlab compare {result['folder']}")


@app.command("lr-find")
@user_errors
def lr_find(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    overrides: Overrides = None,
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
    from cnnlab.config import load_config

    cfg = load_config(config, overrides or [])
    start_backend(cfg.backend, cfg.deterministic)
    from cnnlab.commands.lr_find import find_rate

    record = find_rate(cfg, config, steps, low, high, output)
    echo(f"wrote {record['folder']}/lr_find.png, lr_find.csv, lr_find.json")
    rate = record["suggested_learning_rate"]
    if rate is None:
        echo(f"no suggestion: {record['reason']}")
        return
    echo(f"suggested learning rate {rate:.3g} ({record['reason']})")
    echo(f"  cnnlab train {config} --set train.learning_rate={rate:.3g}")


@app.command()
@user_errors
def check(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    overrides: Overrides = None,
    preview: Annotated[
        bool,
        typer.Option("--preview", help="Also draw the first training batch after augmentation."),
    ] = False,
    preview_file: Annotated[
        Path, typer.Option(help="Where --preview draws it (never replaced).")
    ] = Path("train_batch.png"),
) -> None:
    """Preflight: validate CONFIG, load its data, build its model; exit 0 if train can start."""
    from cnnlab.config import load_config

    cfg = load_config(config, overrides or [])
    if preview and preview_file.exists():
        raise CnnlabError(f"--preview-file {preview_file}: exists; give another file name")
    echo(
        f"config: {config} is valid (loader {cfg.data.loader}, builder {cfg.model.builder}, "
        f"backend {cfg.backend})"
    )
    start_backend(cfg.backend, cfg.deterministic)
    from cnnlab.commands.check import preflight

    for line in preflight(cfg, preview_file if preview else None):
        echo(line)
    echo(f"ok: `cnnlab train {config}` would start; runs go to {cfg.output_dir}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
