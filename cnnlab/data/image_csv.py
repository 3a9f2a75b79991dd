"""Image files of one flat folder labelled by a CSV, as Kaggle ships most image competitions
(`train/` beside `train.csv`): a row per image, its file named by the id column (with or without
its extension, cnnlab.data.ids), its labels in one column (one class per image), in a 0/1
column per class, or as a list of tags in one column (several labels per image).

CSVs are read as text, so an id `0001` stays `0001` and a class `007` stays `007`; values and
column names are stripped of surrounding spaces. Every problem names the file, the row as a
spreadsheet numbers it (the header is row 1) and the column. Files are decoded, cached and split
as image folders' are (cnnlab.data.image_files); image files that no row names are unusable
files for `on_bad_file`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cnnlab.config.images import ImageCsvData
from cnnlab.data.dataset import BadFilesError, Dataset, describe_problems, label_counts
from cnnlab.data.ids import IdMatch, match_ids, shown
from cnnlab.data.image_files import (
    SPLITS,
    decode_splits,
    file_stats,
    relative_names,
    split_dataset,
)
from cnnlab.data.registry import register_loader
from cnnlab.data.tables import read_table
from cnnlab.utils.errors import DataError


@dataclass
class LabelTable:
    """One CSV, read and checked: each row's id and labels, and where the row is."""

    path: Path
    id_column: str
    ids: list[str]
    rows: np.ndarray  # each id's row as a spreadsheet numbers it: the header is row 1
    # label_column: each row's class (str); label_columns: (rows, classes) uint8 0/1;
    # tags_column: each row's tags (a list of str).
    labels: np.ndarray | list[list[str]]

    def where(self, i: int, column: str | None = None) -> str:
        """'train.csv: row 5, column 'label'' for the i-th row (of `column`, default the ids)."""
        return f"{self.path}: row {self.rows[i]}, column '{column or self.id_column}'"


@register_loader
def image_csv(cfg: ImageCsvData, seed: int) -> Dataset:
    """Decode the image files that `cfg.labels` (and `validation`, `test`) name, labelled as
    the rows say, into uint8 arrays.

    Raises:
        DataError: a CSV that cannot be read, a missing column, an empty id or label, a
            duplicate id, a value not 0 or 1 in a label column, an id with no image file, an
            image named by two CSVs, a class only the validation or test CSV has.
        BadFilesError: unusable files, image files no row names included, with on_bad_file:
            error.
    """
    images = Path(cfg.images)
    csvs = {"train": cfg.labels, "validation": cfg.validation, "test": cfg.test}
    tables = {split: read_labels(Path(p), cfg) for split, p in csvs.items() if p is not None}
    classes = class_names(tables["train"], cfg)
    ys = {split: encode(table, classes, cfg, tables["train"]) for split, table in tables.items()}
    matches = {split: _match(table, images) for split, table in tables.items()}
    _one_split_each(tables, matches)
    problems = _unlisted(tables, matches, images, cfg.on_bad_file)
    files, stats, kept = {}, {}, {}
    for split, match in matches.items():
        files[split], stats[split], unreadable = file_stats(match.paths)
        problems += unreadable
        readable = set(files[split])
        kept[split] = np.array([p in readable for p in match.paths], bool)
    decoded, bad, stored = decode_splits(files, stats, images, cfg.image_format)
    problems = sorted(problems + bad)
    if problems and cfg.on_bad_file == "error":
        raise BadFilesError(
            f"{images}: {describe_problems(problems)}; set data.on_bad_file: skip to train "
            "without them",
            problems,
        )
    splits = {}
    for split, (x, ok) in decoded.items():
        splits[split] = (x, ys[split][kept[split]][ok], relative_names(files[split], images, ok))
    counts = label_counts(splits["train"][1], len(classes))
    if not counts.all():
        missing = classes[int(np.flatnonzero(counts == 0)[0])]
        raise DataError(
            f"{cfg.labels}: no usable image of class '{missing}' in train (its files were "
            "left out as unusable)"
        )
    source = {split: str(table.path) for split, table in tables.items()}
    described = f"image files of {images} labelled by CSV"
    return split_dataset(cfg, seed, splits, stored, source, classes, problems, described)


