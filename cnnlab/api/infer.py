"""Using trained runs from Python: evaluate, predict, submission, predict_csv, explain, export,
serve and compare, for one run or several (an ensemble averages their probabilities). The `cnnlab`
commands of the same names call these."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from cnnlab.api.backend import open_finished_run, open_runs, start_backend
from cnnlab.utils.errors import CnnlabError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from PIL.Image import Image

    from cnnlab.api.run import Run
    from cnnlab.commands.predict import Predictions
    from cnnlab.commands.submission import Submission

RunLike = Union[str, Path, "Run"]  # a run directory, or a Run (an os.PathLike)
# Image files, folders (searched recursively) and glob patterns; PIL images; uint8 arrays of
# one image (H, W[, C]) or a batch (N, H, W[, C]; 3-D with C not 1, 3 or 4: a batch of one
# channel); or a list of any of these.
Images = Union[str, Path, "Image", "np.ndarray", Sequence[Any]]


def _paths(runs: RunLike | Sequence[RunLike]) -> list[Path]:
    if isinstance(runs, str | os.PathLike):
        runs = [runs]
    if not runs:
        raise CnnlabError("give at least one run")
    return [Path(os.fspath(run)) for run in runs]


def evaluate(
    runs: RunLike | Sequence[RunLike],
    csv: str | Path | None = None,
    output: str | Path | None = None,
    backend: str | None = None,
    data: Mapping[str, Any] | Sequence[str] | None = None,
) -> dict:
    """Score a run's best model, or the average of several runs' probabilities.

    Args:
        runs: one run (its validation and test data are scored and evaluation.json written
            into it, the plots drawn again), or several (an ensemble, scored on the test set).
        csv: a labelled Kaggle-format CSV to score instead of the runs' own data.
        output: several runs: also write the result here as JSON.
        backend: the Keras backend to load the models on (default: the first run's).
        data: where the runs' data is now, when it moved: {"data.root": "photos"} (or
            "data.KEY=VALUE" strings); only `data.` keys that keep the model's image shape.

    Returns:
        {"val": {...}, "test": {...}} for one run; with several, {"runs", "members", "test"}.
    """
    from cnnlab.config import override_items

    run_dirs = _paths(runs)
    overrides = override_items(data)
    if csv is None:
        from cnnlab.runs import locate_data

        for run_dir in run_dirs:  # the data is there, before Keras loads
            locate_data(run_dir, overrides)
    open_runs(run_dirs, backend)
    csv = Path(csv) if csv is not None else None
    if len(run_dirs) == 1:
        if output is not None:
            raise CnnlabError("--output is for several runs; one run writes evaluation.json")
        from cnnlab.commands.evaluate import evaluate as score

        return score(run_dirs[0], csv, overrides)
    from cnnlab.commands.evaluate import evaluate_ensemble

    out = Path(output) if output is not None else None
    return evaluate_ensemble(run_dirs, csv, out, overrides)


def predictions(
    runs: RunLike | Sequence[RunLike],
    images: Images,
    output: str | Path | None = None,
    overwrite: bool = False,
    backend: str | None = None,
) -> Predictions:
    """`predict`'s table with what was written and left out (what `cnnlab predict` prints)."""
    import numpy as np

    run_dirs = _paths(runs)
    items = list(images) if isinstance(images, list | tuple) else [images]
    if isinstance(images, np.ndarray) and (
        images.ndim == 4 or (images.ndim == 3 and images.shape[-1] not in (1, 3, 4))
    ):
        items = list(images)  # a batch: (N, H, W, C), or (N, H, W) of one channel
    if not items:
        raise CnnlabError("give image files, folders or patterns after the run directories")
    files = [item for item in items if isinstance(item, str | Path)]
    if files and len(files) < len(items):
        raise CnnlabError("give image files or images in memory, not both in one call")
    open_runs(run_dirs, backend)  # before anything imports Keras
    from cnnlab.commands.predict import Predictions, predict_images, predict_pictures

    if files:
        return predict_images(run_dirs, [str(f) for f in files], _path(output), overwrite)
    names = [f"image-{i}" for i in range(len(items))]
    frame = predict_pictures(run_dirs, items, names)
    out = _path(output)
    if out is not None:
        from cnnlab.utils.atomic import atomic_path, check_output

        check_output(out, overwrite)
        with atomic_path(out) as tmp:
            frame.to_csv(tmp, index=False)
    return Predictions(frame, out, [], 0)


