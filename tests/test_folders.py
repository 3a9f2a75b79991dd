"""A folder of photos in one command: `cnnlab train DIR`, `init`, `check` and `lr-find` on a
folder, the config made from it, and what is said about it."""

from __future__ import annotations

import json

import pytest
import yaml

from cnnlab.api.folders import BACKBONE, BACKBONE_WEIGHTS, folder_config
from cnnlab.config import load_config

from .helpers import CONFIGS, invoke, only_run
from .images import write_class_folders

QUICK = ["--set", "train.epochs=1", "--set", "train.verbose=0"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory, mnist_arrays):
    return write_class_folders(tmp_path_factory.mktemp("data") / "pets", mnist_arrays, 12, size=40)


@pytest.fixture(autouse=True)
def _no_weights_at_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # an empty Keras cache


def test_train_on_a_folder_needs_no_yaml(photos, tmp_path):
    out = tmp_path / "out"
    result = invoke("train", photos, *QUICK, "--set", f"output_dir={out}")
    assert result.exit_code == 0, result.output
    assert (
        f"{photos}: 24 photos in 2 classes (cats, dogs); median short side 40 px" in result.output
    )
    assert "the airbench BatchNorm convnet from scratch" in result.output
    run_dir = only_run(out)
    assert run_dir.name.startswith("pets-")
    saved = load_config(run_dir / "config.yaml")
    assert (saved.data.loader, saved.data.root, saved.data.image_size) == (
        "image_dir",
        photos,
        (40, 40),
    )
    assert saved.model.builder == "airbench" and saved.model.filters == [32, 64, 128]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 1


def test_init_writes_the_config_train_would_use(photos, tmp_path):
    out = tmp_path / "pets.yaml"
    result = invoke("init", photos, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}; next: cnnlab check {out} --preview" in result.output
    text = out.read_text()
    assert text.startswith(f"# Written by `cnnlab init {photos}`") and "median short side" in text
    made = folder_config(photos)
    made.pop("_why")
    assert yaml.safe_load(text) == made
    assert load_config(out).model.builder == "airbench"
    again = invoke("init", photos, "-o", out)
    assert again.exit_code == 1 and "already exists; pass --overwrite" in again.output


def test_a_backbone_by_name_and_the_check_command_it_gives(photos):
    result = invoke("check", photos, "--model", "Xception", "--set", "model.weights=none")
    assert result.exit_code == 0, result.output
    assert "builder pretrained" in result.output
    # Xception takes 71 px at least: the 40 px photos are enlarged to that.
    assert "image_size [71, 71]" in result.output
    assert f"`cnnlab train {photos} --model Xception --set model.weights=none` would start" in (
        result.output
    )


def test_weights_at_hand_pick_the_pretrained_backbone(photos, tmp_path):
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / BACKBONE_WEIGHTS).write_bytes(b"")
    made = folder_config(photos)
    assert made["model"]["builder"] == "pretrained" and made["model"]["backbone"] == BACKBONE
    assert made["train"]["phases"][1]["unfreeze"] == "all"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "Resnet50"], "--model Resnet50: not a builder or a keras.applications "
         "backbone; did you mean 'ResNet50'?"),
        ([CONFIGS / "mnist_mlp.yaml", "--model", "convnet"], "--model convnet is for a folder"),
    ],
)  # fmt: skip
def test_a_wrong_model_is_one_line(photos, args, message):
    if not str(args[0]).endswith(".yaml"):
        args = [photos, *args]
    result = invoke("check", *args)
    assert result.exit_code != 0
    (line,) = [x for x in result.output.splitlines() if x.startswith("error: ")]
    assert message in line


def test_lr_find_on_a_folder_gives_a_train_command_for_it(photos, tmp_path):
    result = invoke(
        "lr-find", photos, "--steps", "12", "-o", tmp_path / "lr", "--set", "train.batch_size=8"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lr" / "lr_find.png").is_file()
    assert "suggested learning rate" in result.output or "no suggestion: " in result.output
    if "suggested learning rate" in result.output:
        assert f"cnnlab train {photos} --set train.batch_size=8 --set train.learning_rate=" in (
            result.output
        )


def test_validation_taken_after_a_test_split_is_said(photos, tmp_path):
    result = invoke("check", photos, "--set", "data.test_split=0.15",
                    "--set", "data.validation_split=0.15")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "validation <- 15% of train after the test split" in result.output


def test_a_folder_one_level_too_high_names_the_one_to_give(photos, tmp_path):
    top = tmp_path / "top"
    top.mkdir()
    (top / "pets").symlink_to(photos, target_is_directory=True)
    result = invoke("check", top)
    (line,) = [x for x in result.output.splitlines() if x.startswith("error: ")]
    assert line.endswith(f"holds the images, in 2 classes (cats, dogs); give that folder "
                         f"instead: {top / 'pets'}")  # fmt: skip
    assert invoke("check", top / "pets", "--set", "train.epochs=1").exit_code == 0
