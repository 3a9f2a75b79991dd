"""`cnnlab export` and `cnnlab serve`: taking a trained run somewhere else."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnlab.cli.errors import user_errors
from cnnlab.cli.options import Backend, RunDirs
from cnnlab.cli.show import show_export
from cnnlab.utils.errors import CnnlabError


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
    from cnnlab.api import export as export_run

    if len(run_dirs) > 1:
        raise CnnlabError(
            "export takes one run; an ensemble is not exported as one file: export each run and "
            "average their probabilities"
        )
    record = export_run(run_dirs[0], format, output, quantize, samples, overwrite)
    show_export(record, Path(record["path"]))


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
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="Read --token from this file (its one line), so it stays out of `ps`.",
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
    max_pixels: Annotated[
        int,
        typer.Option(
            help="Largest image, width x height, refused from its header before decoding.", min=1
        ),
    ] = 50_000_000,
    max_connections: Annotated[
        int, typer.Option(help="Most open connections; past them a request gets 503.", min=1)
    ] = 100,
    request_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a request's headers and body may take to arrive; slower clients are "
            "cut off.",
            min=0.1,
        ),
    ] = 30.0,
    backend: Backend = None,
) -> None:
    """Serve trained runs over HTTP: POST /predict, GET /health, and a page at /.

    Uploads are decoded as `cnnlab predict` decodes files (size, colour mode, EXIF orientation,
    the run's TTA); several runs average their probabilities.
    """
    from cnnlab.api import serve as serve_runs
    from cnnlab.commands.serve.app import Limits

    limits = Limits(
        max_bytes=max_bytes, max_files=max_files, max_batch=max_batch, wait_ms=batch_wait_ms,
        max_pixels=max_pixels, max_connections=max_connections, request_timeout_s=request_timeout,
    )  # fmt: skip
    serve_runs(
        run_dirs, host, port, onnx=onnx, token=token, token_file=token_file, cors=cors or [],
        limits=limits, backend=backend,
    )  # fmt: skip
