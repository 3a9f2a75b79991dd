"""Kaggle Digit Recognizer CSVs: a `label` column (train) and one column per pixel, 0-255.

Every malformation is reported with the file, its line and the column, because pandas on its
own pads short rows with NaN, reads `0.5` as a float and `abc` as text without complaint.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cnnlab.config.data import KaggleCsvData
from cnnlab.data.cache import load_arrays, store_arrays
from cnnlab.data.dataset import Dataset, from_arrays
from cnnlab.data.registry import register_loader
from cnnlab.utils.atomic import atomic_path
from cnnlab.utils.errors import DataError

# Columns some competitions and `DataFrame.to_csv(index=True)` add in front of the pixels.
ID_COLUMNS = {"id", "index", "imageid", "unnamed: 0"}
LABEL_COLUMN = "label"
CHUNK_ROWS = 20_000  # rows parsed at a time: ~60 MB of int64 for 785 columns


@register_loader
def kaggle_csv(cfg: KaggleCsvData, seed: int) -> Dataset:
    """Load train (and optional validation/test) CSVs into a Dataset."""
    read = {"image_shape": cfg.image_shape, "num_classes": cfg.num_classes}
    train = read_digits_csv(cfg.train, require_label=True, **read)
    validation = test = None
    if cfg.validation is not None:
        validation = read_digits_csv(cfg.validation, require_label=True, **read)
    if cfg.test is not None:
        test = read_digits_csv(cfg.test, require_label=False, **read)
    names = [str(i) for i in range(cfg.num_classes)]
    return from_arrays(cfg, seed, train, test or (None, None), names, validation)


def read_digits_csv(
    path: Path,
    *,
    image_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    require_label: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read and check one CSV.

    Args:
        path: the CSV file.
        image_shape: (height, width, channels); the file needs height*width*channels pixel columns.
        num_classes: labels must lie in 0..num_classes-1.
        require_label: refuse a file without a `label` column.

    Returns:
        uint8 images of shape (rows, *image_shape) and int32 labels (None without a label column).

    Raises:
        DataError: naming the file, line and column of the first problem found.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None
    key = f"{digest[:32]}-{'x'.join(map(str, image_shape))}-{num_classes}"
    # A re-run reads ~50 MB of parsed arrays instead of ~110 MB of text.
    cached = load_arrays("csv", key)
    if cached is None:
        x, y = _parse(path, image_shape, num_classes)
        store_arrays("csv", key, {"x": x, **({} if y is None else {"y": y})})
    else:
        x, y = cached["x"], cached.get("y")
    if require_label and y is None:
        raise DataError(f"{path}:1: no '{LABEL_COLUMN}' column; a training file needs one")
    return x.reshape(len(x), *image_shape), y


def _parse(
    path: Path, image_shape: tuple[int, int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse and check the file in chunks of rows: memory stays bounded by the uint8 result."""
    n_pixels = int(np.prod(image_shape))
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    rows = 0
    blank_since: int | None = None  # line of the first blank line not yet followed by data
    try:
        # skip_blank_lines=False keeps row i on line i + 2, so every message can name its line.
        reader = pd.read_csv(path, skip_blank_lines=False, low_memory=False, chunksize=CHUNK_ROWS)
        for df in reader:
            start_line = rows + 2
            rows += len(df)
            if start_line == 2:
                if not isinstance(df.index, pd.RangeIndex):
                    # pandas quietly turns a first column without a header into the index
                    # when the data rows have one field more than the header.
                    _raise_short_row(path, 2, df.shape[1] + 1, df.shape[1])
                label_at, pixel_at = _columns(df, path, image_shape, n_pixels)
            blank = df.isna().all(axis=1).to_numpy()
            data_rows = np.flatnonzero(~blank)
            if data_rows.size and blank_since is not None:
                _raise_short_row(path, blank_since, 0, df.shape[1])
            if data_rows.size:
                last = int(data_rows[-1])
                # Blank lines are only allowed at the end of the file.
                df = df.iloc[: last + 1]
                blank_since = start_line + last + 1 if last + 1 < len(blank) else None
            else:
                blank_since = start_line if blank_since is None else blank_since
                continue
            x, y = _check_chunk(df, path, start_line, label_at, pixel_at, num_classes)
            xs.append(x)
            if y is not None:
                ys.append(y)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m:
            expected, line, saw = m.groups()
            raise DataError(
                f"{path}:{line}: expected {expected} fields (as in the header), found {saw} fields"
            ) from None
        raise DataError(f"{path}: not a readable CSV: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV file ({e.reason})") from None
    if not xs:
        raise DataError(f"{path}: has a header but no data rows")
    return np.concatenate(xs), (np.concatenate(ys) if ys else None)


def _columns(
    df: pd.DataFrame, path: Path, image_shape: tuple[int, int, int], n_pixels: int
) -> tuple[int | None, list[int]]:
    """Where the label and pixel columns are, from the header."""
    names = [str(c).strip().lower() for c in df.columns]
    if sum(_is_number(n) for n in names) > len(names) / 2:
        raise DataError(
            f"{path}:1: the first line looks like data, not a header; "
            f"add a header line (label,pixel0,...,pixel{n_pixels - 1})"
        )
    label_at = names.index(LABEL_COLUMN) if LABEL_COLUMN in names else None
    pixel_at = [i for i, n in enumerate(names) if n not in ID_COLUMNS and i != label_at]
    if len(pixel_at) != n_pixels:
        raise DataError(
            f"{path}:1: found {len(pixel_at)} pixel columns besides label/id, expected "
            f"{n_pixels} (images of {'x'.join(map(str, image_shape))})"
        )
    return label_at, pixel_at


