"""Folders of class sub-folders of image files: every file decoded and checked before training.

Two layouts:
    root/<split>/<class>/*.jpg   split folders by their usual names (see SPLIT_NAMES); without
                                 a validation folder, validation is split off train
    root/<class>/*.jpg           one folder, split by validation_split and test_split
and, in place of class folders, a flat folder whose files are ALL named <class>.<id>.<ext>
(Kaggle's Dogs vs. Cats train/: cat.0.jpg, dog.12.jpg): the classes are the names' first parts.

Nothing is guessed: a class folder that holds folders, or a root that mixes split and class
folders, is an error that says which folder and what layout is expected. Hidden and system
files (.DS_Store, Thumbs.db, names starting with '.') are ignored. A file that cannot be used
is reported, never deleted or moved; `on_bad_file` decides whether the run stops or goes on
without it. Decoding and caching are cnnlab.data.image_files'.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.config.images import ImageDirData
from cnnlab.data.dataset import BadFilesError, Dataset, describe_problems
from cnnlab.data.ids import shown
from cnnlab.data.image_files import decode_splits, file_stats, relative_names, split_dataset
from cnnlab.data.images import extension_problem, is_hidden
from cnnlab.data.registry import register_loader
from cnnlab.utils.console import note
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
    from_names: bool = False  # classes from the files' names <class>.<id>.<ext>, no folders


@register_loader
def image_dir(cfg: ImageDirData, seed: int) -> Dataset:
    """Decode every image under `cfg.root` into uint8 arrays, split as the folder says.

    Raises:
        DataError: a missing, empty or nested class folder, an ambiguous layout, no images.
        BadFilesError: unusable files, with on_bad_file: error.
    """
    root = Path(cfg.root)
    listing = scan_folder(root)
    train = listing.folders["train"]
    if listing.from_names:
        note(
            f"{train}: no class folders, and every file is named <class>.<id>.<ext>: the "
            f"{len(listing.classes)} classes ({shown(listing.classes)}) are the names' first "
            f"parts ({listing.files['train'][0][0].name} -> {listing.classes[0]})"
        )
    paths = {split: [path for path, _ in files] for split, files in listing.files.items()}
    decoded, bad, stored = decode_splits(paths, listing.stats, root, cfg.image_format)
    problems = sorted(listing.problems + bad)
    if problems and cfg.on_bad_file == "error":
        raise BadFilesError(
            f"{root}: {describe_problems(problems)}; set data.on_bad_file: skip to train "
            "without them",
            problems,
        )
    splits = {}
    for split, files in listing.files.items():
        x, ok = decoded[split]
        labels = np.array([label for _, label in files], np.int32)[ok]
        counts = np.bincount(labels, minlength=len(listing.classes))
        if not counts.all():
            missing = listing.classes[int(np.flatnonzero(counts == 0)[0])]
            raise DataError(f"{root}: no usable image of class '{missing}' in {split}")
        # Each image's file by its path under root: data health names images by them.
        splits[split] = (x, labels, relative_names(paths[split], root, ok))
    source = {split: str(folder) for split, folder in listing.folders.items()}
    if listing.from_names:
        source["train"] += " (classes from the file names: <class>.<id>.<ext>)"
    return split_dataset(
        cfg, seed, splits, stored, source, listing.classes, problems, "image folders"
    )


def scan_folder(root: Path) -> Listing:
    """List the image files of each split with their class index (nothing is decoded).

    Raises:
        DataError: the layout is not one of LAYOUTS, or a class folder is empty.
    """
    problems: list[tuple[str, str]] = []
    folders = _split_folders(root, problems)
    named = _named_classes(folders["train"])
    if named is not None and len(named) >= 2:
        return _named_listing(folders, named, problems)
    classes = _class_folders(folders["train"], problems)
    if len(classes) < 2:
        error = DataError(_too_few_classes(folders["train"], classes))
        if len(classes) == 1 and "set data.root to" in str(error):
            error.inner_root = folders["train"] / classes[0]  # cnnlab train DIR names it so
        raise error
    listing = Listing(folders, classes, {}, problems)
    for split, folder in folders.items():
        found = classes if split == "train" else _class_folders(folder, problems)
        _same_classes(folder, found, classes, folders["train"], "folder")
        listing.files[split], listing.stats[split] = [], []
        for label, name in enumerate(classes):
            _list_class(folder / name, label, listing, split)
    return listing


def _same_classes(folder: Path, found: list[str], classes: list[str], train: Path, kind: str):
    """Refuse a split whose classes (class folders, or classes in file names) are not train's."""
    if found == classes:
        return
    extra = sorted(set(found) - set(classes))
    lacking = sorted(set(classes) - set(found))
    if kind == "folder":
        what = (
            f"has no folder for class '{lacking[0]}'"
            if lacking
            else f"has class folder '{extra[0]}' that {train.name}/ does not"
        )
    else:
        what = (
            f"has no file of class '{lacking[0]}'"
            if lacking
            else f"has files of class '{extra[0]}' ({extra[0]}.<id>.<ext>) that "
            f"{train.name}/ does not"
        )
    raise DataError(f"{folder}: {what}; every split needs the same class {kind}s")


