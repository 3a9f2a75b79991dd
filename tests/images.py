"""Tiny real-format image data for tests: class folders of image files and CIFAR archives.

The images are MNIST digits (so a few epochs learn them), coloured per class and saved with
Pillow in the formats and modes real photo folders hold.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

TINTS = np.array([[1.0, 0.3, 0.3], [0.3, 0.5, 1.0], [0.4, 1.0, 0.4]])


def digit_photo(digit: np.ndarray, cls: int, size: int) -> Image.Image:
    """An MNIST digit as a tinted RGB picture of size x size."""
    rgb = (digit[..., None] * TINTS[cls % len(TINTS)]).astype(np.uint8)
    return Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)


def banded_photo(width: int = 200, height: int = 100) -> Image.Image:
    """A photo in three upright bands: red on the left quarter, green in the centre half, blue on
    the right quarter (at 2:1, the centre square is all green)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 4, 0] = 255
    pixels[:, width // 4 : width - width // 4, 1] = 255
    pixels[:, width - width // 4 :, 2] = 255
    return Image.fromarray(pixels)


def write_class_folders(
    root: Path,
    mnist: dict,
    per_class: int,
    classes: tuple[str, ...] = ("cats", "dogs"),
    size: int = 40,
    offset: int = 0,
) -> Path:
    """root/<class>/<class>.<i>.jpg|png: digit `cls` (0, 1, ...) for class index `cls`."""
    for cls, name in enumerate(classes):
        _write_digits(root / name, mnist, cls, name, per_class, size, offset)
    return root


def write_named_files(
    folder: Path,
    mnist: dict,
    per_class: int,
    classes: tuple[str, ...] = ("cat", "dog"),
    size: int = 40,
    offset: int = 0,
) -> Path:
    """Kaggle's flat Dogs vs. Cats layout: folder/<class>.<i>.jpg|png, digit `cls` for class
    index `cls`, no class folders."""
    for cls, name in enumerate(classes):
        _write_digits(folder, mnist, cls, name, per_class, size, offset)
    return folder


def _write_digits(
    folder: Path, mnist: dict, cls: int, name: str, count: int, size: int, offset: int
) -> None:
    """`count` photos of digit `cls` as folder/<name>.<i>.jpg and .png in turn."""
    x, y = mnist["x_train"], mnist["y_train"]
    folder.mkdir(parents=True, exist_ok=True)
    picks = np.flatnonzero(y == cls)[offset : offset + count]
    for i, index in enumerate(picks):
        image = digit_photo(x[index], cls, size)
        if i % 2:
            image.save(folder / f"{name}.{index}.png")
        else:
            image.save(folder / f"{name}.{index}.jpg", quality=95)


def write_split_folders(root: Path, mnist: dict, counts=(24, 8, 8), **kwargs) -> Path:
    """Chollet's layout: root/{train,validation,test}/<class>/..."""
    offset = 0
    for split, n in zip(("train", "validation", "test"), counts, strict=True):
        write_class_folders(root / split, mnist, n, offset=offset, **kwargs)
        offset += n
    return root


def cifar_batch(x: np.ndarray, labels: list[int], label_key: bytes = b"labels") -> bytes:
    """One batch pickled as the official files are: bytes keys, (N, 3072) uint8 rows."""
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
    return pickle.dumps(
        {b"batch_label": b"test", label_key: labels, b"data": rows, b"filenames": [b"a.png"]},
        protocol=2,
    )


def cifar_images(mnist: dict, start: int, n: int) -> tuple[np.ndarray, list[int]]:
    """n 32x32x3 images (tinted, padded digits 0-2) and their labels."""
    x, y = mnist["x_train"], mnist["y_train"]
    picks = np.flatnonzero(y < 3)[start : start + n]
    images = np.stack([np.asarray(digit_photo(x[i], int(y[i]), 32)) for i in picks])
    return images, [int(v) for v in y[picks]]


def write_cifar10(path: Path, mnist: dict, per_batch: int = 20, extract: bool = False) -> Path:
    """A cifar-10-python.tar.gz (or its extracted folder) with 5 train batches and a test batch."""
    members: dict[str, bytes] = {}
    for i in range(5):
        members[f"data_batch_{i + 1}"] = cifar_batch(*cifar_images(mnist, i * per_batch, per_batch))
    members["test_batch"] = cifar_batch(*cifar_images(mnist, 5 * per_batch, per_batch))
    names = [b"airplane", b"automobile", b"bird"] + [f"class{i}".encode() for i in range(3, 10)]
    members["batches.meta"] = pickle.dumps({b"label_names": names}, protocol=2)
    return _write_members(path, "cifar-10-batches-py", members, extract)


def write_cifar100(path: Path, mnist: dict, n: int = 60) -> Path:
    """A cifar-100-python.tar.gz with fine and coarse labels."""
    x, labels = cifar_images(mnist, 0, n)
    xt, labels_t = cifar_images(mnist, n, n // 2)

    def batch(x, labels):
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        fine = [v * 30 + 1 for v in labels]  # fine labels 1, 31, 61
        return pickle.dumps(
            {b"data": rows, b"fine_labels": fine, b"coarse_labels": labels}, protocol=2
        )

    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    members = {"train": batch(x, labels), "test": batch(xt, labels_t), "meta": pickle.dumps(meta)}
    return _write_members(path, "cifar-100-python", members, extract=False)


def _write_members(path: Path, folder: str, members: dict[str, bytes], extract: bool) -> Path:
    if extract:
        out = path / folder
        out.mkdir(parents=True)
        for name, raw in members.items():
            (out / name).write_bytes(raw)
        return out
    with tarfile.open(path, "w:gz") as archive:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return path
