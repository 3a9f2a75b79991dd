"""Exporting a run: the portable model, Keras' converters, and the check of the written file
against the Keras model (see cnnlab.commands.export)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
from keras import ops

from cnnlab.commands.export import RECORD, TOLERANCE, check_request
from cnnlab.commands.export.runtimes import Runtime, latency_ms, load_runtime
from cnnlab.data import load_dataset
from cnnlab.data.pipeline import predict
from cnnlab.inference import (
    class_probabilities,
    headline,
    load_members,
    member_thresholds,
    scores,
)
from cnnlab.models.common import AUGMENTATION_LAYERS
from cnnlab.runs import missing_data
from cnnlab.utils.atomic import write_json
from cnnlab.utils.console import say
from cnnlab.utils.environment import stderr_without
from cnnlab.utils.errors import CnnlabError, DataError, RunDirError

REPRESENTATIVE_IMAGES = 200  # calibration images for int8 quantization
RANDOM_IMAGES = 100  # images of random pixels that check an export when the run's data is gone
# Notices the TFLite converter and interpreter print on every use; errors still show.
CONVERTER_NOISE = re.compile(
    r"fully_quantize: \d|Created TensorFlow Lite XNNPACK delegate|TF freezing failed|"
    r"Removed Squeeze|^\s*$"
)


def export_run(
    run_dir: Path,
    fmt: str,
    output: Path | None = None,
    overwrite: bool = False,
    quantize: str | None = None,
    samples: int = 1000,
    tolerance: float = TOLERANCE,
) -> dict:
    """Export a run's best model, check it, and record the check in export.json.

    Args:
        run_dir: a directory made by `cnnlab train`.
        fmt: savedmodel, tflite or onnx.
        output: the file (a folder for savedmodel); default RUN_DIR/export/model.<format>.
        quantize: float16 or int8 (tflite only); int8 calibrates on the run's training images.
        samples: how many validation images the check runs through both models.
        tolerance: the largest probability difference a float32 export may show.

    Returns:
        The record written to export.json: sizes, latencies, agreement and accuracies.
    """
    output = check_request(run_dir, fmt, quantize, output, overwrite)
    with _quiet_tensorflow():
        record = _export(run_dir, fmt, output, quantize, samples, tolerance)
    _record(output, record)
    return record


@contextmanager
def _quiet_tensorflow():
    """Without TensorFlow's retracing notes: the check and the latency runs call the model on
    batches of several sizes, on purpose."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _export(run_dir, fmt, output, quantize, samples, tolerance) -> dict:
    (run,) = load_members([run_dir])
    run_thresholds = member_thresholds(run)
    gone = missing_data(run.cfg.data)
    if gone and quantize == "int8":
        key, path = gone[0]
        raise DataError(
            f"--quantize int8 calibrates on the run's training images; its data.{key} {path} is "
            "not there (float16 needs no images)"
        )
    portable = portable_model(run.model, run.cfg.model.tta, gelu_as_erf=fmt == "onnx")
    if gone:
        # A run directory exports wherever it lies: without its data the file is checked
        # against the Keras model on random pixels, which has no accuracy to report.
        key, path = gone[0]
        say(f"the run's data.{key} {path} is not there: checking on random pixels instead")
        pixels = np.random.default_rng(run.cfg.seed)
        shape = (min(samples, RANDOM_IMAGES), *portable.input_shape[1:])
        x, y, split = pixels.integers(0, 256, shape, dtype=np.uint8), None, "random pixel"
        representative = None
    else:
        data = load_dataset(run.cfg.data, run.cfg.seed)
        x, y, split = _check_images(data, samples)
        representative = data.x_train[:REPRESENTATIVE_IMAGES] if quantize == "int8" else None
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".export-") as tmp:
        candidate = Path(tmp) / output.name
        say(f"exporting {run.run_dir} as {fmt}{f' ({quantize})' if quantize else ''}")
        with warnings.catch_warnings(), stderr_without(CONVERTER_NOISE):
            warnings.simplefilter("ignore", FutureWarning)  # tf2onnx's use of old NumPy names
            _convert(portable, fmt, candidate, quantize, representative)
        say(f"checking it on {len(x):,} {split} images")
        with stderr_without(CONVERTER_NOISE):
            runtime = load_runtime(fmt, candidate)
            runtime.predict(x[:1])
        record = {
            "file": output.name,
            "format": fmt,
            "quantize": quantize,
            "run": str(run.run_dir.resolve()),
            "input": {"shape": [None, *portable.input_shape[1:]], "dtype": "uint8"},
            "classes": run.class_names,
            **_compare(run, portable, runtime, x, y, split),
        }
        if run_thresholds is not None:  # several labels per image: a class is predicted at
            record["thresholds"] = dict(  # or above its threshold, as in the run
                zip(run.class_names, run_thresholds.tolist(), strict=True)
            )
        if quantize is None and record["max_abs_diff"] > tolerance:
            raise CnnlabError(
                f"the {fmt} export disagrees with the Keras model: probabilities differ by up "
                f"to {record['max_abs_diff']:.2g} (tolerance {tolerance:g}) on "
                f"{len(x)} {split} images; nothing was written"
            )
        record["size_bytes"] = _size(candidate)
        record["latency_ms"] = {
            "keras": latency_ms(portable.predict_on_batch, x[:1]),
            fmt: latency_ms(runtime.predict, x[:1]),
        }
        _move(candidate, output)
    return record


