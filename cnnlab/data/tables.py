"""CSV files of ids and labels read as text, as a spreadsheet shows them: the one reader of
the labels of `image_csv`, sample submissions and the answers `cnnlab data score` takes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from cnnlab.utils.errors import DataError


def read_table(path: Path) -> pd.DataFrame:
    """A CSV as text (stripped), with its rows as a spreadsheet numbers them: row i of the
    frame is row i + 2 (blank lines are kept as empty rows; those at the end are dropped).

    Raises:
        DataError: the file is missing, empty, not text, a row has more fields than the
            header, or there are no data rows.
    """
    try:
        # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, not part of its header.
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig"
        )
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a readable CSV: {_parser_problem(e)}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text CSV file ({e.reason})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas quietly makes the first column the index when every row has a field more.
        raise DataError(
            f"{path}: row 2: {frame.shape[1] + 1} fields, the header (row 1) has {frame.shape[1]}"
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.apply(lambda column: column.str.strip())
    filled = np.flatnonzero((frame != "").any(axis=1).to_numpy())
    if not len(filled):
        raise DataError(f"{path}: has a header but no data rows")
    return frame.iloc[: filled[-1] + 1]


def _parser_problem(error: Exception) -> str:
    """pandas' 'Expected 3 fields in line 6, saw 4' as 'row 6 has 4 fields, the header 3'."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
    if found is None:
        return str(error).strip().splitlines()[-1]
    expected, line, saw = found.groups()
    return f"row {line} has {saw} fields, the header (row 1) {expected}"
