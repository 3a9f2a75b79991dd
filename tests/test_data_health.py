"""Data health: copies across splits (leakage) found through re-encoding, resizing, cropping and
brightening, conflicting labels, digits that are alike without being copies, and what train and
check do with them."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from cnnlab.data.health import close_pairs, fingerprints

from .helpers import MNIST_NPZ, invoke, invoke_ok, only_run


def test_the_perceptual_hash_is_imagehash_phash():
    import imagehash

    x = np.random.default_rng(1).integers(0, 255, (20, 40, 36, 3), dtype=np.uint8)
    ours = fingerprints(x)["phash_1.0"]
    for image, value in zip(x, ours, strict=True):
        assert int(str(imagehash.phash(Image.fromarray(image))), 16) == int(value)


def test_the_centres_are_hashed_as_imagehash_hashes_pillows_crops():
    import imagehash

    from cnnlab.data.health import SCALES

    rng = np.random.default_rng(2)
    for size in (48, 120):  # the centres enlarged to 32x32, and reduced
        pictures = [photo(rng, size) for _ in range(10)]
        ours = fingerprints(np.stack([np.asarray(p) for p in pictures]))
        for scale in SCALES:
            side = round(size * (1 - scale) / 2)
            for picture, value in zip(pictures, ours[f"phash_{scale}"], strict=True):
                centre = picture.crop((side, side, size - side, size - side))
                # Square: Pillow resamples horizontally first, as fingerprints does.
                assert int(str(imagehash.phash(centre)), 16) == int(value)


def test_handwritten_digits_alike_are_not_copies():
    with np.load(MNIST_NPZ) as z:
        x = z["x_train"][:3000, ..., None]
    pairs = close_pairs(fingerprints(x))
    # Hundreds of ones among them, and at most a handful of pairs called copies.
    assert len(pairs) <= 10


def photo(rng: np.random.Generator, size: int = 64) -> Image.Image:
    """A random smooth colour picture: blobs of colour, as photos have, not noise."""
    small = rng.integers(30, 200, (6, 6, 3), dtype=np.uint8)  # room to brighten
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def altered(image: Image.Image, kind: int) -> Image.Image:
    if kind == 0:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=60)
        return Image.open(out).convert("RGB")
    if kind == 1:
        return image.resize((48, 48))
    if kind == 2:
        return image.crop((2, 2, 62, 62))
    return ImageEnhance.Brightness(image).enhance(1.25)


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """train/ and test/ class folders; test holds 8 altered copies of train photos, the last
    (a cat's) filed as a dog."""
    root = tmp_path_factory.mktemp("leaky") / "photos"
    rng = np.random.default_rng(7)
    originals = {}
    for split, count in (("train", 24), ("test", 8)):
        for cls in ("cats", "dogs"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                picture = photo(rng)
                picture.save(folder / f"{cls}{i}.png")
                originals[(split, cls, i)] = picture
    for n in range(8):
        cls = "cats" if n % 2 else "dogs"
        into = cls if n != 7 else "dogs"
        copy = altered(originals[("train", cls, n)], n % 4)
        copy.save(root / "test" / into / f"copy{n}.jpg", quality=95)
    return root


def test_copies_across_splits_are_found_and_named(leaky, tmp_path):
    config = tmp_path / "leaky.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {leaky}, image_size: [64, 64]}}\n"
        "model: {builder: small_cnn, filters: [8]}\n"
        "train: {epochs: 1, batch_size: 8, verbose: 0}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    result = invoke_ok("train", config)
    assert "data health: leak:" in result.output
    run = only_run(tmp_path / "out")
    health = json.loads((run / "data_health.json").read_text())
    leaked = [e for key, found in health["leaks"].items() if key.endswith("test")
              for e in found["listed"]]  # fmt: skip
    copies = sorted(e["b"] for e in leaked)
    assert copies == sorted(f"test/{'cats' if n % 2 and n != 7 else 'dogs'}/copy{n}.jpg"
                            for n in range(8))  # fmt: skip
    assert health["conflicting_label_pairs"] == 1
    (conflict,) = health["conflicting_labels"]
    assert conflict["b"] == "test/dogs/copy7.jpg" and conflict["labels"] == ["cats", "dogs"]
    assert health["classes"]["test"] == {"cats": 11, "dogs": 13}
    assert (run / "leaks.png").is_file() and "Data health" in (run / "report.html").read_text()

    stopped = invoke("train", config, "--set", "data.on_leak=error")
    assert stopped.exit_code != 0 and "copy images of another split" in stopped.output
    from cnnlab.config import load_config
    from cnnlab.data import load_dataset
    from cnnlab.data.health import check_health, drop_leaked

    cfg = load_config(config)
    data = load_dataset(cfg.data, cfg.seed)
    assert drop_leaked(data, check_health(data)) == 8 and len(data.x_test) == 16
    assert not any("copy" in str(name) for name in data.origins["test"])
    checked = invoke_ok("check", config)
    said = [line for line in checked.output.splitlines() if "data health: leak:" in line]
    assert said and sum(int(line.split("leak: ")[1].split()[0]) for line in said) == 8


def test_sizes_aspect_ratios_and_modes_as_stored(tmp_path):
    from cnnlab.config import load_config
    from cnnlab.data import load_dataset
    from cnnlab.data.health import check_health

    root = tmp_path / "photos"
    rng = np.random.default_rng(3)
    for split in ("train", "test"):
        for cls in ("cats", "dogs"):
            (root / split / cls).mkdir(parents=True)
    # train/cats: six 80x60 RGB JPEGs, a grayscale PNG, a palette PNG, a 10x10 RGBA PNG and a
    # JPEG stored 90x40 with the EXIF tag of a photo turned a quarter (upright 40x90).
    for i in range(6):
        photo(rng, 64).resize((80, 60)).save(root / "train/cats" / f"c{i}.jpg")
    photo(rng, 64).convert("L").save(root / "train/cats/gray.png")
    photo(rng, 64).convert("P").save(root / "train/cats/palette.png")
    photo(rng, 10).convert("RGBA").save(root / "train/cats/tiny.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(rng, 64).resize((90, 40)).save(root / "train/cats/turned.jpg", exif=exif)
    for split, count in (("train", 10), ("test", 4)):
        for i in range(count):
            photo(rng, 64).save(root / split / "dogs" / f"d{i}.png")
    for i in range(4):
        photo(rng, 64).save(root / "test/cats" / f"t{i}.png")
    config = tmp_path / "sizes.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [64, 64], validation_split: 0.2}}\n"
        "model: {builder: small_cnn, filters: [8]}\n"
    )
    cfg = load_config(config)
    data = load_dataset(cfg.data, cfg.seed)
    images = check_health(data)["images"]
    assert set(images) == {"train", "val", "test"}
    assert images["test"] == {
        "stored": "files", "count": 8, "used_at": [64, 64],
        "width": {"min": 64, "median": 64, "max": 64},
        "height": {"min": 64, "median": 64, "max": 64},
        "aspect": {"min": 1.0, "median": 1.0, "max": 1.0},
        "modes": {"RGB": 8}, "under_half_size": 0,
    }  # fmt: skip
    # train and val together hold every file of train/, each once, as stored.
    both = [images["train"], images["val"]]
    assert sum(found["count"] for found in both) == 20
    modes: dict[str, int] = {}
    for found in both:
        for mode, count in found["modes"].items():
            modes[mode] = modes.get(mode, 0) + count
    assert modes == {"RGB": 17, "L": 1, "P": 1, "RGBA": 1}
    assert sum(found["under_half_size"] for found in both) == 1  # the 10x10 one
    assert min(found["width"]["min"] for found in both) == 10
    assert max(found["height"]["max"] for found in both) == 90  # the turned photo, upright
    assert max(found["aspect"]["max"] for found in both) == round(80 / 60, 2)
    assert min(found["aspect"]["min"] for found in both) == round(40 / 90, 2)
    said = invoke_ok("check", config).output
    line = next(line for line in said.splitlines() if "data health: images:" in line)
    assert "test 8 files of 64x64 RGB 8" in line and "under half of 64x64" in line


def test_arrays_are_summarised_as_stored():
    from cnnlab.data.dataset import Dataset
    from cnnlab.data.health import describe_sizes, image_sizes

    x = np.zeros((5, 28, 28, 1), np.uint8)
    data = Dataset(x, np.zeros(5, int), x[:2], np.zeros(2, int), None, None, ["a", "b"])
    found = image_sizes(data, "train")
    assert found["stored"] == "arrays" and found["modes"] == {"L": 5}
    assert found["width"] == {"min": 28, "median": 28, "max": 28} and found["under_half_size"] == 0
    assert describe_sizes({"train": found}) == "images: train 5 arrays of 28x28 L 5"
