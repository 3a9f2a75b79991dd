"""A run read against data other than its own: moved or deleted (the run directory alone
predicts, explains and exports; evaluate names the missing data and how to point at it)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from .helpers import invoke, invoke_ok, only_run
from .images import write_split_folders

SIZE = 32
CLASSES = ("birds", "cats", "dogs", "frogs", "mice")


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory, mnist_arrays) -> tuple[Path, Path]:
    """A five-class run on split image folders (train, validation, test), and those folders."""
    tmp = tmp_path_factory.mktemp("run-data")
    root = write_split_folders(tmp / "photos", mnist_arrays, (12, 4, 4), classes=CLASSES)
    config = tmp / "photos.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [{SIZE}, {SIZE}]}}\n"
        "model: {builder: small_cnn, filters: [8, 16]}\n"
        "train: {epochs: 1, batch_size: 16, verbose: 0}\n"
        f"output_dir: {tmp / 'out'}\n"
    )
    invoke_ok("train", config)
    return only_run(tmp / "out"), root


def copied_run(run: Path, to: Path, data_root: Path, old_root: Path) -> Path:
    """A copy of `run` at `to` whose config names `data_root` where it named `old_root`."""
    shutil.copytree(run, to)
    config = to / "config.yaml"
    config.write_text(config.read_text().replace(str(old_root), str(data_root)))
    return to


def test_a_moved_run_whose_data_is_gone_predicts_explains_and_exports(photo_run, tmp_path):
    run, root = photo_run
    data = tmp_path / "photos"
    shutil.copytree(root, data)
    moved = copied_run(run, tmp_path / "elsewhere" / "run", data, root)
    shutil.copytree(data / "test" / "cats", tmp_path / "new")
    shutil.rmtree(data)

    predicted = invoke_ok("predict", moved, tmp_path / "new", "-o", tmp_path / "predictions.csv")
    assert "wrote 4 predictions" in predicted.output
    explained = invoke_ok("explain", moved, tmp_path / "new", "-o", tmp_path / "explained")
    assert (tmp_path / "explained" / "gradcam.png").is_file() and "Grad-CAM" in explained.output
    exported = invoke_ok("export", moved, "--format", "savedmodel", "--samples", "20")
    assert f"the run's data.root {data} is not there: checking on random pixels" in exported.output
    assert (
        "20 random pixel images" in exported.output
        and "no labels, so no accuracy" in exported.output
    )
    record = json.loads((moved / "export" / "export.json").read_text())["savedmodel"]
    assert record["accuracy"] is None and record["top1_agreement"] == 1.0

    # evaluate names what is gone and how to point at it; the advice works as copied.
    result = invoke("evaluate", moved)
    assert result.exit_code == 2
    advice = f"cnnlab evaluate {moved} --set data.root=NEW_PATH"
    assert result.output == (
        f"error: {moved / 'config.yaml'}: data.root {data}: not found (moved or deleted?); "
        f"point the run at its data: {advice}\n"
    )
    shutil.copytree(root, tmp_path / "found")
    command = shlex.split(advice.replace("NEW_PATH", str(tmp_path / "found")))
    assert command[0] == "cnnlab"
    invoke_ok(*command[1:])
    assert json.loads((moved / "evaluation.json").read_text())["test"] is not None


def test_evaluate_takes_only_data_settings(photo_run, tmp_path):
    run, root = photo_run
    wrong = invoke("evaluate", run, "--set", "train.epochs=3")
    assert (
        wrong.exit_code == 2 and "--set train.epochs=3: a run's data may be pointed" in wrong.output
    )
    resized = invoke("evaluate", run, "--set", "data.image_size=[40, 40]")
    assert resized.exit_code == 2
    assert "the data would give 40x40x3 images; the run's model takes 32x32x3" in resized.output
    missing = invoke("evaluate", run, "--set", f"data.root={tmp_path / 'nowhere'}")
    assert missing.exit_code == 2
    assert missing.output.startswith(f"error: --set data.root={tmp_path / 'nowhere'}: data.root")
