"""A folder of this process's own for the temporary files libraries write.

Keras writes a `tmpXXXXXXXX` folder under the system's temporary folder each time it saves or
loads a `.keras` file, and deletes it afterwards; a process killed during a checkpoint leaves
it behind. Training points Python's `tempfile` at a folder inside the run directory instead,
emptied when the run starts or resumes and deleted when it ends, so nothing a killed run wrote
is left outside its run directory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def temporary_files_in(folder: Path) -> Iterator[Path]:
    """Within the block, `tempfile`'s default folder is `folder` (made empty first), deleted
    afterwards; the previous default is restored."""
    shutil.rmtree(folder, ignore_errors=True)  # what a killed run left
    folder.mkdir(parents=True)
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)
