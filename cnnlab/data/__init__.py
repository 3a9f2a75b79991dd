"""Dataset loaders: `LOADERS[cfg.data.loader](cfg.data, seed)` returns a Dataset.

A loader is a function filed with `@register_loader` (cnnlab.data.registry): its name is the
`data.loader` name in YAML, and cnnlab.config.DATA_SCHEMAS holds its schema under it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.data import cifar, image_csv, image_dir, kaggle_csv, mnist  # noqa: F401  (register)
from cnnlab.data.dataset import BadFilesError, Dataset, adapt_images, describe_problems
from cnnlab.data.image_csv import csv_classes
from cnnlab.data.image_dir import scan_folder
from cnnlab.data.kaggle_csv import read_digits_csv
from cnnlab.data.registry import LOADERS
from cnnlab.utils.errors import DataError


def load_dataset(data_cfg, seed: int) -> Dataset:
    """Load the dataset a config's `data` block describes, resized/converted as it asks."""
    data = LOADERS[data_cfg.loader](data_cfg, seed)
    for split in ("train", "val", "test"):
        x, y = data.split(split)
        if x is not None:
            data.set_split(split, adapt_images(x, data_cfg), y)
    return data


def count_classes(data_cfg) -> int | None:
    """How many classes the data has, without decoding any image: fixed by the config, the
    class folders (or class names in file names) of an image folder, or the classes of an image
    CSV's training file (None when that folder or file is not there)."""
    if data_cfg.fixed_classes is not None:
        return data_cfg.fixed_classes
    if data_cfg.loader == "image_csv":
        return len(csv_classes(data_cfg)) if Path(data_cfg.labels).is_file() else None
    root = Path(data_cfg.root)
    return len(scan_folder(root).classes) if root.is_dir() else None


def read_csv_for(
    data_cfg, csv: Path, num_classes: int, require_label: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """A Kaggle-format CSV read as a run's model takes it.

    The file holds images as the run's data config stores them (its raw shape); they are
    resized and converted as that config says, and labels must lie in 0..num_classes-1.
    """
    if not hasattr(data_cfg, "raw_shape"):
        raise DataError(
            f"{csv}: a CSV of pixels is for runs of arrays (mnist, kaggle_csv, cifar); this "
            f"run's data is {data_cfg.loader}: give it image files (`cnnlab predict`) or folders"
        )
    x, y = read_digits_csv(
        csv,
        image_shape=tuple(data_cfg.raw_shape),
        num_classes=num_classes,
        require_label=require_label,
    )
    return adapt_images(x, data_cfg), y


__all__ = [
    "LOADERS", "BadFilesError", "Dataset", "adapt_images", "count_classes",
    "describe_problems", "load_dataset", "read_csv_for",
]  # fmt: skip
