"""Image folders as people have them: split-folder names, nested and mixed folders, system
files, EXIF orientation, the decoded-image cache and progress output."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnlab.config import ImageFormat
from cnnlab.config.images import ImageDirData
from cnnlab.data import load_dataset
from cnnlab.data.images import read_image
from cnnlab.utils import console
from cnnlab.utils.errors import DataError

from .helpers import invoke, keras_probabilities, only_run
from .images import (
    banded_photo,
    digit_photo,
    write_class_folders,
    write_named_files,
    write_split_folders,
)


def cfg(root: Path, **kwargs) -> ImageDirData:
    return ImageDirData(loader="image_dir", root=str(root), **{"image_size": (24, 24), **kwargs})


def rename_splits(root: Path, names: dict[str, str]) -> Path:
    for old, new in names.items():
        (root / old).rename(root / new)
    return root


@pytest.mark.parametrize(
    "names",
    [
        {"train": "training_set", "test": "test_set", "validation": "Val"},
        {"train": "Training", "test": "TESTING", "validation": "valid"},
        {"train": "TRAIN", "test": "Test", "validation": "validation"},
    ],
)
def test_split_folders_are_known_by_their_usual_names(tmp_path, mnist_arrays, names):
    root = rename_splits(write_split_folders(tmp_path / "d", mnist_arrays, (6, 3, 4)), names)
    data = load_dataset(cfg(root), seed=0)
    assert data.class_names == ["cats", "dogs"]
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (12, 6, 8)
    assert data.source == (
        f"image folders: train <- {root / names['train']}, "
        f"validation <- {root / names['validation']}, test <- {root / names['test']}"
    )


def test_the_kaggle_course_layout_has_cat_and_dog_classes(tmp_path, mnist_arrays):
    # dataset/training_set/{cats,dogs} + dataset/test_set/{cats,dogs}, no validation folder.
    root = write_split_folders(tmp_path / "dataset", mnist_arrays, (10, 0, 4))
    shutil.rmtree(root / "validation")
    rename_splits(root, {"train": "training_set", "test": "test_set"})
    data = load_dataset(cfg(root, validation_split=0.2), seed=0)
    assert data.class_names == ["cats", "dogs"]
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (16, 4, 8)
    assert "validation <- 20% of train" in data.source


def test_a_test_folder_wins_over_test_split(tmp_path, mnist_arrays):
    root = write_split_folders(tmp_path / "d", mnist_arrays, (10, 0, 3))
    shutil.rmtree(root / "validation")
    data = load_dataset(cfg(root, validation_split=0.1, test_split=0.5), seed=0)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (18, 2, 6)


def test_one_folder_of_classes_says_where_each_split_came_from(tmp_path, mnist_arrays):
    root = write_class_folders(tmp_path / "flat", mnist_arrays, 10)
    data = load_dataset(cfg(root, validation_split=0.2, test_split=0.1), seed=0)
    assert data.source == (
        f"image folders: train <- {root}, validation <- 20% of train after the test split, "
        "test <- 10% of train"
    )


def test_a_class_folder_holding_folders_is_an_error(tmp_path, mnist_arrays):
    root = write_class_folders(tmp_path / "d", mnist_arrays, 4)
    (root / "cats" / "kittens").mkdir()
    (root / "cats" / "cats.1.jpg").rename(root / "cats" / "kittens" / "cats.1.jpg")
    with pytest.raises(DataError) as info:
        load_dataset(cfg(root), seed=0)
    message = str(info.value)
    assert message.startswith(f"{root / 'cats'}: class folder 'cats' holds the folder kittens/")
    assert "root/<class>/<image> or root/train/<class>/<image>" in message


def test_a_root_one_level_too_high_points_at_the_right_one(tmp_path, mnist_arrays):
    inner = write_split_folders(tmp_path / "top" / "dataset", mnist_arrays, (4, 2, 2))
    rename_splits(inner, {"train": "training_set", "test": "test_set"})
    (tmp_path / "top" / "other").mkdir()
    shutil.copy(sorted((inner / "test_set" / "cats").iterdir())[0], tmp_path / "top" / "other")
    with pytest.raises(DataError, match=f"set data.root to {inner}"):
        load_dataset(cfg(tmp_path / "top"), seed=0)


def test_split_and_class_folders_mixed_is_an_error(tmp_path, mnist_arrays):
    root = write_split_folders(tmp_path / "d", mnist_arrays, (4, 2, 2))
    write_class_folders(root, mnist_arrays, 2, classes=("birds",))
    with pytest.raises(DataError, match="mixes split folders .* with other folders \\(birds/\\)"):
        load_dataset(cfg(root), seed=0)


def test_two_folders_for_one_split_or_none_for_training_are_errors(tmp_path, mnist_arrays):
    root = write_split_folders(tmp_path / "d", mnist_arrays, (4, 2, 2))
    shutil.copytree(root / "train", root / "training")
    with pytest.raises(DataError, match="both train/ and training/ would be the train split"):
        load_dataset(cfg(root), seed=0)
    shutil.rmtree(root / "train")
    shutil.rmtree(root / "training")
    with pytest.raises(DataError, match="no training folder"):
        load_dataset(cfg(root), seed=0)


def test_hidden_and_system_files_are_ignored_without_a_word(tmp_path, mnist_arrays):
    root = write_split_folders(tmp_path / "d", mnist_arrays, (6, 2, 2))
    clean = load_dataset(cfg(root), seed=0)
    system = [
        root / ".DS_Store",
        root / "train" / ".DS_Store",
        root / "train" / "cats" / ".DS_Store",
        root / "train" / "cats" / "Thumbs.db",
        root / "train" / "dogs" / "desktop.ini",
        root / "train" / "dogs" / "._dogs.1.jpg",
        root / "test" / "cats" / ".hidden.jpg",
    ]
    for path in system:
        path.write_bytes(b"\x00\x05\x16\x07 not an image")
    (root / "train" / "cats" / ".ipynb_checkpoints").mkdir()
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "x").write_bytes(b"junk")
    data = load_dataset(cfg(root), seed=0)  # on_bad_file: error, and nothing to complain of
    assert data.problems == []
    np.testing.assert_array_equal(data.x_train, clean.x_train)


def upright_picture() -> Image.Image:
    """40 rows by 20 columns: the top half white, the bottom half black."""
    pixels = np.zeros((40, 20), np.uint8)
    pixels[:20] = 255
    return Image.fromarray(pixels).convert("RGB")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    # Stored turned 90° anticlockwise, with the tag (6) that says to turn it clockwise.
    stored = upright_picture().transpose(Image.Transpose.ROTATE_90)
    assert stored.size == (40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"phone{suffix}"
    stored.save(path, exif=exif, **({"quality": 95} if suffix == ".jpg" else {}))
    pixels = read_image(path, ImageFormat(40, 20, "grayscale")).astype(int)
    assert pixels.shape == (40, 20, 1)
    assert pixels[:18].mean() > 240 and pixels[22:].mean() < 15  # upright: white on top


def test_decoded_images_are_cached_until_a_file_changes(tmp_path, mnist_arrays, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(cache))
    root = write_split_folders(tmp_path / "d", mnist_arrays, (6, 2, 2))
    first = load_dataset(cfg(root), seed=0)
    assert len(list((cache / "images").glob("*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as patch:
        # (The module that decodes and caches for both loaders of image files.)
        patch.setattr(sys.modules["cnnlab.data.image_files"], "decode_files", no_decoding)
        again = load_dataset(cfg(root), seed=0)
        np.testing.assert_array_equal(again.x_train, first.x_train)
        np.testing.assert_array_equal(again.y_test, first.y_test)
        # Another size is another entry, decoded afresh.
        with pytest.raises(AssertionError, match="decoded although cached"):
            load_dataset(cfg(root, image_size=(20, 20)), seed=0)
    # A file replaced by another picture: decoded again, and the new pixels are seen.
    changed = sorted((root / "test" / "cats").iterdir())[0]
    Image.new("RGB", (40, 40), (0, 255, 0)).save(
        changed, format=changed.suffix[1:].replace("jpg", "jpeg")
    )
    os.utime(changed, ns=(1, 1))
    after = load_dataset(cfg(root), seed=0)
    assert not np.array_equal(after.x_test, first.x_test)
    greens = after.x_test[..., 1].astype(int) - after.x_test[..., 0]
    assert (greens.mean(axis=(1, 2)) > 200).sum() == 1
    assert len(list((cache / "images").glob("*.npz"))) == 2


def test_the_cache_keeps_resize_modes_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "wide"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            banded_photo(80 + 20 * i, 40 + 10 * i).save(root / name / f"{i}.png")
    squash = load_dataset(cfg(root), seed=0)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as patch:
        patch.setattr(sys.modules["cnnlab.data.image_files"], "decode_files", no_decoding)
        np.testing.assert_array_equal(load_dataset(cfg(root), seed=0).x_train, squash.x_train)
        for mode in ("crop", "pad"):
            with pytest.raises(AssertionError, match="decoded although cached"):
                load_dataset(cfg(root, resize_mode=mode), seed=0)
    crop = load_dataset(cfg(root, resize_mode="crop"), seed=0)
    assert (crop.x_train == (0, 255, 0)).all()  # the green centre only, no squashed bands
    assert (squash.x_train[:, :, :4, 0] == 255).all()  # the squashed red band
    assert len(list((tmp_path / "cache" / "images").glob("*.npz"))) == 2


@pytest.fixture(scope="module")
def cropping_run(tmp_path_factory, mnist_arrays):
    """A run trained with resize_mode: crop, and a wide photo: a digit between colour bands,
    which crop decodes as the digit alone."""
    tmp = tmp_path_factory.mktemp("crop")
    root = write_class_folders(tmp / "photos", mnist_arrays, 8, size=32)
    config = tmp / "c.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [32, 32], resize_mode: crop}}\n"
        "model: {builder: small_cnn, filters: [8, 16]}\n"
        "train: {epochs: 1, batch_size: 8, verbose: 0}\n"
        f"output_dir: {tmp / 'out'}\n"
    )
    result = invoke("train", config)
    assert result.exit_code == 0, result.output
    (run,) = [p.parent for p in (tmp / "out").glob("*/model.keras")]
    photo = banded_photo(96, 32)
    photo.paste(digit_photo(mnist_arrays["x_train"][100], 1, 32), (32, 0))
    photo.save(tmp / "wide.png")
    centre = np.asarray(photo.crop((32, 0, 64, 32)))
    return run, tmp / "wide.png", centre


def test_predict_decodes_as_the_run_was_trained(cropping_run, tmp_path):
    from cnnlab.runs import open_run

    run, photo, centre = cropping_run
    fmt = open_run(run)[1].data.image_format  # from the run's config.yaml
    assert fmt.resize_mode == "crop"
    np.testing.assert_array_equal(read_image(photo, fmt), centre)  # as training decodes
    result = invoke("predict", run, photo, "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(tmp_path / "p.csv")[["cats", "dogs"]].to_numpy()
    np.testing.assert_allclose(predicted, keras_probabilities(run, centre[None]), atol=2e-6)
    squashed = read_image(photo, fmt._replace(resize_mode="squash"))
    assert np.abs(predicted - keras_probabilities(run, squashed[None])).max() > 1e-3


def test_serve_decodes_uploads_as_the_run_was_trained(cropping_run):
    from cnnlab.commands.serve.predictor import load_predictor

    run, photo, centre = cropping_run
    (decoded,) = load_predictor([run], onnx=False).decode(photo.read_bytes()).values()
    np.testing.assert_array_equal(decoded, centre[None])


def test_bad_files_come_back_from_the_cache_too(tmp_path, mnist_arrays, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    root = write_split_folders(tmp_path / "d", mnist_arrays, (6, 2, 2))
    (root / "train" / "cats" / "broken.jpg").write_bytes(b"not a picture")
    first = load_dataset(cfg(root, on_bad_file="skip"), seed=0)
    again = load_dataset(cfg(root, on_bad_file="skip"), seed=0)
    assert (
        first.problems
        == again.problems
        == [
            (
                str(root / "train" / "cats" / "broken.jpg"),
                "not an image (Pillow cannot identify it)",
            )
        ]
    )


def test_progress_lines_when_output_is_a_file(capsys, monkeypatch):
    monkeypatch.setattr(console, "LINE_SECONDS", 0.0)
    with console.progress("decoding train images", 1000) as advance:
        for _ in range(10):
            advance(100)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cnnlab: decoding train images: 100/1,000 (10%), ")
    assert "s left" in lines[0]
    assert len(lines) == 10  # nine at 10%..90%, then the final count and time
    assert lines[-1].startswith("cnnlab: decoding train images: 1,000/1,000 in ")


def test_no_progress_for_a_handful_of_images(capsys):
    with console.progress("decoding", 10) as advance:
        advance(10)
    assert capsys.readouterr().out == ""


def test_check_shows_the_splits_and_the_memory(tmp_path, mnist_arrays, cli):
    root = write_split_folders(tmp_path / "d", mnist_arrays, (6, 3, 4))
    rename_splits(root, {"train": "training_set", "test": "test_set"})
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [32, 32]}}\n"
        "model: {builder: small_cnn, filters: [8, 16]}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    result = cli("check", config)
    assert result.exit_code == 0, result.output
    assert f"train <- {root / 'training_set'}" in result.output
    assert f"test <- {root / 'test_set'}" in result.output
    # 26 images of 32x32x3 bytes.
    assert f"decoded images take {26 * 32 * 32 * 3 / 2**20:,.1f} MiB" in result.output


def test_a_root_above_the_only_folder_names_that_folder(tmp_path, mnist_arrays):
    # flowers/flowers/<class>/..., and catsdogs/dataset/{training_set,test_set}/<class>/...
    inner = write_class_folders(tmp_path / "flowers" / "flowers", mnist_arrays, 4,
                                classes=("daisy", "rose", "tulip"))  # fmt: skip
    nested = write_split_folders(tmp_path / "catsdogs" / "dataset", mnist_arrays, (4, 2, 2))
    rename_splits(nested, {"train": "training_set", "test": "test_set"})
    cases = [
        (tmp_path / "flowers", inner, "3 classes (daisy, rose, tulip)"),
        (tmp_path / "catsdogs", nested, "2 classes (cats, dogs)"),
    ]
    for top, below, classes in cases:
        with pytest.raises(DataError) as raised:
            load_dataset(cfg(top), seed=0)
        message = str(raised.value)
        assert message.endswith(f"holds the images, in {classes}; set data.root to {below}")
        assert "cats-vs-dogs-subset" not in message
        # The advice, followed, loads.
        assert load_dataset(cfg(below), seed=0).num_classes == int(classes[0])


def test_a_flat_folder_of_class_named_files_takes_its_classes_from_the_names(
    tmp_path, mnist_arrays, capsys
):
    # Kaggle's Dogs vs. Cats train/: cat.0.jpg ... dog.12.jpg, no class folders.
    flat = write_named_files(tmp_path / "train", mnist_arrays, 10)
    (flat / ".DS_Store").write_bytes(b"junk")  # ignored, as everywhere
    data = load_dataset(cfg(flat, validation_split=0.2), seed=0)
    assert data.class_names == ["cat", "dog"]
    assert (len(data.x_train), len(data.x_val)) == (16, 4)
    assert data.source == (
        f"image folders: train <- {flat} (classes from the file names: <class>.<id>.<ext>), "
        "validation <- 20% of train"
    )
    for split in ("train", "val"):
        names = data.origins[split]
        labels = data.split(split)[1]
        assert [n.split(".")[0] for n in names] == [data.class_names[c] for c in labels]
    err = capsys.readouterr().err
    assert f"note: {flat}: no class folders, and every file is named <class>.<id>.<ext>" in err
    assert "the 2 classes (cat, dog) are the names' first parts" in err


def test_split_folders_whose_train_folder_is_flat(tmp_path, mnist_arrays):
    root = tmp_path / "kaggle"
    write_named_files(root / "train", mnist_arrays, 8)
    write_named_files(root / "test", mnist_arrays, 3, offset=8)
    data = load_dataset(cfg(root, validation_split=0.25), seed=0)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (12, 4, 6)
    assert data.origins["test"][0].startswith("test/cat.")
    assert f"test <- {root / 'test'}" in data.source
    # Every split follows the train folder's layout and classes.
    for name in sorted((root / "test").iterdir()):
        if name.name.startswith("dog."):
            name.unlink()
    with pytest.raises(DataError) as raised:
        load_dataset(cfg(root), seed=0)
    assert str(raised.value) == (
        f"{root / 'test'}: has no file of class 'dog'; every split needs the same class names"
    )
    write_class_folders(root / "test", mnist_arrays, 2)
    with pytest.raises(DataError, match="not all of this folder's are; every split needs"):
        load_dataset(cfg(root), seed=0)


def test_kaggles_own_folder_with_an_unlabelled_test_folder_says_what_to_train_on(
    tmp_path, mnist_arrays
):
    root = tmp_path / "dogs-vs-cats"
    write_named_files(root / "train", mnist_arrays, 4)
    (root / "test1").mkdir()
    Image.new("RGB", (8, 8)).save(root / "test1" / "1.jpg")
    with pytest.raises(DataError) as raised:
        load_dataset(cfg(root), seed=0)
    assert str(raised.value).endswith(
        f"(train/ names its files <class>.<id>.<ext>: train on it alone (`cnnlab train "
        f"{root / 'train'}`, or data.root: {root / 'train'}), then predict test1/ with "
        f"`cnnlab predict RUN_DIR {root / 'test1'}`)"
    )
    (root / "test1").rename(root / "test")  # a split folder's name, its files unlabelled
    with pytest.raises(DataError, match=f"train on {root / 'train'} alone, then predict"):
        load_dataset(cfg(root), seed=0)


def test_the_kaggle_hint_only_where_the_names_do_not_all_follow_the_rule(tmp_path, mnist_arrays):
    flat = write_named_files(tmp_path / "train", mnist_arrays, 3)
    (flat / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as raised:
        load_dataset(cfg(flat), seed=0)
    message = str(raised.value)
    assert message.startswith(f"{flat}: no class folders; a classifier needs two or more")
    assert "but notes.txt is not named <class>.<id>.<ext>: move it out, or " in message
    assert f"`cnnlab data cats-vs-dogs-subset {flat} NEW_FOLDER`" in message
    # Moved out, the names give the classes.
    (flat / "notes.txt").unlink()
    assert load_dataset(cfg(flat), seed=0).class_names == ["cat", "dog"]
    # One class only follows the rule but is no classifier: no advice to sort it.
    one = tmp_path / "cats"
    one.mkdir()
    for i in range(3):
        digit_photo(mnist_arrays["x_train"][i], 0, 24).save(one / f"cat.{i}.jpg")
    with pytest.raises(DataError) as raised:
        load_dataset(cfg(one), seed=0)
    assert str(raised.value).startswith(
        f"{one}: every file is named <class>.<id>.<ext>, all of class 'cat'; a classifier "
        "needs two or more classes"
    )
    assert "cats-vs-dogs-subset" not in str(raised.value)


def test_train_and_check_take_a_flat_folder_of_class_named_files(
    tmp_path, mnist_arrays, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no pretrained weights at hand
    flat = write_named_files(tmp_path / "train", mnist_arrays, 12)
    check = invoke("check", flat)
    assert check.exit_code == 0, check.output
    assert f"{flat}: 24 photos named <class>.<id>.<ext> in 2 classes (cat, dog)" in check.output
    assert f"train <- {flat} (classes from the file names" in check.output
    out = tmp_path / "out"
    result = invoke(
        "train", flat, "--set", "train.epochs=1", "--set", "train.verbose=0",
        "--set", f"output_dir={out}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run_dir = only_run(out)
    assert json.loads((run_dir / "classes.json").read_text()) == ["cat", "dog"]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 1


def test_images_too_small_for_the_builder_name_the_loader_s_setting(tmp_path, mnist_arrays, cli):
    import shlex

    root = write_class_folders(tmp_path / "tiny", mnist_arrays, 4, size=16)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [16, 16]}}\n"
        "model: {builder: convnet}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    result = cli("check", config)
    assert result.exit_code != 0
    (error,) = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert "data.resize" not in error
    side = int(error.split("set data.image_size to at least [")[1].split(",")[0])
    assert 16 < side <= 256
    fixed = cli("check", config, "--set", f"data.image_size=[{side},{side}]")
    assert fixed.exit_code == 0, fixed.output
    assert shlex.split(fixed.output.split("`")[1])[-1] == f"data.image_size=[{side},{side}]"
