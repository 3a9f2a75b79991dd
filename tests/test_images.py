"""Colour-image loaders: class folders of image files (with every kind of bad file) and CIFAR."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.config.data import Cifar10Data, Cifar100Data, ImageFormat, MnistData
from cnnlab.config.images import ImageDirData
from cnnlab.data import BadFilesError, describe_problems, load_dataset
from cnnlab.data.cifar import read_cifar
from cnnlab.data.images import read_image
from cnnlab.utils.errors import DataError

from .images import (
    banded_photo,
    cifar_batch,
    cifar_images,
    write_cifar10,
    write_cifar100,
    write_class_folders,
    write_split_folders,
)


def image_dir_cfg(root: Path, **kwargs) -> ImageDirData:
    return ImageDirData(loader="image_dir", root=str(root), image_size=(24, 24), **kwargs)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_split_layout_reads_every_split(tmp_path, mnist_arrays):
    root = write_split_folders(tmp_path / "cd", mnist_arrays, counts=(6, 3, 4))
    data = load_dataset(image_dir_cfg(root), seed=0)
    assert data.class_names == ["cats", "dogs"]
    assert data.x_train.shape == (12, 24, 24, 3) and data.x_train.dtype == np.uint8
    assert (len(data.x_val), len(data.x_test)) == (6, 8)
    assert np.bincount(data.y_test).tolist() == [4, 4]
    # Class 0 is tinted red, class 1 blue: the labels follow the folders.
    red_minus_blue = data.x_train[..., 0].mean(axis=(1, 2)) - data.x_train[..., 2].mean(axis=(1, 2))
    assert (red_minus_blue[data.y_train == 0] > 0).all()
    assert (red_minus_blue[data.y_train == 1] < 0).all()


def test_one_folder_is_split_by_seed(tmp_path, mnist_arrays):
    root = write_class_folders(tmp_path / "flat", mnist_arrays, 10, classes=("a", "b", "c"))
    cfg = image_dir_cfg(root, validation_split=0.2, test_split=0.3)
    first, again = load_dataset(cfg, seed=3), load_dataset(cfg, seed=3)
    assert (len(first.x_train), len(first.x_val), len(first.x_test)) == (16, 5, 9)
    np.testing.assert_array_equal(first.x_val, again.x_val)
    other = load_dataset(cfg, seed=4)
    assert not np.array_equal(first.y_test, other.y_test) or not np.array_equal(
        first.x_test, other.x_test
    )


def add_bad_files(root: Path) -> set[str]:
    """One file of each unusable kind; returns their paths."""
    cats = root / "train" / "cats"
    good = next(cats.glob("*.jpg")).read_bytes()
    bad = {
        cats / "empty.jpg": b"",
        cats / "truncated.jpg": good[: len(good) // 2],
        cats / "notes.jpg": b"this is not a picture\n",
        cats / "readme.txt": b"cats\n",
        root / "stray.jpg": good,
    }
    for path, raw in bad.items():
        path.write_bytes(raw)
    return {str(p) for p in bad}


def test_every_bad_file_kind_is_listed_and_stops_by_default(tmp_path, mnist_arrays):
    root = write_split_folders(tmp_path / "cd", mnist_arrays, counts=(6, 2, 2))
    bad = add_bad_files(root)
    before = snapshot(root)
    with pytest.raises(BadFilesError) as info:
        load_dataset(image_dir_cfg(root), seed=0)
    assert {path for path, _ in info.value.problems} == bad
    kinds = {reason.split(" (")[0] for _, reason in info.value.problems}
    assert kinds == {
        "empty file",
        "damaged image",
        "not an image",
        "unsupported extension",
        "not in a class folder",
    }
    message = str(info.value)
    assert message.startswith(f"{root}: 5 unusable files (") and "on_bad_file: skip" in message
    assert "\n" not in message
    assert snapshot(root) == before  # nothing deleted, moved or changed


def test_skip_trains_without_the_bad_files(tmp_path, mnist_arrays):
    root = write_split_folders(tmp_path / "cd", mnist_arrays, counts=(6, 2, 2))
    bad = add_bad_files(root)
    before = snapshot(root)
    data = load_dataset(image_dir_cfg(root, on_bad_file="skip"), seed=0)
    assert len(data.x_train) == 12  # the 12 good ones, none of the bad
    assert {path for path, _ in data.problems} == bad
    assert describe_problems(data.problems).startswith("5 unusable files")
    assert snapshot(root) == before


def test_empty_class_folder_is_an_error_naming_it(tmp_path, mnist_arrays):
    root = write_split_folders(tmp_path / "cd", mnist_arrays, counts=(4, 2, 2))
    (root / "validation" / "birds").mkdir()
    (root / "train" / "birds").mkdir()
    (root / "test" / "birds").mkdir()
    with pytest.raises(DataError, match=f"{root / 'train' / 'birds'}: empty class folder"):
        load_dataset(image_dir_cfg(root), seed=0)


def test_one_class_folder_is_not_a_classification_task(tmp_path, mnist_arrays):
    root = write_class_folders(tmp_path / "one", mnist_arrays, 4, classes=("cats",))
    with pytest.raises(DataError, match="only the class folder 'cats'; a classifier needs two"):
        load_dataset(image_dir_cfg(root), seed=0)
    # Its files are named cats.N.jpg: the class of every one of them is cats.
    with pytest.raises(DataError, match="all of class 'cats'; a classifier needs two or more"):
        load_dataset(image_dir_cfg(root / "cats"), seed=0)


def test_splits_need_the_same_classes(tmp_path, mnist_arrays):
    root = write_split_folders(tmp_path / "cd", mnist_arrays, counts=(4, 2, 2))
    shutil.rmtree(root / "test" / "dogs")
    with pytest.raises(DataError, match="has no folder for class 'dogs'"):
        load_dataset(image_dir_cfg(root), seed=0)


def test_colour_modes_are_converted(tmp_path):
    root = tmp_path / "modes"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    red = Image.new("RGB", (30, 20), (255, 0, 0))
    red.convert("CMYK").save(root / "a" / "cmyk.jpg", quality=100)
    red.convert("RGBA").save(root / "a" / "rgba.png")
    red.convert("P").save(root / "a" / "palette.gif")
    red.save(root / "a" / "rgb.bmp")
    red.save(root / "a" / "lossless.webp", lossless=True)
    red.save(root / "a" / "scan.TIFF")
    Image.new("L", (20, 30), 76).save(root / "b" / "gray.png")  # 76 = the luma of pure red
    Image.new("I;16", (20, 30), 5000).save(root / "b" / "gray16.png")
    rgb = load_dataset(image_dir_cfg(root, validation_split=0.2), seed=0)
    everything = np.concatenate([rgb.x_train, rgb.x_val])
    labels = np.concatenate([rgb.y_train, rgb.y_val])
    assert everything.shape == (8, 24, 24, 3)
    reds = everything[labels == 0].reshape(-1, 3)
    assert (reds[:, 0] > 240).all() and (reds[:, 1:] < 15).all()
    gray = load_dataset(image_dir_cfg(root, validation_split=0.2, color_mode="grayscale"), seed=0)
    assert gray.x_train.shape[1:] == (24, 24, 1)
    rgba = load_dataset(image_dir_cfg(root, validation_split=0.2, color_mode="rgba"), seed=0)
    assert rgba.x_train.shape[1:] == (24, 24, 4)


@pytest.mark.parametrize("name", ["ramp.png", "ramp.tif"])  # Pillow modes I;16 and I
def test_sixteen_bit_grayscale_is_scaled_to_eight_bits(tmp_path, name):
    ramp = (np.arange(24 * 24).reshape(24, 24) * 113).astype(np.uint16)  # 0 to 65,088
    stored = ramp if name.endswith(".png") else ramp.astype(np.int32)
    Image.fromarray(stored).save(tmp_path / name)
    with Image.open(tmp_path / name) as img:
        assert img.mode == ("I;16" if name.endswith(".png") else "I")
    gray = read_image(tmp_path / name, ImageFormat(24, 24, "grayscale"))
    assert (gray[..., 0] == ramp >> 8).all()
    rgb = read_image(tmp_path / name, ImageFormat(24, 24, "rgb"))
    assert (rgb == (ramp >> 8)[..., None]).all()


RED, GREEN, BLUE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0)


def wide(path: Path, mode: str, size: int = 64) -> np.ndarray:
    return read_image(path, ImageFormat(size, size, "rgb", resize_mode=mode)).astype(int)


def test_resize_mode_squashes_crops_or_pads_a_wide_photo(tmp_path):
    path = tmp_path / "wide.png"
    banded_photo(200, 100).save(path)
    # squash: stretched to the square, the bands keep their share of the width.
    squash = wide(path, "squash")
    assert (squash[:, 2:14] == RED).all() and (squash[:, 18:46] == GREEN).all()
    assert (squash[:, 50:62] == BLUE).all()
    # crop: the centre 100x100 fills the square, the side bands are cut off.
    assert (wide(path, "crop") == GREEN).all()
    # pad: 200x200 with black above and below (rows 0-49 and 150-199), then resized.
    pad = wide(path, "pad")
    assert (pad[:14] == BLACK).all() and (pad[51:] == BLACK).all()
    assert (pad[18:46, 2:14] == RED).all() and (pad[18:46, 18:46] == GREEN).all()
    assert (pad[18:46, 50:62] == BLUE).all()
    # A tall photo is padded at its sides and cropped to its middle rows.
    tall = tmp_path / "tall.png"
    banded_photo(200, 100).transpose(Image.Transpose.ROTATE_90).save(tall)
    assert (wide(tall, "pad")[:, :14] == BLACK).all()
    assert (wide(tall, "crop") == GREEN).all()


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_crop_and_pad_apply_to_the_photo_made_upright(tmp_path, suffix):
    # Stored tall, with the EXIF tag (6) that turns it clockwise into the wide banded photo.
    stored = banded_photo(200, 100).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"phone{suffix}"
    stored.save(path, exif=exif, **({"quality": 95} if suffix == ".jpg" else {}))
    crop = wide(path, "crop")
    assert np.abs(crop[:, 2:-2] - GREEN).max() < 20  # (JPEG blurs colour across band edges)
    pad = wide(path, "pad")
    assert pad[:14].max() < 20 and pad[51:].max() < 20  # black above and below
    assert np.abs(pad[18:46, 18:46] - GREEN).max() < 20
    # Upright again: red on the left, blue on the right.
    assert np.abs(pad[18:46, 2:14] - RED).max() < 20
    assert np.abs(pad[18:46, 50:62] - BLUE).max() < 20


@pytest.mark.parametrize("turned", [False, True])
@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_jpeg_draft_keeps_the_pixels_the_region_needs(tmp_path, monkeypatch, mode, turned):
    # Pillow's draft decodes a JPEG at 1/2, 1/4 or 1/8 scale, never smaller than asked.
    from PIL import JpegImagePlugin

    drafted = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, *args):
        found = draft(self, *args)
        drafted.append(self.size)
        return found

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    photo, exif = banded_photo(512, 128), Image.Exif()
    if turned:  # stored tall, with the tag that turns it upright
        photo, exif[0x0112] = photo.transpose(Image.Transpose.ROTATE_90), 6
    photo.save(tmp_path / "wide.jpg", exif=exif, quality=95)
    wide(tmp_path / "wide.jpg", mode)
    (size,) = drafted
    upright = size[::-1] if turned else size
    # crop: the centre 128 x 128 at half scale is 64 x 64, all the image needs. pad: the whole
    # 512 x 128 at an eighth is 64 x 16, the photo's part of the padded 64 x 64.
    assert upright == {"crop": (256, 64), "pad": (64, 16)}[mode]


def test_image_dir_run_writes_the_bad_file_list(tmp_path, mnist_arrays, cli):
    root = write_split_folders(tmp_path / "cd", mnist_arrays, counts=(8, 4, 4))
    add_bad_files(root)
    config = tmp_path / "cd.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [32, 32]}}\n"
        "model: {builder: small_cnn, filters: [8, 16]}\n"
        f"train: {{epochs: 1, batch_size: 8, verbose: 0}}\noutput_dir: {tmp_path / 'out'}\n"
    )
    stopped = cli("train", config)
    assert stopped.exit_code == 1
    error = stopped.output.splitlines()[-1]  # after the run's progress lines: one error line
    assert error.startswith(f"error: {root}: 5 unusable files") and "bad_files.csv" in error
    (failed,) = (tmp_path / "out").iterdir()
    assert len((failed / "bad_files.csv").read_text().splitlines()) == 6  # header + 5
    skipped = cli("train", config, "--set", "data.on_bad_file=skip")
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 5 unusable files" in skipped.output
    (run_dir,) = [p for p in (tmp_path / "out").iterdir() if p != failed]
    assert (run_dir / "bad_files.csv").is_file() and (run_dir / "model.keras").is_file()


# ---------------------------------------------------------------------------------------------
# CIFAR


def test_cifar10_archive_and_folder_read_the_same(tmp_path, mnist_arrays):
    archive = write_cifar10(tmp_path / "cifar-10-python.tar.gz", mnist_arrays, per_batch=8)
    folder = write_cifar10(tmp_path / "extracted", mnist_arrays, per_batch=8, extract=True)
    (x, y), (xt, yt), names = read_cifar(archive)
    (x2, y2), (xt2, yt2), names2 = read_cifar(folder)
    assert x.shape == (40, 32, 32, 3) and x.dtype == np.uint8 and xt.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(yt, yt2)
    assert names == names2 and names[:3] == ["airplane", "automobile", "bird"]
    # Channels and orientation come back as they were written.
    expected, labels = cifar_images(mnist_arrays, 0, 8)
    np.testing.assert_array_equal(x[:8], expected)
    assert y[:8].tolist() == labels


def test_cifar_loader_splits_validation_and_adapts(tmp_path, mnist_arrays):
    archive = write_cifar10(tmp_path / "c.tar.gz", mnist_arrays, per_batch=10)
    cfg = Cifar10Data(loader="cifar10", path=str(archive), validation_split=0.2, resize=(40, 40))
    data = load_dataset(cfg, seed=0)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (40, 10, 10)
    assert data.input_shape == (40, 40, 3) and len(data.class_names) == 10


def test_cifar100_fine_and_coarse_labels(tmp_path, mnist_arrays):
    archive = write_cifar100(tmp_path / "cifar-100-python.tar.gz", mnist_arrays, n=30)
    fine = load_dataset(Cifar100Data(loader="cifar100", path=str(archive)), seed=0)
    coarse = load_dataset(
        Cifar100Data(loader="cifar100", path=str(archive), label_mode="coarse"), seed=0
    )
    assert len(fine.class_names) == 100 and len(coarse.class_names) == 20
    assert set(fine.y_test.tolist()) <= {1, 31, 61} and set(coarse.y_test.tolist()) <= {0, 1, 2}


class _Exploit:
    def __reduce__(self):
        return (os.mkdir, ("/tmp/cnnlab-pwned-by-pickle",))


def test_cifar_refuses_pickles_with_other_objects(tmp_path, mnist_arrays):
    folder = write_cifar10(tmp_path, mnist_arrays, per_batch=4, extract=True)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": [0]}))
    shutil.rmtree("/tmp/cnnlab-pwned-by-pickle", ignore_errors=True)
    with pytest.raises(DataError, match="data_batch_3: not a CIFAR batch .*refusing to load"):
        read_cifar(folder)
    assert not Path("/tmp/cnnlab-pwned-by-pickle").exists()


def test_cifar_wrong_arrays_are_named(tmp_path, mnist_arrays):
    folder = write_cifar10(tmp_path, mnist_arrays, per_batch=4, extract=True)
    x, labels = cifar_images(mnist_arrays, 0, 4)
    (folder / "test_batch").write_bytes(cifar_batch(x[:, :16], labels))
    with pytest.raises(DataError, match="test_batch: 'data' must be uint8 rows of 3072 pixels"):
        read_cifar(folder)


def test_to_rgb_and_resize_adapt_mnist(tmp_path):
    cfg = MnistData(loader="mnist", max_samples=200, resize=(32, 32), to_rgb=True)
    data = load_dataset(cfg, seed=0)
    assert data.input_shape == (32, 32, 3) and cfg.input_shape == (32, 32, 3)
    np.testing.assert_array_equal(data.x_train[..., 0], data.x_train[..., 2])


# ---------------------------------------------------------------------------------------------
# cnnlab data cats-vs-dogs-subset


def kaggle_cats_dogs(root: Path, n: int) -> Path:
    root.mkdir()
    for kind, colour in (("cat", (200, 60, 60)), ("dog", (60, 60, 200))):
        for i in range(n):
            Image.new("RGB", (8, 6), colour).save(root / f"{kind}.{i}.jpg")
    (root / "Thumbs.db").write_bytes(b"\x00")
    return root


def test_cats_vs_dogs_subset_copies_a_seeded_split(tmp_path, cli):
    source = kaggle_cats_dogs(tmp_path / "train", 12)
    before = snapshot(source)
    result = cli(
        "data", "cats-vs-dogs-subset", source, tmp_path / "small",
        "--train", 4, "--val", 2, "--test", 3, "--seed", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "copied 18 images" in result.output
    small = tmp_path / "small"
    for split, n in (("train", 4), ("validation", 2), ("test", 3)):
        assert len(list((small / split / "cats").glob("cat.*.jpg"))) == n
        assert len(list((small / split / "dogs").glob("dog.*.jpg"))) == n
    names = sorted(p.name for p in small.rglob("*.jpg"))
    assert len(set(names)) == 18  # no image in two splits
    assert snapshot(source) == before  # copied, not moved
    again = cli(
        "data", "cats-vs-dogs-subset", source, tmp_path / "again",
        "--train", 4, "--val", 2, "--test", 3, "--seed", 1,
    )  # fmt: skip
    assert again.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "again").rglob("*.jpg")) == names
    refused = cli("data", "cats-vs-dogs-subset", source, small)
    assert refused.exit_code == 1 and "not an empty folder" in refused.output
    too_few = cli("data", "cats-vs-dogs-subset", source, tmp_path / "big", "--train", 20)
    assert too_few.exit_code == 1 and "12 cat.N.jpg images" in too_few.output
    assert not (tmp_path / "big").exists()


def test_predict_csv_adapts_the_csv_like_the_training_data(tmp_path, kaggle_dir, cli, quick):
    from .helpers import CONFIGS

    out = tmp_path / "out"
    trained = cli(
        "train", CONFIGS / "mnist_kaggle_deep_cnn.yaml", *quick(out, samples=200, epochs=1),
        "--set", f"data.train={kaggle_dir / 'train.csv'}", "--set", "data.test=null",
        "--set", "data.resize=[32, 32]", "--set", "data.to_rgb=true",
        "--set", "model={builder: mlp, units: [8]}",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    (run_dir,) = out.iterdir()
    from cnnlab.runs import load_run_model

    assert load_run_model(run_dir).input_shape == (None, 32, 32, 3)
    result = cli("predict-csv", run_dir, kaggle_dir / "test.csv")
    assert result.exit_code == 0, result.output
    submission = (run_dir / "submission.csv").read_text().splitlines()
    assert submission[0] == "ImageId,Label" and len(submission) == 51
    scored = cli("evaluate", run_dir, "--csv", kaggle_dir / "test_labelled.csv")
    assert scored.exit_code == 0, scored.output
