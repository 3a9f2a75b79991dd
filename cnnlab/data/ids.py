"""Ids of a CSV (a Kaggle `train.csv`, a `sample_submission.csv`) matched to the image files of
one flat folder: the id is the file's name, with or without its extension.

Decided once for the whole column: when any id is a file's whole name, ids are names with
their extension; otherwise each id is a file's name without it (`1` -> `1.jpg`), and an id that
names two files (`1.jpg` and `1.png`) is an error that says which.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.images import extension_problem, is_hidden
from cnnlab.utils.errors import DataError

SHOWN = 5  # ids or files named in a message before "and N more"


@dataclass
class IdMatch:
    """Which file each id names, and what matched nothing."""

    paths: list[Path | None]  # aligned with the ids: None where no file has that name
    missing: list[str]  # ids with no file, in the CSV's order
    unlisted: list[Path]  # image files of the folder that no id names, sorted

    def describe_missing(self) -> str:
        """'3 ids with no image file (12, 40, 77)'."""
        n = len(self.missing)
        return f"{n:,} id{'s' if n != 1 else ''} with no image file ({shown(self.missing)})"

    def describe_unlisted(self) -> str:
        """'2 image files with no row (a.jpg, b.jpg)'."""
        names = [p.name for p in self.unlisted]
        n = len(names)
        return f"{n:,} image file{'s' if n != 1 else ''} with no row ({shown(names)})"


def shown(items: list[str]) -> str:
    """The first SHOWN items, then 'and N more'."""
    head = ", ".join(str(i) for i in items[:SHOWN])
    return head + (f" and {len(items) - SHOWN:,} more" if len(items) > SHOWN else "")


def folder_images(folder: Path) -> list[Path]:
    """The image files (by extension) directly in `folder`, sorted; hidden files left out."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise DataError(f"{folder}: cannot list it: {e.strerror}") from None
    return [
        folder / name
        for name in names
        if not is_hidden(name) and extension_problem(name) is None and (folder / name).is_file()
    ]


def match_ids(ids: list[str], folder: Path, where: str) -> IdMatch:
    """The image file in `folder` that each of `ids` names (as strings, as the CSV spells them).

    Args:
        ids: the id column's values.
        folder: a flat folder of image files.
        where: the CSV and column, for messages ("train.csv, column id").

    Raises:
        DataError: the folder holds no image files, or the names match files of two
            extensions (`1.jpg` and `1.png`).
    """
    files = folder_images(folder)
    if not files:
        raise DataError(f"{folder}: no image files (readable: .jpg .jpeg .png .bmp .gif ...)")
    by_name = {p.name: p for p in files}
    if any(i in by_name for i in ids):
        paths = [by_name.get(i) for i in ids]
    else:
        # Ids without extension: each names the one file whose stem it is.
        by_stem: dict[str, list[Path]] = defaultdict(list)
        for p in files:
            by_stem[os.path.splitext(p.name)[0]].append(p)
        twice = next((i for i in ids if len(by_stem.get(i, ())) > 1), None)
        if twice is not None:
            names = ", ".join(p.name for p in by_stem[twice])
            raise DataError(
                f"{where}: id {twice} names {len(by_stem[twice])} files ({names}) in {folder}; "
                "keep one of them there"
            )
        paths = [by_stem[i][0] if i in by_stem else None for i in ids]
    named = {p for p in paths if p is not None}
    missing = [i for i, p in zip(ids, paths, strict=True) if p is None]
    return IdMatch(paths, missing, [p for p in files if p not in named])