def predict(
    runs: RunLike | Sequence[RunLike],
    images: Images,
    output: str | Path | None = None,
    overwrite: bool = False,
    backend: str | None = None,
) -> pd.DataFrame:
    """Classify images with a run's best model, or the average of several runs'.

    Each image is decoded as the run's training images were (size, colour mode, resampling,
    EXIF orientation) and predicted with the run's test-time augmentation, as `cnnlab
    predict` does; files that cannot be read are left out (`predictions` lists them).

    Args:
        runs: run directories (or Runs).
        images: image files, folders, glob patterns ('photos/**/*.jpg'), PIL images, uint8
            arrays (one image or a batch), or a list of these.
        output: also write the table as CSV here.

    Returns:
        One row per image: path (image-N for images in memory), predicted, probability, and a
        column per class, the same columns as `cnnlab predict`'s CSV.
    """
    return predictions(runs, images, output, overwrite, backend).frame


def submission(
    runs: RunLike | Sequence[RunLike],
    test_dir: str | Path,
    sample_submission: str | Path,
    output: str | Path | None = None,
    label_map: Mapping[str, Any] | str | None = None,
    clip: bool = False,
    overwrite: bool = False,
    backend: str | None = None,
) -> Submission:
    """A submission in a competition's own format: its sample submission's rows and columns,
    filled from a run's predictions (or several runs' averaged) for a folder of test images.

    The sample's first column holds the ids, each the name of an image file in `test_dir`
    (with or without its extension), copied verbatim and in the sample's order. The other
    columns say what to write: one column of integers or text, the predicted class (for a run
    with several labels per image, its tags, space-separated); one column of floats, the
    probability of a two-class run's class mapped to 1 (without `label_map`, its second
    class); one column per class, probabilities (floats) or 0/1 (integers).

    Args:
        runs: run directories (or Runs).
        test_dir: the folder of test images; every image needs an id, every id an image.
        sample_submission: the competition's sample submission CSV.
        output: the CSV to write; None writes nothing.
        label_map: the run's class names -> the competition's labels: {"cats": 0, "dogs": 1}
            or "cats=0,dogs=1".
        clip: clip probabilities to [0.005, 0.995] (log-loss competitions reward it).

    Returns:
        The filled table (`.frame`), the file written (`.out`) and what the columns hold
        where the sample leaves a choice (`.notes`).
    """
    from cnnlab.commands.submission import check_request, make_submission, parse_label_map

    run_dirs = _paths(runs)
    if isinstance(label_map, str):
        label_map = parse_label_map(label_map)
    elif label_map is not None:
        label_map = {str(name): str(value) for name, value in label_map.items()}
    # The sample and the folder are checked before Keras loads (seconds).
    request = check_request(Path(test_dir), Path(sample_submission), _path(output), overwrite)
    open_runs(run_dirs, backend)
    return make_submission(run_dirs, request, label_map, clip)


def predict_csv(
    runs: RunLike | Sequence[RunLike],
    test_csv: str | Path,
    output: str | Path | None = None,
    overwrite: bool = False,
    backend: str | None = None,
) -> tuple[Path, int]:
    """Write a Kaggle submission (ImageId,Label) for a Kaggle-format CSV of pixels.

    Returns:
        The file written (default RUN_DIR/submission.csv; several runs:
        submission-ensemble.csv) and the number of rows.
    """
    run_dirs = _paths(runs)
    open_runs(run_dirs, backend)
    from cnnlab.commands.predict import predict_csv as submit

    return submit(run_dirs, Path(test_csv), _path(output), overwrite)


