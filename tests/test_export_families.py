"""`cnnlab export` across builder families: a mixed-precision dense run, a two-class photo run
with a sigmoid head and TTA, VGG16 without ImageNet weights."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnnlab.export.runtimes import load_runtime

from .conftest import CONFIGS
from .images import write_class_folders
from .test_export import exported, keras_probabilities, mnist_images, train


def test_a_mixed_precision_dense_run_exports_as_float32(cli, tmp_path, mnist_arrays):
    """TFLite cannot convert bfloat16 ops: the weights go into a float32 copy of the model."""
    run = train(
        cli, tmp_path, CONFIGS / "mnist_mlp.yaml", "--set", "train.precision=mixed_bfloat16"
    )
    x = mnist_images(mnist_arrays)
    expected = keras_probabilities(run, x)
    records = exported(cli, run, "--format", "tflite")
    assert records["model.tflite"]["max_abs_diff"] < 1e-4
    got = load_runtime("tflite", run / "export" / "model.tflite").predict(x)
    # The Keras model computes in bfloat16 (8 bits of mantissa); the export in float32.
    np.testing.assert_allclose(got, expected, atol=0.02)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95


def test_a_two_class_photo_run_exports_both_probabilities_with_its_tta(cli, tmp_path, mnist_arrays):
    root = write_class_folders(tmp_path / "photos", mnist_arrays, 12)
    config = tmp_path / "photos.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [32, 32]}}\n"
        "model: {builder: small_cnn, filters: [8, 16], tta: horizontal_flip}\n"
        "train: {epochs: 1, batch_size: 8, verbose: 0}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    result = cli("train", config)
    assert result.exit_code == 0, result.output
    (run,) = [p.parent for p in (tmp_path / "out").glob("*/model.keras")]
    records = exported(cli, run, "--format", "onnx")
    record = records["model.onnx"]
    assert record["classes"] == ["cats", "dogs"] and record["max_abs_diff"] < 1e-4
    photos = sorted((tmp_path / "photos").rglob("*.jpg"))[:6]
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32))) for p in photos])
    expected = (keras_probabilities(run, x) + keras_probabilities(run, x[:, :, ::-1])) / 2
    got = load_runtime("onnx", run / "export" / "model.onnx").predict(x)
    assert got.shape == (6, 2)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_vgg16_without_imagenet_weights_exports_as_a_savedmodel(cli, tmp_path, mnist_arrays):
    root = write_class_folders(tmp_path / "photos", mnist_arrays, 8)
    config = tmp_path / "vgg.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [32, 32]}}\n"
        "model: {builder: vgg16, weights: none, dense_units: [16]}\n"
        "train: {epochs: 1, batch_size: 8, verbose: 0}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    result = cli("train", config)
    assert result.exit_code == 0, result.output
    (run,) = [p.parent for p in (tmp_path / "out").glob("*/model.keras")]
    record = exported(cli, run, "--format", "savedmodel")["savedmodel"]
    assert record["max_abs_diff"] < 1e-4 and record["size_bytes"] > 50_000_000
    x = np.stack(
        [
            np.asarray(Image.open(p).convert("RGB").resize((32, 32)))
            for p in sorted(root.rglob("*.jpg"))[:4]
        ]
    )
    got = load_runtime("savedmodel", run / "export" / "savedmodel").predict(x)
    np.testing.assert_allclose(got, keras_probabilities(run, x), atol=1e-5)