def _check_chunk(
    df: pd.DataFrame,
    path: Path,
    start_line: int,
    label_at: int | None,
    pixel_at: list[int],
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check one block of rows (row r is on line start_line + r) and convert it."""
    used = ([label_at] if label_at is not None else []) + pixel_at
    _check_complete(df, path, start_line)
    _check_numeric(df, path, used, start_line, label_at, num_classes)
    _check_pixels(df, path, pixel_at, start_line)
    # Column by column: read_csv leaves one block per column, and a plain to_numpy() would
    # first build an int64 copy of the whole table.
    pixels = np.empty((len(df), len(pixel_at)), np.uint8)
    for j, i in enumerate(pixel_at):
        pixels[:, j] = df.iloc[:, i].to_numpy()
    if label_at is None:
        return pixels, None
    labels = df.iloc[:, label_at].to_numpy()
    bad = ~np.isin(labels, np.arange(num_classes))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{_where(path, start_line + r, df, label_at)}: {labels[r].item()!r} is not a "
            f"class index 0-{num_classes - 1}"
        )
    return pixels, labels.astype(np.int32)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _where(path: Path, line: int, df: pd.DataFrame, col: int) -> str:
    return f"{path}:{line}: column '{df.columns[col]}' (column {col + 1})"


def _raise_short_row(path: Path, line: int, fields: int, expected: int) -> None:
    kind = "an empty line" if fields == 0 else f"{fields} fields"
    raise DataError(f"{path}:{line}: expected {expected} fields (as in the header), found {kind}")


def _check_complete(df: pd.DataFrame, path: Path, start_line: int) -> None:
    """Short rows and empty cells both read as NaN; the raw line tells them apart."""
    missing = df.isna().to_numpy()
    if not missing.any():
        return
    row, col = divmod(int(np.flatnonzero(missing)[0]), missing.shape[1])
    line = start_line + row
    with open(path, "rb") as f:
        raw = next(itertools.islice(f, line - 1, None), b"")
    fields = raw.count(b",") + 1 if raw.strip() else 0
    if fields != df.shape[1]:
        _raise_short_row(path, line, fields, df.shape[1])
    raise DataError(f"{_where(path, line, df, col)}: empty cell")


def _check_numeric(
    df: pd.DataFrame,
    path: Path,
    used: list[int],
    start_line: int,
    label_at: int | None,
    num_classes: int,
) -> None:
    for col in used:
        series = df.iloc[:, col]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            continue
        # pandas keeps integers past 64 bits as Python ints, in a column of objects.
        huge = series.map(lambda v: isinstance(v, int) and not -(2**63) <= v < 2**64)
        bad = pd.to_numeric(series, errors="coerce").isna().to_numpy() | huge.to_numpy(bool)
        row = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        value, at = series.iloc[row], _where(path, start_line + row, df, col)
        if not huge.iloc[row]:
            raise DataError(f"{at}: {value!r} is not a number")
        if col == label_at:
            raise DataError(f"{at}: {value} is not a class index 0-{num_classes - 1}")
        raise DataError(f"{at}: {value} is outside the pixel range 0-255")


def _check_pixels(df: pd.DataFrame, path: Path, pixel_at: list[int], start_line: int) -> None:
    """Pixels must be integers 0-255. Column reductions keep this cheap on 47M cells; the
    offending cell is located only when a column fails."""

    def first_bad(columns: list[int], bad_cells) -> tuple[str, object]:
        values = df.iloc[:, columns].to_numpy()
        row, sub = divmod(int(np.flatnonzero(bad_cells(values))[0]), len(columns))
        return _where(path, start_line + row, df, columns[sub]), values[row, sub].item()

    floats = [i for i in pixel_at if df.dtypes.iloc[i].kind == "f"]
    if floats:
        fractional = (df.iloc[:, floats] % 1 != 0).any().to_numpy()
        if fractional.any():
            at, value = first_bad(floats, lambda v: v != np.floor(v))
            scaled = float(df.iloc[:, floats].max().max()) <= 1.0
            hint = (
                "; the pixels look already scaled to 0-1: give the original 0-255 integers "
                "(cnnlab scales inside the model)"
                if scaled
                else ""
            )
            raise DataError(f"{at}: {value!r} is not an integer 0-255{hint}")
    block = df.iloc[:, pixel_at]
    outside = ((block.min() < 0) | (block.max() > 255)).to_numpy()
    if outside.any():
        columns = [pixel_at[i] for i in np.flatnonzero(outside)]
        at, value = first_bad(columns, lambda v: (v < 0) | (v > 255))
        raise DataError(f"{at}: {value!r} is outside the pixel range 0-255")


# ---------------------------------------------------------------------------------------------
# Submissions: Digit Recognizer's ImageId,Label (cnnlab.commands.score scores them).


def write_submission(labels: np.ndarray, path: Path) -> None:
    """Write Kaggle's `ImageId,Label` rows, ImageId counting from 1 in input order."""
    frame = pd.DataFrame({"ImageId": np.arange(1, len(labels) + 1), "Label": labels})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