# Kaggle's flat Dogs vs. Cats train/ folder names each file <class>.<id>.<ext>: cat.0.jpg.
_CLASS_NAMED = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)\.\d+\.[A-Za-z]+$")
NAMED = "<class>.<id>.<ext>"


def _named_classes(folder: Path) -> dict[str, list[Path]] | None:
    """{class: its files, sorted} when `folder` holds no folders and only image files named
    <class>.<id>.<ext> (hidden and system files aside); None otherwise."""
    entries = _entries(folder)
    if not entries or any(not _is_named(e) for e in entries):
        return None
    named: dict[str, list[Path]] = {}
    for entry in entries:
        named.setdefault(_CLASS_NAMED.match(entry.name).group(1), []).append(entry)
    return {name: named[name] for name in sorted(named)}


def _is_named(entry: Path) -> bool:
    return (
        _CLASS_NAMED.match(entry.name) is not None
        and extension_problem(entry.name) is None
        and entry.is_file()
    )


def _named_listing(
    folders: dict[str, Path], named: dict[str, list[Path]], problems: list[tuple[str, str]]
) -> Listing:
    """The Listing of split folders whose files are named <class>.<id>.<ext>: train's, and
    every other split's alike."""
    classes = list(named)
    listing = Listing(folders, classes, {}, problems, from_names=True)
    for split, folder in folders.items():
        found = named if split == "train" else _named_classes(folder)
        if found is None:
            # Kaggle's Dogs vs. Cats: train/ of cat.N.jpg, test/ of unlabelled 1.jpg, 2.jpg...
            raise DataError(
                f"{folder}: the files of {folders['train'].name}/ are named {NAMED} (no class "
                f"folders), but not all of this folder's are; every split needs the same layout "
                f"(an unlabelled test folder: train on {folders['train']} alone, then predict "
                f"{folder} with `cnnlab predict RUN_DIR {folder}`)"
            )
        _same_classes(folder, list(found), classes, folders["train"], "name")
        paths = [path for name in classes for path in found[name]]
        labels = {path: label for label, name in enumerate(classes) for path in found[name]}
        kept, stats, unreadable = file_stats(paths)
        listing.files[split] = [(path, labels[path]) for path in kept]
        listing.stats[split] = stats
        listing.problems.extend(unreadable)
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
    named = _named_classes(folder)
    if named is not None:  # one class only: cat.0.jpg, cat.1.jpg, ...
        (only,) = named
        return (
            f"{folder}: every file is named {NAMED}, all of class '{only}'; a classifier needs "
            f"two or more classes (add the other classes' files, e.g. other.0.jpg)"
        )
    found = f"only the class folder '{classes[0]}'" if classes else "no class folders"
    advice = (
        f"{folder}: {found}; a classifier needs two or more, each class's images in a "
        f"sub-folder named after it, or a flat folder of files all named {NAMED}"
    )
    entries = _entries(folder)
    flat = [e.name for e in entries if e.is_file() and _KAGGLE_NAME.match(e.name)]
    if flat:  # Kaggle's Dogs vs. Cats train/ folder, with other entries too
        odd = next(e for e in entries if not _is_named(e))
        advice += (
            f" ({flat[0]} looks like Kaggle's flat cat.N.jpg/dog.N.jpg folder, but "
            f"{odd.name}{'/' if odd.is_dir() else ''} is not named {NAMED}: move it out, or "
            f"`cnnlab data cats-vs-dogs-subset {folder} NEW_FOLDER` sorts the cats and dogs "
            "into class folders)"
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
        train = next((d for d in splits if _SPLIT_OF[d.name.casefold()] == "train"), None)
        hint = ""
        if train is not None and _named_classes(train):  # Kaggle's train/ and test1/
            hint = (
                f" ({train.name}/ names its files {NAMED}: train on it alone (`cnnlab train "
                f"{train}`, or data.root: {train}), then predict {others[0]}/ with `cnnlab "
                f"predict RUN_DIR {root / others[0]}`)"
            )
        raise DataError(
            f"{root}: mixes split folders ({', '.join(d.name + '/' for d in splits)}) with other "
            f"folders ({', '.join(n + '/' for n in others)}); expected {LAYOUTS}{hint}"
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
