"""A run read against data other than its own: moved or deleted (the run directory alone
predicts, explains and exports; evaluate names the missing data and how to point at it), or
data with other classes (scored by class name; a class the run never saw is refused before
anything is written)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pandas as pd
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


def files(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_class_the_run_never_saw_is_refused_before_anything_is_written(
    photo_run, tmp_path, mnist_arrays
):
    run, root = photo_run
    other = write_split_folders(
        tmp_path / "other", mnist_arrays, (4, 2, 2), classes=("cats", "fish")
    )
    copy = copied_run(run, tmp_path / "run", root, root)
    invoke_ok("evaluate", copy)  # evaluation.json of its own data: a failure must keep it
    config = copy / "config.yaml"
    config.write_text(config.read_text().replace(str(root), str(other)))
    before = files(copy)
    result = invoke("evaluate", copy)
    assert result.exit_code == 1
    assert result.output == (
        f"error: {other}: class 'fish' is not one that {copy} was trained on "
        f"({', '.join(CLASSES)}); nothing was scored\n"
    )
    assert files(copy) == before


def test_a_folder_of_some_of_the_classes_is_scored_by_class_name(photo_run, tmp_path):
    run, root = photo_run
    subset = tmp_path / "subset"
    for split in ("train", "validation", "test"):
        for name in ("cats", "mice"):  # the folder's classes 0 and 1; the run's 1 and 4
            shutil.copytree(root / split / name, subset / split / name)
    copy = copied_run(run, tmp_path / "run", subset, root)
    invoke_ok("evaluate", copy)
    evaluation = json.loads((copy / "evaluation.json").read_text())
    per_class = pd.read_csv(copy / "per_class.csv").set_index("class")["support"]
    assert per_class.to_dict() == {"birds": 0, "cats": 4, "dogs": 0, "frogs": 0, "mice": 4}
    # The accuracy is that of the run's own predictions against the folder names.
    invoke_ok("predict", copy, subset / "test", "-o", tmp_path / "predictions.csv")
    predicted = pd.read_csv(tmp_path / "predictions.csv")
    truth = predicted["path"].map(lambda path: Path(path).parent.name)
    assert evaluation["test"]["accuracy"] == pytest.approx((predicted["predicted"] == truth).mean())


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


def test_a_csv_of_pixels_for_an_image_folder_run_is_one_line(photo_run, kaggle_dir):
    run, _ = photo_run
    csv = kaggle_dir / "test_labelled.csv"
    for command in (["evaluate", run, "--csv", csv], ["predict-csv", run, csv]):
        result = invoke(*command)
        assert result.exit_code == 1
        assert result.output == (
            f"error: {csv}: a CSV of pixels is for runs of arrays (mnist, kaggle_csv, cifar); this "
            "run's data is image_dir: give it image files (`cnnlab predict`) or folders\n"
        )


def test_scoring_refuses_more_classes_than_the_model_before_writing(tmp_path):
    import keras
    import numpy as np

    from cnnlab.data import Dataset
    from cnnlab.scoring import score_run
    from cnnlab.utils.errors import DataError

    inputs = keras.Input((4, 4, 1))
    model = keras.Model(
        inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    )
    images, labels = np.zeros((6, 4, 4, 1), np.uint8), np.array([0, 1, 2, 0, 1, 2])
    data = Dataset(images, labels, images, labels, None, None, ["a", "b", "c"])
    with pytest.raises(DataError, match="the data has 3 classes, the model tells 2 apart"):
        score_run(tmp_path, model, data, "evaluation.json")
    assert not list(tmp_path.iterdir())