def read_labels(path: Path, cfg: ImageCsvData) -> LabelTable:
    """One CSV's ids and labels, checked: the columns `cfg` names are there, no id is empty or
    given twice, no label is empty, label columns hold 0 or 1.

    Raises:
        DataError: naming the file, row and column of the first problem.
    """
    frame = read_table(path)
    id_column = cfg.id_column or str(frame.columns[0])
    _has_column(frame, path, id_column, "id_column")
    rows = np.arange(len(frame)) + 2
    ids = frame[id_column].tolist()
    table = LabelTable(path, id_column, ids, rows, [])
    first_row: dict[str, int] = {}
    for i, name in enumerate(ids):
        if not name:
            raise DataError(f"{table.where(i)}: empty id; every row names its image file")
        if name in first_row:
            raise DataError(
                f"{table.where(i)}: id {name} is on row {rows[first_row[name]]} too; give each "
                "image one row"
            )
        first_row[name] = i
    if cfg.label_column is not None:
        _has_column(frame, path, cfg.label_column, "label_column")
        values = frame[cfg.label_column].to_numpy(str)
        _no_empty(table, values, cfg.label_column, "empty label; every row needs its class")
        table.labels = values
    elif cfg.label_columns is not None:
        for column in cfg.label_columns:
            _has_column(frame, path, column, "label_columns")
        table.labels = _zero_one(table, frame, cfg.label_columns)
    else:
        _has_column(frame, path, cfg.tags_column, "tags_column")
        table.labels = [
            [tag.strip() for tag in value.split(cfg.tags_separator) if tag.strip()]
            for value in frame[cfg.tags_column].tolist()
        ]
        empty = next((i for i, tags in enumerate(table.labels) if not tags), None)
        if empty is not None:
            raise DataError(
                f"{table.where(empty, cfg.tags_column)}: no tags; every row needs at least one "
                "(an image of none of the classes: a tag of its own, such as none)"
            )
    return table


def _has_column(frame: pd.DataFrame, path: Path, column: str, key: str) -> None:
    """Refuse a column the CSV lacks, listing those it has and the closest name."""
    if column in frame.columns:
        return
    columns = [str(c) for c in frame.columns]
    folded = [c for c in columns if c.casefold() == column.casefold()]
    close = folded or difflib.get_close_matches(column, columns, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise DataError(
        f"{path}: row 1: no column '{column}' (data.{key}); its columns are "
        f"{', '.join(columns[:20])}{', ...' if len(columns) > 20 else ''}{hint}"
    )


def _no_empty(table: LabelTable, values: np.ndarray, column: str, what: str) -> None:
    empty = np.flatnonzero(values == "")
    if len(empty):
        raise DataError(f"{table.where(int(empty[0]), column)}: {what}")


def _zero_one(table: LabelTable, frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """label_columns as (rows, classes) uint8; the first value not 0 or 1 is an error."""
    values = frame[columns].to_numpy(str)
    bad = ~np.isin(values, ("0", "1"))
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])  # row by row, then column by column
        value = str(values[i, j])
        found = f"{value!r} is not 0 or 1" if value else "empty label"
        raise DataError(
            f"{table.where(i, columns[j])}: {found}; each of label_columns holds 1 where the "
            "image shows its class, else 0"
        )
    return (values == "1").astype(np.uint8)


def class_names(train: LabelTable, cfg: ImageCsvData) -> list[str]:
    """The classes: label_columns in their order, else the training CSV's distinct classes or
    tags, sorted as text.

    Raises:
        DataError: fewer than two classes, or a label column with no 1 in it.
    """
    if cfg.label_columns is not None:
        counts = train.labels.sum(axis=0)
        if not counts.all():
            column = cfg.label_columns[int(np.flatnonzero(counts == 0)[0])]
            raise DataError(
                f"{train.path}: column '{column}': 0 on every row; a class needs training "
                "images (rows with 1)"
            )
        return list(cfg.label_columns)
    if cfg.label_column is not None:
        names, column = sorted(set(train.labels.tolist())), cfg.label_column
    else:
        names, column = sorted({tag for tags in train.labels for tag in tags}), cfg.tags_column
    if len(names) < 2:
        raise DataError(
            f"{train.path}: column '{column}': every row has the class '{names[0]}'; a "
            "classifier needs two or more classes"
        )
    return names


