"""`cnnlab export` of a two-class photo run: a sigmoid head and test-time flips. (A dense run
in mixed precision is exported in test_precision, VGG16 in test_transfer: they reuse the runs
trained there.)"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlab.commands.export.runtimes import load_runtime

from .helpers import exported, keras_probabilities, probability_atol
from .images import write_class_folders

pytestmark = pytest.mark.precision


def photo_run(cli, tmp_path, mnist_arrays, model: str):
    """A one-epoch run of `model` (a YAML flow mapping) on 32x32 cats/dogs class folders."""
    root = write_class_folders(tmp_path / "photos", mnist_arrays, 12)
    config = tmp_path / "photos.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [32, 32]}}\n"
        f"model: {model}\n"
        "train: {epochs: 1, batch_size: 8, verbose: 0}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    result = cli("train", config)
    assert result.exit_code == 0, result.output
    (run,) = [p.parent for p in (tmp_path / "out").glob("*/model.keras")]
    return run


def test_a_two_class_photo_run_exports_both_probabilities_with_its_tta(cli, tmp_path, mnist_arrays):
    model = "{builder: small_cnn, filters: [8, 16], tta: horizontal_flip}"
    run = photo_run(cli, tmp_path, mnist_arrays, model)
    records = exported(cli, run, "--format", "onnx")
    record = records["model.onnx"]
    assert record["classes"] == ["cats", "dogs"] and record["max_abs_diff"] < 1e-4
    photos = sorted((tmp_path / "photos").rglob("*.jpg"))[:6]
    x = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32))) for p in photos])
    expected = (keras_probabilities(run, x) + keras_probabilities(run, x[:, :, ::-1])) / 2
    got = load_runtime("onnx", run / "export" / "model.onnx").predict(x)
    assert got.shape == (6, 2)
    # The saved model computes in the run's precision, the export in float32.
    np.testing.assert_allclose(got, expected, atol=probability_atol(run))
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_an_airbench_run_exports_to_onnx_with_its_six_views(cli, tmp_path, mnist_arrays):
    # GELU (TensorFlow's uses erfc, which tf2onnx lacks), the whitening stem, BatchNorm without
    # scale and flip_and_shift TTA, through onnxruntime.
    model = (
        "{builder: airbench, stem: whitening, filters: [8, 16], bn_scale: false, "
        "tta: flip_and_shift, augmentation: {flip: alternating, shift: 2}}"
    )
    run = photo_run(cli, tmp_path, mnist_arrays, model)
    record = exported(cli, run, "--format", "onnx")["model.onnx"]
    assert record["max_abs_diff"] < 1e-4 and record["top1_agreement"] == 1.0