def explain(
    run: RunLike,
    images: str | Path | Sequence[str | Path],
    output: str | Path | None = None,
    class_name: str | None = None,
    layer: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Grad-CAM: where the run's model looks, as a heatmap over each image file and a
    contact sheet (gradcam.png).

    Returns:
        {"folder", "layer", "images": [(path, predicted, probability, explained class, png)],
        "skipped": [(path, reason)]}
    """
    (run_dir,) = _paths(run)
    open_runs([run_dir])
    from cnnlab.commands.explain import explain_images

    inputs = [str(images)] if isinstance(images, str | Path) else [str(i) for i in images]
    return explain_images(run_dir, inputs, _path(output), class_name, layer, overwrite)


def export(
    run: RunLike,
    format: str,
    output: str | Path | None = None,
    quantize: str | None = None,
    samples: int = 1000,
    overwrite: bool = False,
) -> dict:
    """Export a run's best model (savedmodel, tflite or onnx), checked against the .keras
    model on `samples` validation images.

    Returns:
        The record also written to export.json: agreement, accuracy, size, latency, "path".
    """
    from cnnlab.commands.export import check_request

    (run_dir,) = _paths(run)
    open_finished_run(run_dir)
    path = check_request(run_dir, format, quantize, _path(output), overwrite)
    # The converters are TensorFlow's: the .keras model loads there whatever it trained on.
    start_backend("tensorflow")
    from cnnlab.commands.export.convert import export_run

    return {**export_run(run_dir, format, path, overwrite, quantize, samples), "path": str(path)}


def serve(
    runs: RunLike | Sequence[RunLike],
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    onnx: bool = False,
    token: str | None = None,
    token_file: str | Path | None = None,
    cors: Sequence[str] = (),
    limits: Any = None,
    backend: str | None = None,
) -> None:
    """Serve runs over HTTP until stopped: POST /predict, GET /health and a page at /.

    Args:
        onnx: run each run's export/model.onnx in onnxruntime (no TensorFlow).
        token: require 'Authorization: Bearer TOKEN'.
        token_file: read that token from this file instead (it stays out of `ps`).
        limits: a cnnlab.commands.serve.app.Limits (request size, files, pixels, batching,
            connections, request timeout).
    """
    run_dirs = _paths(runs)
    if token is not None and token_file is not None:
        raise CnnlabError("--token and --token-file: give one (CNNLAB_SERVE_TOKEN is --token)")
    if token_file is not None:
        token = _read_token(Path(token_file))
    if token is not None and not token:
        raise CnnlabError("--token: empty; give the token clients must send")
    if onnx:
        for run_dir in run_dirs:
            open_finished_run(run_dir)
    else:
        open_runs(run_dirs, backend)
    from cnnlab.commands.serve import serve as serve_runs
    from cnnlab.commands.serve.app import Limits

    serve_runs(
        run_dirs, host, port, onnx=onnx, token=token, cors=list(cors), limits=limits or Limits(),
    )  # fmt: skip


def _read_token(path: Path) -> str:
    """The token in `path`, without the whitespace and newline around it."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise CnnlabError(f"--token-file {path}: no such file") from None
    except OSError as e:
        raise CnnlabError(f"--token-file {path}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError:
        raise CnnlabError(f"--token-file {path}: not text; write the token in it") from None
    if not token:
        raise CnnlabError(f"--token-file {path}: empty; write the token clients must send in it")
    if len(token.split()) > 1:
        raise CnnlabError(
            f"--token-file {path}: holds more than one word; write the token alone in it"
        )
    return token


def compare(
    paths: Sequence[str | Path] = ("outputs",), sort: str = "test_accuracy", ascending: bool = False
) -> pd.DataFrame:
    """A table of runs (run directories, or folders of them): dataset, builder, parameters,
    accuracy, time; unfinished runs included."""
    from cnnlab.commands.compare import compare as table

    return table([Path(p) for p in paths], sort, ascending)


def _path(path: str | Path | None) -> Path | None:
    return Path(path) if path is not None else None
