"""A cache of decoded arrays keyed by what they were decoded from.

Parsing a 110 MB CSV or decoding 50,000 JPEGs takes far longer than reading the resulting
uint8 arrays back, so loaders store their result under a key made of the input's identity
(a CSV's bytes; an image folder's file list with sizes and modification times) and the
decoding settings. One folder per kind of input under `~/.cache/cnnlab`; CNNLAB_CACHE_DIR
moves that root, and an empty value turns the cache off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.utils.atomic import atomic_path
from cnnlab.utils.environment import cache_root

# Bump when the stored layout of any kind changes: older entries are then never read.
VERSION = "2"


def _entry(kind: str, key: str) -> Path | None:
    root = cache_root()
    return None if root is None else root / kind / f"v{VERSION}-{key}.npz"


def load_arrays(kind: str, key: str) -> dict[str, np.ndarray] | None:
    """The arrays stored under (kind, key), or None: not cached, caching off, or damaged."""
    file = _entry(kind, key)
    if file is None or not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except (OSError, ValueError, KeyError, EOFError):
        return None  # a damaged entry is decoded again and rewritten


def store_arrays(kind: str, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Store `arrays` under (kind, key); a read-only or full disk is ignored (no cache)."""
    file = _entry(kind, key)
    if file is None:
        return
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(file) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError:
        pass  # a cache that cannot be written must not stop training
