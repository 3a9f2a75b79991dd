"""Dataset loaders: `LOADERS[cfg.data.loader](cfg.data, seed)` returns a Dataset.

The registry key is the `data.loader` name in YAML and the function's name; the config schema
for each lives in cnnlab.config.DATA_SCHEMAS under the same key.
"""

from cnnlab.data.cifar import cifar10, cifar100
from cnnlab.data.dataset import Dataset, adapt_images
from cnnlab.data.image_dir import image_dir
from cnnlab.data.kaggle_csv import kaggle_csv
from cnnlab.data.mnist import mnist

LOADERS = {
    "mnist": mnist,
    "kaggle_csv": kaggle_csv,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "image_dir": image_dir,
}


def load_dataset(data_cfg, seed: int) -> Dataset:
    """Load the dataset a config's `data` block describes, resized/converted as it asks."""
    data = LOADERS[data_cfg.loader](data_cfg, seed)
    for split in ("train", "val", "test"):
        x = getattr(data, f"x_{split}")
        if x is not None:
            setattr(data, f"x_{split}", adapt_images(x, data_cfg))
    return data


__all__ = ["LOADERS", "Dataset", "adapt_images", "load_dataset"]
