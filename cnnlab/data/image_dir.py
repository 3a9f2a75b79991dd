"""Folders of class sub-folders of image files: every file decoded and checked before training.

Two layouts:
    root/train/<class>/*.jpg [root/validation/<class>/...] [root/test/<class>/...]
    root/<class>/*.jpg                       (split by validation_split and test_split)

Files are read with Pillow, converted to the configured colour mode (grayscale, RGBA, CMYK and
palette images alike) and resized. A file that cannot be used is reported, never deleted or
moved; `on_bad_file` decides whether the run stops or goes on without it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cnnlab.config import ImageDirData
from cnnlab.data.dataset import BadFilesError, Dataset, describe_problems, split_validation
from cnnlab.errors import DataError

# The extensions keras.utils.image_dataset_from_directory accepts.
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLITS = ("train", "validation", "test")
_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}


def image_dir(cfg: ImageDirData, seed: int) -> Dataset:
    """Decode every image under `cfg.root` into uint8 arrays, split as the folder says.

    Raises:
        DataError: an empty or missing class folder, or no images at all.
        BadFilesError: unusable files, with on_bad_file: error.
    """
    root = Path(cfg.root)
    listed, classes, problems = scan_folder(root)
    decoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, files in listed.items():
        images, labels, bad = decode_files(files, cfg)
        problems.extend(bad)
        decoded[split] = (images, labels)
    if problems and cfg.on_bad_file == "error":
        raise BadFilesError(
            f"{root}: {describe_problems(problems)}; set data.on_bad_file: skip to train "
            "without them",
            problems,
        )
    for split, (_, labels) in decoded.items():
        counts = np.bincount(labels, minlength=len(classes))
        if not counts.all():
            missing = classes[int(np.flatnonzero(counts == 0)[0])]
            raise DataError(f"{root}: no usable image of class '{missing}' in {split}")
    x, y = decoded["train"]
    x_test = y_test = None
    if "test" in decoded:
        x_test, y_test = decoded["test"]
    elif cfg.test_split:
        x, y, x_test, y_test = split_validation(x, y, cfg.test_split, seed)
    if "validation" in decoded:
        x_val, y_val = decoded["validation"]
    else:
        x, y, x_val, y_val = split_validation(x, y, cfg.validation_split, seed)
    return Dataset(x, y, x_val, y_val, x_test, y_test, classes, problems=problems)


def scan_folder(root: Path) -> tuple[dict[str, list[tuple[Path, int]]], list[str], list]:
    """List the image files of each split with their class index.

    Returns:
        ({split: [(path, label), ...]}, class names, [(path, problem), ...]) where problems are
        files that are not in a class folder or whose name rules them out.
    """
    problems: list[tuple[str, str]] = []
    if (root / "train").is_dir():
        split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
        for entry in sorted(root.iterdir()):
            if entry.is_file():
                problems.append((str(entry), "not in a class folder"))
            elif entry.name not in SPLITS:
                raise DataError(
                    f"{entry}: unexpected folder; {root} has a train/ folder, so its folders "
                    "must be train/, validation/ and test/"
                )
    else:
        split_dirs = {"train": root}
    classes = _class_folders(split_dirs["train"], problems)
    if len(classes) < 2:
        found = f"only the class folder '{classes[0]}'" if classes else "no class folders"
        raise DataError(
            f"{split_dirs['train']}: {found}; a classifier needs two or more, each class's "
            "images in a sub-folder named after it"
        )
    listed: dict[str, list[tuple[Path, int]]] = {}
    for split, folder in split_dirs.items():
        found = classes if split == "train" else _class_folders(folder, problems)
        if found != classes:
            extra = sorted(set(found) - set(classes))
            lacking = sorted(set(classes) - set(found))
            what = (
                f"has no folder for class '{lacking[0]}'"
                if lacking
                else (f"has class folder '{extra[0]}' that train/ does not")
            )
            raise DataError(f"{folder}: {what}; every split needs the same class folders")
        files: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            found_any = False
            for dirpath, dirnames, filenames in os.walk(folder / name, followlinks=True):
                dirnames.sort()
                for filename in sorted(filenames):
                    found_any = True
                    path = Path(dirpath) / filename
                    problem = _name_problem(filename)
                    if problem:
                        problems.append((str(path), problem))
                    else:
                        files.append((path, label))
            if not found_any:
                raise DataError(f"{folder / name}: empty class folder; add images or remove it")
        listed[split] = files
    return listed, classes, problems


def _class_folders(folder: Path, problems: list[tuple[str, str]]) -> list[str]:
    names = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            names.append(entry.name)
        else:
            problems.append((str(entry), "not in a class folder"))
    return names


def _name_problem(filename: str) -> str | None:
    if filename.startswith("._"):
        return "macOS resource fork (._ file)"
    ext = os.path.splitext(filename)[1].lower()
    if ext not in EXTENSIONS:
        return f"unsupported extension ({ext or 'none'}; readable: {' '.join(EXTENSIONS)})"
    return None


def decode_files(
    files: list[tuple[Path, int]], cfg: ImageDirData
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Decode, convert and resize `files` in parallel threads (Pillow decodes without the GIL).

    Returns:
        uint8 images (N, height, width, channels), int32 labels, and the files that failed
        with the reason.
    """
    height, width, channels = cfg.input_shape
    images = np.empty((len(files), height, width, channels), np.uint8)
    ok = np.zeros(len(files), bool)
    problems: list[tuple[str, str]] = []

    def work(i: int) -> None:
        path = files[i][0]
        try:
            pixels = read_image(path, cfg.color_mode, (height, width), cfg.interpolation)
        except _Unusable as e:
            problems.append((str(path), str(e)))
            return
        images[i] = pixels.reshape(height, width, channels)
        ok[i] = True

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(work, range(len(files))))
    labels = np.array([label for _, label in files], np.int32)
    problems.sort()
    return images[ok], labels[ok], problems


class _Unusable(Exception):
    pass


def read_image(
    path: Path, color_mode: str, size: tuple[int, int], interpolation: str = "bilinear"
) -> np.ndarray:
    """One image file as uint8 pixels of `size` (height, width) in `color_mode`.

    Raises:
        _Unusable: with the reason the file cannot be used.
    """
    from PIL import Image, UnidentifiedImageError

    if os.path.getsize(path) == 0:
        raise _Unusable("empty file (0 bytes)")  # reasons: "<kind> (<detail>)"
    height, width = size
    try:
        with Image.open(path) as img:
            mode = _PIL_MODES[color_mode]
            # JPEG can decode straight to a smaller scale: far faster for large photos.
            img.draft(mode, (width, height))
            img.load()  # decodes every byte now: truncated files fail here
            if img.mode != mode:
                img = img.convert(mode)
            if img.size != (width, height):
                img = img.resize((width, height), getattr(Image.Resampling, interpolation.upper()))
            return np.asarray(img, np.uint8)
    except UnidentifiedImageError:
        raise _Unusable("not an image (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _Unusable(f"damaged image ({str(e) or type(e).__name__})") from None
