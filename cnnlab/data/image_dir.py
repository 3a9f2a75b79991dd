"""Folders of class sub-folders of image files: every file decoded and checked before training.

Two layouts:
    root/<split>/<class>/*.jpg   split folders by their usual names (see SPLIT_NAMES); without
                                 a validation folder, validation is split off train
    root/<class>/*.jpg           one folder, split by validation_split and test_split

Nothing is guessed: a class folder that holds folders, or a root that mixes split and class
folders, is an error that says which folder and what layout is expected. Hidden and system
files (.DS_Store, Thumbs.db, names starting with '.') are ignored. A file that cannot be used
is reported, never deleted or moved; `on_bad_file` decides whether the run stops or goes on
without it. Decoded images are cached (cnnlab.data.cache) under a key made of the file list
with sizes and modification times and the decoding settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.config.data import ImageDirData
from cnnlab.data.cache import load_arrays, store_arrays
from cnnlab.data.dataset import BadFilesError, Dataset, describe_problems, split_indices
from cnnlab.data.images import ImageFormat, decode_files, extension_problem, is_hidden
from cnnlab.data.registry import register_loader
from cnnlab.utils.errors import DataError

# Split folder names as people and courses spell them, compared case-insensitively.
SPLIT_NAMES = {
    "train": ("train", "training", "training_set"),
    "validation": ("validation", "val", "valid"),
    "test": ("test", "testing", "test_set"),
}
_SPLIT_OF = {name: split for split, names in SPLIT_NAMES.items() for name in names}
LAYOUTS = "root/<class>/<image> or root/train/<class>/<image> (with validation/ and test/)"


@dataclass
class Listing:
    """What an image folder holds, before any file is decoded."""

    folders: dict[str, Path]  # split -> its folder (the root itself for one folder of classes)
    classes: list[str]
    files: dict[str, list[tuple[Path, int]]]  # split -> (path, class index)
    problems: list[tuple[str, str]] = field(default_factory=list)  # ruled out by name/place
    stats: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # (size, mtime_ns)


@register_loader
def image_dir(cfg: ImageDirData, seed: int) -> Dataset:
    """Decode every image under `cfg.root` into uint8 arrays, split as the folder says.

    Raises:
        DataError: a missing, empty or nested class folder, an ambiguous layout, no images.
        BadFilesError: unusable files, with on_bad_file: error.
    """
    root = Path(cfg.root)
    listing = scan_folder(root)
    decoded, bad, stored = decode_listing(listing, root, cfg.image_format)
    problems = sorted(listing.problems + bad)
    if problems and cfg.on_bad_file == "error":
        raise BadFilesError(
            f"{root}: {describe_problems(problems)}; set data.on_bad_file: skip to train "
            "without them",
            problems,
        )
    for split, (_, labels, _) in decoded.items():
        counts = np.bincount(labels, minlength=len(listing.classes))
        if not counts.all():
            missing = listing.classes[int(np.flatnonzero(counts == 0)[0])]
            raise DataError(f"{root}: no usable image of class '{missing}' in {split}")
    # Each split's decoded files, by path under root: data health names images by them.
    paths = {
        split: np.array([os.path.relpath(p, root) for p, _ in files], str)[decoded[split][2]]
        for split, files in listing.files.items()
    }
    x, y, _ = decoded["train"]
    rows = np.arange(len(x))  # which of train's decoded files each image of x is
    source = {split: str(folder) for split, folder in listing.folders.items()}
    x_test = y_test = None
    origins, originals = {}, {}

    def of_train(split: str, picked: np.ndarray) -> None:
        origins[split] = paths["train"][picked]
        originals[split] = {key: values[picked] for key, values in stored["train"].items()}

    if "test" in decoded:
        x_test, y_test, _ = decoded["test"]
        origins["test"], originals["test"] = paths["test"], stored["test"]
    elif cfg.test_split:
        kept, held = split_indices(y, cfg.test_split, seed)
        x, y, x_test, y_test = x[kept], y[kept], x[held], y[held]
        of_train("test", rows[held])
        rows = rows[kept]
        source["test"] = f"{cfg.test_split:.0%} of train"
    if "validation" in decoded:
        x_val, y_val, _ = decoded["validation"]
        origins["val"], originals["val"] = paths["validation"], stored["validation"]
    else:
        kept, held = split_indices(y, cfg.validation_split, seed)
        x, y, x_val, y_val = x[kept], y[kept], x[held], y[held]
        of_train("val", rows[held])
        rows = rows[kept]
        # Taken from what the test split left: 0.15 and 0.15 of 1,000 give 150 test, 128 val.
        rest = " after the test split" if "test" not in decoded and cfg.test_split else ""
        source["validation"] = f"{cfg.validation_split:.0%} of train{rest}"
    of_train("train", rows)
    described = ", ".join(f"{s} <- {source[s]}" for s in SPLIT_NAMES if s in source)
    return Dataset(
        x, y, x_val, y_val, x_test, y_test, listing.classes, problems=problems,
        source=f"image folders: {described}", origins=origins, originals=originals,
    )  # fmt: skip


def scan_folder(root: Path) -> Listing:
    """List the image files of each split with their class index (nothing is decoded).

    Raises:
        DataError: the layout is not one of LAYOUTS, or a class folder is empty.
    """
    problems: list[tuple[str, str]] = []
    folders = _split_folders(root, problems)
    classes = _class_folders(folders["train"], problems)
    if len(classes) < 2:
        error = DataError(_too_few_classes(folders["train"], classes))
        if len(classes) == 1 and "set data.root to" in str(error):
            error.inner_root = folders["train"] / classes[0]  # cnnlab train DIR names it so
        raise error
    listing = Listing(folders, classes, {}, problems)
    for split, folder in folders.items():
        found = classes if split == "train" else _class_folders(folder, problems)
        if found != classes:
            extra = sorted(set(found) - set(classes))
            lacking = sorted(set(classes) - set(found))
            what = (
                f"has no folder for class '{lacking[0]}'"
                if lacking
                else f"has class folder '{extra[0]}' that {folders['train'].name}/ does not"
            )
            raise DataError(f"{folder}: {what}; every split needs the same class folders")
        listing.files[split], listing.stats[split] = [], []
        for label, name in enumerate(classes):
            _list_class(folder / name, label, listing, split)
    return listing


def _too_few_classes(folder: Path, classes: list[str]) -> str:
    """Why `folder` is no folder of classes, and the fix: the inner folder that is one (a
    root one level too high), or the layout a classifier needs."""
    if len(classes) == 1:
        inner = folder / classes[0]
        try:
            listing = scan_folder(inner)
        except DataError:
            listing = None
        if listing is not None:
            names = ", ".join(listing.classes[:5]) + (", ..." if len(listing.classes) > 5 else "")
            return (
                f"{folder}: its only folder '{classes[0]}' holds the images, in "
                f"{len(listing.classes)} classes ({names}); set data.root to {inner}"
            )
    found = f"only the class folder '{classes[0]}'" if classes else "no class folders"
    advice = (
        f"{folder}: {found}; a classifier needs two or more, each class's images in a "
        "sub-folder named after it"
    )
    flat = [e.name for e in _entries(folder) if e.is_file() and _KAGGLE_NAME.match(e.name)]
    if flat:  # Kaggle's Dogs vs. Cats train/ folder: cat.0.jpg, dog.0.jpg, ...
        advice += (
            f" ({flat[0]} looks like Kaggle's flat cat.N.jpg/dog.N.jpg folder: "
            f"`cnnlab data cats-vs-dogs-subset {folder} NEW_FOLDER` sorts it into that layout)"
        )
    return advice


_KAGGLE_NAME = re.compile(r"^[A-Za-z]+\.\d+\.(jpe?g|png)$", re.IGNORECASE)


def _split_folders(root: Path, problems: list[tuple[str, str]]) -> dict[str, Path]:
    """{split: folder} of a root of split folders, or {"train": root} for a root of classes."""
    entries = _entries(root)
    dirs = [e for e in entries if e.is_dir()]
    splits = [d for d in dirs if d.name.casefold() in _SPLIT_OF]
    if not splits:
        return {"train": root}
    others = [d.name for d in dirs if d.name.casefold() not in _SPLIT_OF]
    if others:
        raise DataError(
            f"{root}: mixes split folders ({', '.join(d.name + '/' for d in splits)}) with other "
            f"folders ({', '.join(n + '/' for n in others)}); expected {LAYOUTS}"
        )
    folders: dict[str, Path] = {}
    for folder in splits:
        split = _SPLIT_OF[folder.name.casefold()]
        if split in folders:
            raise DataError(
                f"{root}: both {folders[split].name}/ and {folder.name}/ would be the {split} "
                "split; keep one"
            )
        folders[split] = folder
    if "train" not in folders:
        raise DataError(
            f"{root}: has {', '.join(f.name + '/' for f in folders.values())} but no training "
            f"folder ({'/, '.join(SPLIT_NAMES['train'])}/); expected {LAYOUTS}"
        )
    problems.extend((str(e), "not in a class folder") for e in entries if e.is_file())
    return {split: folders[split] for split in SPLIT_NAMES if split in folders}


def _entries(folder: Path) -> list[Path]:
    """The entries of `folder` that are not hidden or system files, sorted by name."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise DataError(f"{folder}: cannot list it: {e.strerror}") from None
    return [folder / name for name in names if not is_hidden(name)]


