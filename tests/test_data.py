"""Loaders, the validation split and the MNIST → Kaggle conversion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnnlab.config.data import KaggleCsvData, MnistData
from cnnlab.data import load_dataset
from cnnlab.data.dataset import split_validation
from cnnlab.data.mnist import mnist_to_kaggle, read_mnist_npz
from cnnlab.utils.errors import DataError

from .helpers import MNIST_NPZ


def test_mnist_loader_reads_the_bundled_file():
    data = load_dataset(MnistData(loader="mnist", path=MNIST_NPZ, max_samples=1000), seed=1)
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10
    assert data.x_train.dtype == np.uint8
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (900, 100, 1000)
    assert len(data.y_test) == 1000


def test_full_bundled_mnist_has_the_published_sizes():
    (x, y), (xt, yt) = read_mnist_npz(MNIST_NPZ)
    assert x.shape == (60000, 28, 28, 1) and xt.shape == (10000, 28, 28, 1)
    assert np.bincount(y).tolist()[:3] == [5923, 6742, 5958]


def test_split_is_stratified_and_repeatable():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 100)
    x = rng.integers(0, 255, (1000, 4, 4, 1), dtype=np.uint8)
    a = split_validation(x, y, 0.2, seed=3)
    b = split_validation(x, y, 0.2, seed=3)
    c = split_validation(x, y, 0.2, seed=4)
    np.testing.assert_array_equal(a[2], b[2])
    assert not np.array_equal(a[2], c[2])
    assert np.bincount(a[3]).tolist() == [20] * 10  # every class in proportion
    assert len(a[0]) + len(a[2]) == 1000


def test_split_of_a_tiny_set_still_works():
    x = np.zeros((12, 2, 2, 1), np.uint8)
    y = np.arange(12) % 10  # classes 2..9 appear once: cannot stratify
    xt, yt, xv, yv = split_validation(x, y, 0.1, seed=0)
    assert (len(xt), len(xv)) == (10, 2)


def test_split_that_leaves_nothing_is_refused():
    with pytest.raises(DataError, match="leaves no validation or training data"):
        split_validation(np.zeros((1, 2, 2, 1)), np.zeros(1), 0.5, seed=0)


def test_kaggle_loader_with_labelled_and_unlabelled_test(kaggle_dir):
    base = {"loader": "kaggle_csv", "train": kaggle_dir / "train.csv"}
    data = load_dataset(KaggleCsvData(**base, test=kaggle_dir / "test.csv"), seed=0)
    assert (len(data.x_train), len(data.x_val)) == (360, 40)
    assert data.x_test.shape == (50, 28, 28, 1) and data.y_test is None
    labelled = load_dataset(KaggleCsvData(**base, test=kaggle_dir / "test_labelled.csv"), seed=0)
    assert labelled.y_test is not None and len(labelled.y_test) == 50


def test_kaggle_loader_with_a_validation_file(kaggle_dir):
    cfg = KaggleCsvData(
        loader="kaggle_csv",
        train=kaggle_dir / "train.csv",
        validation=kaggle_dir / "test_labelled.csv",
    )
    data = load_dataset(cfg, seed=0)
    assert (len(data.x_train), len(data.x_val)) == (400, 50)


def test_mnist_to_kaggle_round_trip(tmp_path, mnist_arrays):
    small = tmp_path / "small.npz"
    np.savez(
        small,
        x_train=mnist_arrays["x_train"][:30], y_train=mnist_arrays["y_train"][:30],
        x_test=mnist_arrays["x_test"][:20], y_test=mnist_arrays["y_test"][:20],
    )  # fmt: skip
    files = mnist_to_kaggle(small, tmp_path / "kaggle")
    train = pd.read_csv(files["train"])
    assert list(train.columns[:2]) == ["label", "pixel0"] and train.shape == (30, 785)
    test = pd.read_csv(files["test"])
    assert test.shape == (20, 784) and "label" not in test.columns
    answers = pd.read_csv(files["test_labels"])
    assert answers["ImageId"].tolist() == list(range(1, 21))
    assert answers["Label"].tolist() == mnist_arrays["y_test"][:20].tolist()
    data = load_dataset(
        KaggleCsvData(loader="kaggle_csv", train=files["train"], test=files["test"]), seed=0
    )
    assert data.x_test[..., 0].tolist() == mnist_arrays["x_test"][:20].tolist()
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        mnist_to_kaggle(small, tmp_path / "kaggle")
    mnist_to_kaggle(small, tmp_path / "kaggle", overwrite=True)


def test_bad_npz_is_reported(tmp_path):
    np.savez(tmp_path / "other.npz", images=np.zeros(3))
    with pytest.raises(DataError, match="not an MNIST archive"):
        read_mnist_npz(tmp_path / "other.npz")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="cannot read as .npz"):
        read_mnist_npz(tmp_path / "broken.npz")