def _compare(run, portable: keras.Model, runtime: Runtime, x, y, split: str) -> dict:
    """How the exported file's probabilities and accuracy compare with the Keras model's.

    The reference for the checked difference is the model that was exported (the run's model
    in float32, without augmentation). The file is also compared with the model as saved,
    which computes in the run's precision: for a mixed-precision run that difference is the
    rounding of its half-precision layers. The accuracy drop is against the saved model.
    """
    reference = np.asarray(predict(portable, x, 256), np.float64)
    got = runtime.predict(x)
    saved = class_probabilities(run.model, x, run.cfg.model.tta)
    keras_accuracy = accuracy = None  # images without labels: agreement only
    metric = "accuracy"
    if y is not None:
        # Several labels per image: mean average precision, each class at its threshold.
        thresholds = member_thresholds(run)
        metric, keras_accuracy = headline(scores(saved, y, thresholds))
        exported = got if thresholds is not None else _normalised(got)
        accuracy = scores(exported, y, thresholds)[metric]
    return {
        "checked_on": {"split": split, "images": int(len(x))},
        "precision": model_precision(run.model),
        "max_abs_diff": float(np.abs(got - reference).max()),
        "top1_agreement": float((got.argmax(1) == reference.argmax(1)).mean()),
        "max_abs_diff_to_saved": float(np.abs(got - saved).max()),
        "top1_agreement_to_saved": float((got.argmax(1) == saved.argmax(1)).mean()),
        "metric": metric,  # what keras_accuracy and accuracy measure
        "keras_accuracy": keras_accuracy,
        "accuracy": accuracy,
        "accuracy_drop": None if y is None else keras_accuracy - accuracy,
    }


def model_precision(model: keras.Model) -> str:
    """The dtype policy a saved model computes in: its layers' mixed policy, else float32."""
    pending = list(model.layers)
    while pending:
        layer = pending.pop(0)
        if layer.dtype_policy.name.startswith("mixed_"):
            return layer.dtype_policy.name
        pending.extend(getattr(layer, "layers", ()))  # a nested model's (a pretrained base)
    return "float32"


class ErfGelu(keras.layers.Layer):
    """GELU written with erf: TensorFlow's exact GELU uses erfc, which tf2onnx cannot
    convert, and erf it can (the same function; not registered, an export never saves it)."""

    def call(self, x):
        return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


