"""The colour recipes on real photos against their targets (tens of minutes each on a CPU).

python -m pytest -m slow tests/test_photo_recipes.py

Uses the real images in ../shared/data beside the checkout (see its README): the CIFAR-10
training JPEGs (10% of them held out as the test set) and the Kaggle Dogs vs. Cats photos,
from which `cnnlab data cats-vs-dogs-subset` makes Chollet's 1,000/500/1,000 split.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import CONFIGS, invoke_ok, unpack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory) -> Path:
    return unpack("cifar10-train-jpg.tar.gz", tmp_path_factory.mktemp("cifar10"))


@pytest.fixture(scope="module")
def cats_vs_dogs(tmp_path_factory) -> Path:
    photos = unpack("dogs-vs-cats-train-200px.tar", tmp_path_factory.mktemp("photos"))
    subset = tmp_path_factory.mktemp("subset") / "cats_vs_dogs_small"
    invoke_ok("data", "cats-vs-dogs-subset", photos / "train", subset)
    return subset


def recipe_accuracy(config: str, root: Path, out: Path, split: str) -> float:
    invoke_ok("train", CONFIGS / config, "--set", f"data.root={root}", "--set", f"output_dir={out}")
    (run_dir,) = out.iterdir()
    return json.loads((run_dir / "metrics.json").read_text())[split]["accuracy"]


@pytest.mark.parametrize(
    ("config", "data", "target", "split"),
    [
        ("cifar10_alexnet_lite.yaml", "cifar10", 0.65, "test"),
        ("cifar10_deep_cnn.yaml", "cifar10", 0.85, "test"),
        # The airbench recipes hold out 10% of the training images, their only score here. On
        # these JPEGs airbench's own airbench94 script scores 0.903 (3 seeds, docs/index.md):
        # the target is to come within 0.5 points of it (airbench93: 0.890, one seed).
        ("cifar10_airbench94.yaml", "cifar10", 0.898, "val"),
        ("cifar10_airbench93.yaml", "cifar10", 0.885, "val"),
        # airbench94_muon's method: 0.9056 here (seed 42, docs/index.md), at least airbench94's.
        ("cifar10_airbench94_muon.yaml", "cifar10", 0.900, "val"),
        ("catsdogs_convnet.yaml", "cats_vs_dogs", 0.75, "test"),
        ("catsdogs_convnet_aug.yaml", "cats_vs_dogs", 0.84, "test"),
        ("catsdogs_best.yaml", "cats_vs_dogs", 0.91, "test"),
    ],
)
def test_photo_recipe_reaches_its_target(request, tmp_path, config, data, target, split):
    root = request.getfixturevalue(data)  # the CIFAR-10 folders or the cats-vs-dogs split
    assert recipe_accuracy(config, root, tmp_path, split) >= target
