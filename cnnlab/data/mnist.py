"""MNIST from a local .npz (the arrays keras.datasets.mnist.load_data() returns), and its
conversion to Kaggle Digit Recognizer CSVs so the Kaggle workflow can be run offline."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from cnnlab.config.data import MnistData
from cnnlab.data.dataset import Dataset, from_arrays
from cnnlab.data.registry import register_loader
from cnnlab.utils.console import say
from cnnlab.utils.errors import DataError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@register_loader
def mnist(cfg: MnistData, seed: int) -> Dataset:
    """Load MNIST; `path: null` downloads it with keras.datasets (needs internet)."""
    train, test = read_mnist_npz(cfg.path) if cfg.path else _download()
    return from_arrays(cfg, seed, train, test, [str(i) for i in range(10)])


def read_mnist_npz(path: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """((x_train, y_train), (x_test, y_test)) with images as uint8 (N, 28, 28, 1), int32 labels."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: not an MNIST archive (missing {', '.join(missing)})")
            arrays = {k: z[k] for k in NPZ_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read as .npz: {e}") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.dtype != np.uint8 or len(x) != len(y):
            raise DataError(
                f"{path}: x_{split} must be uint8 (N, H, W) with one label each; "
                f"got {x.dtype} {x.shape} and {len(y)} labels"
            )
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{path}: y_{split} holds {y.min()}..{y.max()}; MNIST labels are 0-9")
    return (
        (arrays["x_train"][..., None], arrays["y_train"].astype(np.int32)),
        (arrays["x_test"][..., None], arrays["y_test"].astype(np.int32)),
    )


def _download() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    import keras

    say("no local MNIST file; downloading with keras.datasets.mnist ...")
    try:
        (x, y), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as e:  # urllib raises a variety of errors when offline
        raise DataError(
            f"cannot download MNIST ({type(e).__name__}: {e}); set data.path to a local mnist.npz"
        ) from None
    return (x[..., None], y.astype(np.int32)), (x_test[..., None], y_test.astype(np.int32))


def mnist_to_kaggle(npz: Path, out_dir: Path, overwrite: bool = False) -> dict[str, Path]:
    """Write Kaggle Digit Recognizer files from an MNIST .npz.

    Returns:
        {"train": train.csv (label + pixel0..783, 60,000 rows), "test": test.csv (pixels only),
        "test_labels": test_labels.csv (ImageId,Label with ImageId from 1)}.
    """
    import pandas as pd

    from cnnlab.utils.atomic import atomic_path

    (x, y), (x_test, y_test) = read_mnist_npz(npz)
    out_dir = Path(out_dir)
    files = {name: out_dir / f"{name}.csv" for name in ("train", "test", "test_labels")}
    taken = [str(p) for p in files.values() if p.exists()]
    if taken and not overwrite:
        raise DataError(f"{', '.join(taken)}: already exists; pass --overwrite to replace")
    out_dir.mkdir(parents=True, exist_ok=True)
    pixel_names = [f"pixel{i}" for i in range(x.shape[1] * x.shape[2])]
    frames = {
        "train": pd.DataFrame(x.reshape(len(x), -1), columns=pixel_names),
        "test": pd.DataFrame(x_test.reshape(len(x_test), -1), columns=pixel_names),
        "test_labels": pd.DataFrame({"ImageId": np.arange(1, len(y_test) + 1), "Label": y_test}),
    }
    frames["train"].insert(0, "label", y)
    for name, frame in frames.items():
        with atomic_path(files[name]) as tmp:
            frame.to_csv(tmp, index=False)
    return files
