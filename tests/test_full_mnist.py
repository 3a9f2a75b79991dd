"""Full-dataset runs of the shipped configs against their published accuracy (minutes each).

python -m pytest -m slow
"""

from __future__ import annotations

import json

import pytest

from .helpers import CONFIGS, MNIST_NPZ, invoke_ok

pytestmark = pytest.mark.slow


def train(config, out, *overrides):
    invoke_ok("train", CONFIGS / config, "--set", f"output_dir={out}", "--set", "train.verbose=2",
           *overrides)  # fmt: skip
    (run_dir,) = out.iterdir()
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize(
    ("config", "target"), [("mnist_mlp.yaml", 0.98), ("mnist_small_cnn.yaml", 0.99)]
)
def test_mnist_test_accuracy(tmp_path, config, target):
    _, metrics = train(config, tmp_path)
    assert metrics["test"]["accuracy"] >= target


def kaggle_accuracy(config: str, tmp_path) -> float:
    """Train `config` on MNIST as Kaggle CSVs; score its submission for the unlabelled test.csv."""
    kaggle = tmp_path / "kaggle"
    invoke_ok("data", "mnist-to-kaggle", MNIST_NPZ, kaggle)
    run_dir, _ = train(
        config, tmp_path / "runs",
        "--set", f"data.train={kaggle / 'train.csv'}", "--set", f"data.test={kaggle / 'test.csv'}",
    )  # fmt: skip
    submission = tmp_path / "submission.csv"
    invoke_ok("predict-csv", run_dir, kaggle / "test.csv", "-o", submission)
    score = invoke_ok("data", "score", submission, kaggle / "test_labels.csv").output
    return float(score.split()[1])


def test_kaggle_workflow_deep_cnn(tmp_path):
    assert kaggle_accuracy("mnist_kaggle_deep_cnn.yaml", tmp_path) >= 0.992


def test_fast_recipe_reaches_99_5_from_the_kaggle_csv(tmp_path):
    assert kaggle_accuracy("mnist_fast.yaml", tmp_path) >= 0.995


def test_best_recipe_single_model(tmp_path):
    _, metrics = train("mnist_best.yaml", tmp_path)
    assert metrics["test"]["accuracy"] >= 0.9965
