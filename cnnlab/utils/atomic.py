"""Files written whole or not at all: a temporary file beside the target, renamed over it.

Readers never see half a file, and a crash, a kill or a full disk keeps the previous version.
The result gets the permissions any other new file of the user gets (the umask), not the
owner-only ones of the temporary file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnlab.utils.errors import RunDirError


def _new_file_mode() -> int:
    # The umask can only be read by setting it; set it straight back (read each time, so a
    # change of umask in this process is followed).
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse to replace a file without `overwrite`, or to write into a missing folder."""
    if out.exists() and not overwrite:
        raise RunDirError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.resolve().parent.is_dir():
        raise RunDirError(f"{out}: folder {out.parent} does not exist")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, else delete it."""
    path = Path(path)
    try:
        # Keep the suffix: Keras only saves to names ending in .keras.
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
    except OSError as e:
        raise _naming(e, path) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except OSError as e:
        # A full disk fails a write without a file name, a replace names the temporary file.
        if e.filename in (None, tmp):
            raise _naming(e, path) from None
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)


def _naming(error: OSError, path: Path) -> OSError:
    """`error` about the file being written, as the file it becomes."""
    error.filename, error.filename2 = str(path), None
    return error


def atomic_write(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write(path, json.dumps(obj, indent=2) + "\n")
