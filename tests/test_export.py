"""`cnnlab export`: each format from a small trained run of each builder family, run in its own
runtime and compared here with the run's .keras model on raw uint8 pixels."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from cnnlab.commands.export.convert import export_run, portable_model
from cnnlab.commands.export.runtimes import load_runtime
from cnnlab.models.common import AUGMENTATION_LAYERS
from cnnlab.utils.errors import CnnlabError

from . import helpers
from .helpers import CONFIGS, exported, keras_probabilities

pytestmark = pytest.mark.precision


def train(cli, tmp: Path, config: Path, *extra: str) -> Path:
    out = tmp / "out"
    result = cli("train", config, *helpers.quick(out, samples=300, epochs=1), *extra)
    assert result.exit_code == 0, result.output
    (run,) = [p.parent for p in out.glob("*/model.keras")]
    return run


def mnist_images(mnist_arrays, n: int = 40) -> np.ndarray:
    return mnist_arrays["x_test"][-n:][..., None]


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, mnist_arrays):
    """Chollet's MNIST convnet with flips, rotation and zoom inside the model."""
    return train(
        helpers.invoke,
        tmp_path_factory.mktemp("cnn"),
        CONFIGS / "mnist_small_cnn.yaml",
        "--set", "model.filters=[8,16]",
        "--set", "model.augmentation={flip: horizontal, rotation: 10, zoom: 0.1}",
    )  # fmt: skip


def test_cnn_with_augmentation_exports_to_every_format_and_agrees(
    cli, cnn_run, mnist_arrays, tmp_path
):
    x = mnist_images(mnist_arrays)
    expected = keras_probabilities(cnn_run, x)
    # The ONNX file goes elsewhere, over a file of the user's: export.json is written beside it.
    elsewhere = tmp_path / "m.onnx"
    elsewhere.write_bytes(b"old")
    for fmt, path, extra in (
        ("savedmodel", cnn_run / "export" / "savedmodel", ()),
        ("tflite", cnn_run / "export" / "model.tflite", ()),
        ("onnx", elsewhere, ("-o", elsewhere, "--overwrite")),
    ):
        result = cli("export", cnn_run, "--format", fmt, "--samples", "50", *extra)
        assert result.exit_code == 0, result.output
        assert "top-1 agreement 100.00%" in result.output and f"wrote {path}" in result.output
        record = json.loads((path.parent / "export.json").read_text())[path.name]
        assert record["format"] == fmt and record["quantize"] is None
        assert record["checked_on"] == {"split": "val", "images": 30}
        assert record["max_abs_diff"] < 1e-4 and record["top1_agreement"] == 1.0
        assert record["precision"] == helpers.run_precision(cnn_run)
        assert record["max_abs_diff_to_saved"] < helpers.probability_atol(cnn_run)
        assert record["accuracy"] == record["keras_accuracy"] > 0.1
        assert record["input"] == {"shape": [None, 28, 28, 1], "dtype": "uint8"}
        assert record["size_bytes"] > 20_000
        assert set(record["latency_ms"]) == {"keras", fmt} and record["latency_ms"][fmt] > 0
        # The file, run here in its own runtime on images the run never saw: the augmentation
        # (flips, rotations) is not applied, so every call gives the Keras model's answer. A
        # run trained in mixed_bfloat16 (precision auto on a bfloat16 CPU) computes in
        # bfloat16 and its export in float32: the tolerance follows the run's precision.
        got = load_runtime(fmt, path).predict(x)
        np.testing.assert_allclose(got, expected, atol=helpers.probability_atol(cnn_run))
        assert (got.argmax(1) == expected.argmax(1)).all()
        np.testing.assert_allclose(load_runtime(fmt, path).predict(x), got)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "m.onnx"]
    assert sorted(json.loads((cnn_run / "export" / "export.json").read_text())) == [
        "model.tflite",
        "savedmodel",
    ]


def test_the_portable_model_has_no_augmentation_layers(cnn_run):
    model = keras.models.load_model(cnn_run / "model.keras")
    assert any(isinstance(layer, AUGMENTATION_LAYERS) for layer in model.layers)
    inner = portable_model(model).get_layer(model.name)
    assert not any(isinstance(layer, AUGMENTATION_LAYERS) for layer in inner.layers)
    assert inner.get_layer("random_flip").__class__ is keras.layers.Identity


def test_quantized_tflite_reports_its_accuracy_drop(cli, cnn_run, mnist_arrays):
    records = exported(cli, cnn_run, "--format", "tflite", "--quantize", "int8")
    record = records["model-int8.tflite"]
    assert record["quantize"] == "int8"
    assert record["accuracy_drop"] == pytest.approx(record["keras_accuracy"] - record["accuracy"])
    float_size = records.get("model.tflite", {}).get("size_bytes")
    if float_size is not None:  # int8 weights take a quarter of float32's bytes, about
        assert record["size_bytes"] < float_size / 2
    x = mnist_images(mnist_arrays)
    got = load_runtime("tflite", cnn_run / "export" / "model-int8.tflite").predict(x)
    expected = keras_probabilities(cnn_run, x)
    error = np.abs(got - expected).max()
    assert error < 0.1
    # int8 moves each probability by at most `error`: wherever the Keras model's best class
    # leads the next by more than twice that, the int8 file picks the same class. (A model of
    # one short epoch has many near ties, more or fewer by the precision it trained in.)
    ranked = np.sort(expected, axis=1)
    clear = ranked[:, -1] - ranked[:, -2] > 2 * error
    assert clear.sum() >= 5
    assert (got.argmax(1) == expected.argmax(1))[clear].all()


def test_a_disagreeing_export_is_an_error_and_leaves_no_file(cnn_run, tmp_path):
    out = tmp_path / "strict.tflite"
    with pytest.raises(CnnlabError, match="disagrees with the Keras model"):
        # No float32 converter is exact to zero: TFLite's kernels round differently.
        export_run(cnn_run, "tflite", out, tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_are_one_line_each(cli, cnn_run, tmp_path):
    (tmp_path / "taken.onnx").write_bytes(b"mine")
    no_model = tmp_path / "no_model"
    no_model.mkdir()
    (no_model / "config.yaml").write_text((cnn_run / "config.yaml").read_text())
    cases = [
        (("--format", "coreml"), "--format: 'coreml' is not one of savedmodel, tflite, onnx"),
        (("--format", "onnx", "--quantize", "int8"), "--quantize is for --format tflite"),
        (("--format", "tflite", "--quantize", "int4"), "--quantize: 'int4' is not one of"),
        (("--format", "onnx", "-o", tmp_path / "taken.onnx"), "exists; pass --overwrite"),
        (("--format", "tflite", "-o", tmp_path / "m.onnx"), "a tflite file's name ends in"),
    ]
    for args, message in cases:
        result = cli("export", cnn_run, *args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1
    assert (tmp_path / "taken.onnx").read_bytes() == b"mine"
    result = cli("export", no_model, "--format", "onnx")
    assert result.exit_code != 0 and "no model.keras" in result.output
    result = cli("export", cnn_run, cnn_run, "--format", "onnx")
    assert result.exit_code != 0 and "export takes one run" in result.output
