"""Dataset loaders: `LOADERS[cfg.data.loader](cfg.data, seed)` returns a Dataset.

The registry key is the `data.loader` name in YAML and the function's name; the config schema
for each lives in cnnlab.config.DATA_SCHEMAS under the same key.
"""

from cnnlab.data.dataset import Dataset
from cnnlab.data.kaggle_csv import kaggle_csv
from cnnlab.data.mnist import mnist

LOADERS = {"mnist": mnist, "kaggle_csv": kaggle_csv}


def load_dataset(data_cfg, seed: int) -> Dataset:
    """Load the dataset a config's `data` block describes."""
    return LOADERS[data_cfg.loader](data_cfg, seed)


__all__ = ["LOADERS", "Dataset", "load_dataset"]
