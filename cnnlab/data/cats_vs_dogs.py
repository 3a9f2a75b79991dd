"""Chollet's small cats-vs-dogs split, made from Kaggle's Dogs vs. Cats `train/` folder."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

from cnnlab.utils.errors import DataError

# Kaggle names its training images cat.0.jpg ... dog.12499.jpg.
NAME = re.compile(r"^(cat|dog)\.\d+\.jpe?g$", re.IGNORECASE)
CLASSES = {"cat": "cats", "dog": "dogs"}


def make_subset(
    source: Path, out_dir: Path, train: int = 1000, val: int = 500, test: int = 1000, seed: int = 0
) -> dict[str, int]:
    """Copy a seeded random sample of each class into out_dir/{train,validation,test}/{cats,dogs}.

    Args:
        source: the folder of `cat.N.jpg` / `dog.N.jpg` files.
        out_dir: a new or empty folder; it appears only once every file is copied.
        train, val, test: images per class in each split.
        seed: picks the sample; the same seed gives the same files.

    Returns:
        The number of files copied into each split.

    Raises:
        DataError: a missing source, too few images of a class, or a non-empty out_dir.
    """
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_dir():
        raise DataError(f"{source}: not a folder")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: already exists and is not an empty folder; choose another")
    by_class: dict[str, list[Path]] = {c: [] for c in CLASSES}
    for path in source.iterdir():
        match = NAME.match(path.name)
        if match and path.is_file():
            by_class[match.group(1).lower()].append(path)
    wanted = {"train": train, "validation": val, "test": test}
    need = sum(wanted.values())
    for kind, files in by_class.items():
        if len(files) < need:
            raise DataError(
                f"{source}: {len(files)} {kind}.N.jpg images, but --train {train} --val {val} "
                f"--test {test} need {need} of each class"
            )
    rng = random.Random(seed)
    # Build beside the target and rename at the end: an interrupted copy leaves no half split.
    staging = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    counts = dict.fromkeys(wanted, 0)
    for kind, files in by_class.items():
        files.sort(key=lambda p: p.name)
        picked = rng.sample(files, need)
        start = 0
        for split, n in wanted.items():
            folder = staging / split / CLASSES[kind]
            folder.mkdir(parents=True, exist_ok=True)
            for path in picked[start : start + n]:
                shutil.copy2(path, folder / path.name)
            counts[split] += n
            start += n
    if out_dir.exists():
        out_dir.rmdir()  # empty, checked above
    staging.rename(out_dir)
    return counts