def encode(
    table: LabelTable, classes: list[str], cfg: ImageCsvData, train: LabelTable
) -> np.ndarray:
    """The labels as Dataset holds them: int32 class indices (N,) for label_column, uint8 0/1
    (N, classes) for label_columns and tags_column.

    Raises:
        DataError: a class or tag of a validation or test CSV that the training CSV lacks.
    """
    if cfg.label_columns is not None:
        return table.labels
    index = {name: i for i, name in enumerate(classes)}
    single = cfg.label_column is not None
    rows = [[name] for name in table.labels] if single else table.labels
    for i, names in enumerate(rows):
        unknown = next((name for name in names if name not in index), None)
        if unknown is not None:
            raise DataError(
                f"{table.where(i, cfg.label_column or cfg.tags_column)}: "
                f"{'class' if single else 'tag'} '{unknown}' is on no row of "
                f"{train.path.name} ({len(classes)} classes: {shown(classes)}); a model learns "
                "only the classes it trains on"
            )
    if single:
        return np.array([index[name] for name in table.labels], np.int32)
    y = np.zeros((len(rows), len(classes)), np.uint8)
    for i, names in enumerate(rows):
        y[i, [index[name] for name in names]] = 1
    return y


def csv_classes(cfg: ImageCsvData) -> list[str]:
    """The class names, from the training CSV alone (no image is decoded)."""
    if cfg.label_columns is not None:
        return list(cfg.label_columns)
    return class_names(read_labels(Path(cfg.labels), cfg), cfg)


def _match(table: LabelTable, images: Path) -> IdMatch:
    """The image file each id names; an id with none is an error."""
    match = match_ids(table.ids, images, f"{table.path}, column '{table.id_column}'")
    if match.missing:
        first = next(i for i, p in enumerate(match.paths) if p is None)
        hint = ""
        if len(match.missing) == len(table.ids):  # nothing matched: say what the files are
            hint = f"; its files are named like {match.unlisted[0].name}"
        raise DataError(f"{table.where(first)}: {match.describe_missing()} in {images}{hint}")
    return match


def _one_split_each(tables: dict[str, LabelTable], matches: dict[str, IdMatch]) -> None:
    """Refuse an image that two CSVs name (it would be in two splits)."""
    seen: dict[Path, tuple[LabelTable, int]] = {}
    for split in SPLITS:
        if split not in tables:
            continue
        table = tables[split]
        for i, path in enumerate(matches[split].paths):
            if path in seen:
                other, j = seen[path]
                raise DataError(
                    f"{table.where(i)}: image {path.name} is on row {other.rows[j]} of "
                    f"{other.path.name} too; an image belongs to one split"
                )
            seen[path] = (table, i)


def _unlisted(
    tables: dict[str, LabelTable], matches: dict[str, IdMatch], images: Path, on_bad_file: str
) -> list[tuple[str, str]]:
    """(path, reason) of the image files that no CSV names; an error with on_bad_file: error."""
    named = {p for match in matches.values() for p in match.paths}
    unlisted = [p for p in matches["train"].unlisted if p not in named]
    if not unlisted:
        return []
    csvs = " or ".join(table.path.name for table in tables.values())
    problems = [(str(p), f"no row in {csvs}") for p in unlisted]
    if on_bad_file == "error":
        described = replace(matches["train"], unlisted=unlisted).describe_unlisted()
        raise BadFilesError(
            f"{images}: {described} in {csvs}; add their rows, or set data.on_bad_file: skip "
            "to train without them",
            problems,
        )
    return problems
