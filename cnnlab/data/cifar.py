"""CIFAR-10 and CIFAR-100 from the official python archive, its extracted folder, or a download.

The archive holds pickled dicts. Unpickling can run arbitrary code, so the unpickler here
accepts only what those files contain (dicts, lists, bytes, NumPy arrays) and refuses any
other object by name before it is built.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from cnnlab.config.data import Cifar10Data, Cifar100Data
from cnnlab.data.dataset import Dataset, from_arrays
from cnnlab.data.registry import register_loader
from cnnlab.utils.console import say
from cnnlab.utils.errors import DataError

# The member files of each archive (inside its top folder) and their label key.
LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "names": {"fine": "label_names"},
        "labels": {"fine": "labels"},
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "names": {"fine": "fine_label_names", "coarse": "coarse_label_names"},
        "labels": {"fine": "fine_labels", "coarse": "coarse_labels"},
    },
}
# The only globals a CIFAR pickle refers to: NumPy's array reconstruction, and the codec call
# Python 3 writes for bytes in protocol 2.
_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


@register_loader
def cifar10(cfg: Cifar10Data, seed: int) -> Dataset:
    """CIFAR-10 as uint8 (N, 32, 32, 3) images with a seeded validation split of train."""
    return _load(cfg, seed, "fine")


@register_loader
def cifar100(cfg: Cifar100Data, seed: int) -> Dataset:
    """CIFAR-100 with fine (100) or coarse (20) labels."""
    return _load(cfg, seed, cfg.label_mode)


def _load(cfg, seed: int, label_mode: str) -> Dataset:
    if cfg.path is None:
        train, test, names = _download(cfg.loader, label_mode)
    else:
        train, test, names = read_cifar(cfg.path, cfg.loader, label_mode)
    return from_arrays(cfg, seed, train, test, names)


def read_cifar(path: Path, kind: str = "cifar10", label_mode: str = "fine"):
    """Read the official python version of CIFAR-10/100 from its .tar.gz or extracted folder.

    Args:
        path: `cifar-10-python.tar.gz`, `cifar-10-batches-py/` (or the CIFAR-100 equivalents),
            or a folder that holds the extracted folder.
        kind: "cifar10" or "cifar100".
        label_mode: "fine" or, for CIFAR-100, "coarse".

    Returns:
        ((x_train, y_train), (x_test, y_test), class_names) with uint8 NHWC images and int32
        labels.

    Raises:
        DataError: a missing member or array of the wrong shape, named with its file.
    """
    layout = LAYOUT[kind]
    path = Path(path)
    if path.is_dir():
        folder = path / layout["folder"] if (path / layout["folder"]).is_dir() else path

        def read(name: str) -> dict:
            member = folder / name
            if not member.is_file():
                raise DataError(f"{member}: missing; is {path} the {kind} python version?")
            return _unpickle(member.read_bytes(), member)

        return _assemble(read, layout, label_mode, kind)
    try:
        with tarfile.open(path, "r:*") as archive:
            members = {m.name.rsplit("/", 1)[-1]: m for m in archive.getmembers() if m.isfile()}

            def read(name: str) -> dict:
                if name not in members:
                    raise DataError(f"{path}: no member {name}; is it the {kind} python version?")
                return _unpickle(archive.extractfile(members[name]).read(), f"{path}:{name}")

            return _assemble(read, layout, label_mode, kind)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: not a readable .tar.gz archive ({e})") from None


def _unpickle(raw: bytes, where) -> dict:
    try:
        data = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{where}: not a CIFAR batch ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{where}: not a CIFAR batch (holds a {type(data).__name__})")
    # Python 2 pickled str keys; read as bytes here. Accept either.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}


def _assemble(read, layout: dict, label_mode: str, kind: str):
    meta = read(layout["meta"])
    names_key = layout["names"][label_mode]
    if names_key not in meta:
        raise DataError(f"{kind} {layout['meta']}: no '{names_key}' entry")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]
    splits = []
    for split in ("train", "test"):
        xs, ys = [], []
        for member in layout[split]:
            batch = read(member)
            x, y = _batch_arrays(batch, layout["labels"][label_mode], f"{kind} {member}")
            if len(y) and (y.min() < 0 or y.max() >= len(names)):
                raise DataError(
                    f"{kind} {member}: labels run {y.min()}..{y.max()}, but there are "
                    f"{len(names)} classes"
                )
            xs.append(x)
            ys.append(y)
        splits.append((np.concatenate(xs), np.concatenate(ys)))
    return splits[0], splits[1], names


def _batch_arrays(batch: dict, label_key: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"{where}: no '{key}' entry")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 32 * 32 * 3:
        raise DataError(
            f"{where}: 'data' must be uint8 rows of 3072 pixels; got {data.dtype} {data.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: needs one integer label per image")
    # Rows hold the red plane, then green, then blue, each 32x32 row-major.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _download(kind: str, label_mode: str):
    """Fetch the official archive the way keras.datasets does (same URL, hash and cache)."""
    import keras

    say(f"no local {kind} archive; downloading it with Keras ...")
    try:
        path = keras.utils.get_file(
            fname=f"{LAYOUT[kind]['folder']}-target",
            origin=f"https://www.cs.toronto.edu/~kriz/{ARCHIVES[kind]}",
            extract=True,
            file_hash=HASHES[kind],
        )
    except Exception as e:  # urllib raises a variety of errors when offline
        raise DataError(
            f"cannot download {kind} ({type(e).__name__}: {e}); set data.path to a local "
            f"{ARCHIVES[kind]} or its extracted {LAYOUT[kind]['folder']} folder"
        ) from None
    return read_cifar(Path(path), kind, label_mode)


ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
HASHES = {  # sha256, as in keras.datasets
    "cifar10": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    "cifar100": "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
}