def _class_folders(folder: Path, problems: list[tuple[str, str]]) -> list[str]:
    names = []
    for entry in _entries(folder):
        if entry.is_dir():
            names.append(entry.name)
        else:
            problems.append((str(entry), "not in a class folder"))
    return names


def _list_class(folder: Path, label: int, listing: Listing, split: str) -> None:
    """Add the image files of one class folder to `listing`; a sub-folder is an error."""
    found_any = False
    with os.scandir(folder) as scan:
        entries = sorted((e for e in scan if not is_hidden(e.name)), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            # A root one level above a root of split folders: say which folder to use.
            hint = (
                f" ({folder.name}/ holds split folders: set data.root to {folder})"
                if entry.name.casefold() in _SPLIT_OF
                else ""
            )
            raise DataError(
                f"{folder}: class folder '{folder.name}' holds the folder {entry.name}/; images "
                f"must sit directly in their class folder, as in {LAYOUTS}{hint}"
            )
        found_any = True
        problem = extension_problem(entry.name)
        if problem:
            listing.problems.append((entry.path, problem))
            continue
        try:
            stat = entry.stat()
        except OSError as e:
            listing.problems.append((entry.path, f"unreadable ({e.strerror})"))
            continue
        listing.files[split].append((Path(entry.path), label))
        listing.stats[split].append((stat.st_size, stat.st_mtime_ns))
    if not found_any:
        raise DataError(f"{folder}: empty class folder; add images or remove it")


def decode_listing(
    listing: Listing, root: Path, fmt: ImageFormat
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], list[tuple[str, str]], dict]:
    """Each split's decoded images, their labels and which of its files they are (a mask), the
    files that failed, and each split's `originals` (Dataset.originals: the decoded files'
    sizes and modes as stored), from the cache when the same files (names, sizes,
    modification times) were decoded the same way before."""
    key = _cache_key(listing, root, fmt)
    cached = load_arrays("images", key)
    if cached is None:
        cached = {}
        problems: list[tuple[str, str]] = []
        for split, files in listing.files.items():
            images, ok, bad, stored = decode_files(
                [path for path, _ in files], fmt, f"decoding {split} images"
            )
            cached[f"x_{split}"], cached[f"ok_{split}"] = images, ok
            cached[f"size_{split}"] = np.array([o[:2] for o in stored], np.int32).reshape(-1, 2)
            cached[f"mode_{split}"] = np.array([o.mode for o in stored], str)
            problems.extend(bad)
        cached["bad_paths"] = np.array([os.path.relpath(p, root) for p, _ in problems], str)
        cached["bad_reasons"] = np.array([reason for _, reason in problems], str)
        store_arrays("images", key, cached)
    decoded, originals = {}, {}
    for split, files in listing.files.items():
        labels = np.array([label for _, label in files], np.int32)
        ok = cached[f"ok_{split}"].astype(bool)
        decoded[split] = (cached[f"x_{split}"], labels[ok], ok)
        size, mode = cached[f"size_{split}"], cached[f"mode_{split}"]
        originals[split] = {"width": size[:, 0], "height": size[:, 1], "mode": mode}
    bad = [
        (str(root / path), str(reason))
        for path, reason in zip(cached["bad_paths"], cached["bad_reasons"], strict=True)
    ]
    return decoded, bad, originals


def _cache_key(listing: Listing, root: Path, fmt: ImageFormat) -> str:
    described = {
        # What an entry holds and how it was decoded: 2 added the files' sizes and modes as
        # stored, 3 scales 16-bit grayscale to 8 bits (2 clipped it), 4 has the resize mode
        # in the format (squash, crop, pad: each its own entry).
        "version": 4,
        "format": list(fmt),
        "classes": listing.classes,
        "files": {
            split: [
                [os.path.relpath(path, root), label, *stat]
                for (path, label), stat in zip(files, listing.stats[split], strict=True)
            ]
            for split, files in listing.files.items()
        },
    }
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:40]