def portable_model(model: keras.Model, tta: str = "none", gelu_as_erf: bool = False) -> keras.Model:
    """The run's model as an export takes it: uint8 pixels in, class probabilities out.

    Its layers are copies in float32 (a mixed-precision run's bfloat16 ops do not all convert,
    and its weights are float32 anyway), augmentation layers become identities, a one-unit
    sigmoid head gives [P(0), P(1)], and the run's test-time augmentation is part of the graph.
    GELU activations are Keras' own (cnnlab's Gelu runs a compiled kernel), with `gelu_as_erf`
    (ONNX) written with erf (see ErfGelu).
    """

    def copy(layer: keras.Layer) -> keras.Layer:
        if isinstance(layer, AUGMENTATION_LAYERS):
            return keras.layers.Identity(name=layer.name)
        config = layer.get_config()
        if layer.dtype_policy.name.startswith("mixed_"):
            config["dtype"] = "float32"
        if isinstance(layer, keras.layers.Activation) and config["activation"] == "gelu":
            if gelu_as_erf:
                return ErfGelu(name=layer.name)
            # cnnlab's Gelu runs a compiled kernel, which the converters do not take.
            return keras.layers.Activation.from_config(config)
        return layer.__class__.from_config(config)

    inner = keras.models.clone_model(model, clone_function=copy, recursive=True)
    weights = {v.path: v for v in model.weights}
    for v in inner.weights:
        v.assign(weights[v.path])
    pixels = keras.Input(model.input_shape[1:], dtype="uint8", name="pixels")
    x = ops.cast(pixels, "float32")

    def mirrored(images):
        return (inner(images, training=False) + inner(ops.flip(images, axis=2), training=False)) / 2

    if tta == "flip_and_shift":  # as cnnlab.inference.class_probabilities
        height, width = model.input_shape[1:3]
        padded = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        shifted = (padded[:, :height, :width], padded[:, 2:, 2:])
        probs = (mirrored(x) + (mirrored(shifted[0]) + mirrored(shifted[1])) / 2) / 2
    elif tta == "horizontal_flip":
        probs = mirrored(x)
    else:
        probs = inner(x, training=False)
    if probs.shape[-1] == 1:  # a two-class run's sigmoid unit: P(class 1)
        probs = ops.concatenate([1 - probs, probs], axis=-1)
    portable = keras.Model(pixels, probs, name=f"{model.name}_portable")
    # Called once, so that every exporter (tf2onnx too) finds a traced model.
    portable.predict_on_batch(np.zeros((1, *portable.input_shape[1:]), np.uint8))
    return portable


def _check_images(data, samples: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Up to `samples` labelled images the run did not train on: validation, else test."""
    for split in ("val", "test"):
        x, y = data.split(split)
        if x is not None and y is not None and len(x):
            return x[:samples], y[:samples], split
    raise RunDirError("the run's data has no labelled validation or test images to check with")


def _convert(model, fmt: str, path: Path, quantize: str | None, representative) -> None:
    """Write `model` to `path` with Keras' exporter for `fmt`."""
    if fmt == "savedmodel":
        model.export(path, format="tf_saved_model", verbose=False)
    elif fmt == "onnx":
        model.export(path, format="onnx", verbose=False)
    else:
        import tensorflow as tf

        # Built-in ops only: the file then runs in any LiteRT interpreter, on a phone too.
        options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
        if quantize is not None:
            options["optimizations"] = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            options["target_spec"]["supported_types"] = [tf.float16]
        if quantize == "int8":
            options["representative_dataset"] = lambda: ([x[None]] for x in representative)
        model.export(path, format="litert", verbose=False, **options)
    if not path.exists():
        raise CnnlabError(f"the {fmt} converter wrote no file")


def _normalised(probs: np.ndarray) -> np.ndarray:
    """Rows of a quantized model's output, made distributions again for scoring."""
    probs = np.clip(probs, 0, None)
    return probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _move(candidate: Path, output: Path) -> None:
    """Put a checked export in place; a replaced one is removed only once the new one is in."""
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old")
        os.replace(output, old)
    os.replace(candidate, output)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def _record(output: Path, record: dict) -> None:
    """Add the export's entry to export.json beside it (other files' entries are kept)."""
    path = output.parent / RECORD
    records = json.loads(path.read_text()) if path.is_file() else {}
    records[output.name] = record
    write_json(path, records)
