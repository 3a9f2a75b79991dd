"""Imbalanced classes: class weights, balanced sampling, balanced accuracy and macro-F1, and the
warning of `check` and `train`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cnnlab.config import TrainConfig
from cnnlab.data.dataset import imbalance
from cnnlab.data.pipeline import ArrayBatches, BatchPlan, epoch_order
from cnnlab.inference import scores
from cnnlab.training.phases import class_weights
from cnnlab.utils.errors import ConfigError

from .helpers import invoke, invoke_ok, only_run
from .images import write_class_folders


def test_balanced_accuracy_and_macro_f1_weigh_classes_alike():
    y = np.array([0] * 8 + [1] * 2)
    always_zero = np.tile([0.9, 0.1], (10, 1))
    result = scores(always_zero, y)
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["balanced_accuracy"] == pytest.approx(0.5)  # recalls 1 and 0
    assert result["macro_f1"] == pytest.approx((2 * 0.8 / 1.8 + 0) / 2)  # F1 of 0, then of 1


def test_balanced_sampling_makes_classes_equally_likely():
    labels = np.array([0] * 900 + [1] * 100)
    order = epoch_order(len(labels), seed=3, epoch=2, labels=labels)
    assert len(order) == 1000
    assert 0.45 < labels[order].mean() < 0.55
    np.testing.assert_array_equal(order, epoch_order(1000, 3, 2, labels))  # seeded
    assert not np.array_equal(order, epoch_order(1000, 3, 3, labels))  # each epoch anew


def test_class_weights_balanced_as_scikit_learn_and_by_name():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 30 + [1] * 6 + [2] * 4)
    balanced = class_weights(TrainConfig(class_weight="balanced"), y, ["a", "b", "c"])
    np.testing.assert_allclose(
        balanced, compute_class_weight("balanced", classes=np.arange(3), y=y)
    )
    named = class_weights(TrainConfig(class_weight={"c": 5.0}), y, ["a", "b", "c"])
    np.testing.assert_allclose(named, [1.0, 1.0, 5.0])
    assert class_weights(TrainConfig(), y, ["a", "b", "c"]) is None
    with pytest.raises(ConfigError, match="no class named 'd'; the classes are a, b, c"):
        class_weights(TrainConfig(class_weight={"d": 2.0}), y, ["a", "b", "c"])


def test_batches_carry_each_images_class_weight():
    x = np.zeros((10, 2, 2, 1), np.uint8)
    y = np.array([0] * 8 + [1] * 2)
    batches = ArrayBatches(x, y, 4, BatchPlan(seed=1, class_weights=np.array([0.5, 2.0])))
    images, labels, weights = batches[0]
    np.testing.assert_allclose(weights, np.where(labels == 1, 2.0, 0.5))


def test_imbalance_is_named_above_three_to_one():
    assert imbalance(np.array([0] * 30 + [1] * 10), ["cats", "dogs"]) is None
    said = imbalance(np.array([0] * 31 + [1] * 10), ["cats", "dogs"])
    assert "cats 31 against dogs 10 (3.1x)" in said and "train.class_weight" in said


@pytest.fixture(scope="module")
def uneven(tmp_path_factory, mnist_arrays):
    """Cats vs dogs photos at 8:1, and a config for them (one sigmoid unit: two classes)."""
    tmp = tmp_path_factory.mktemp("uneven")
    root = tmp / "photos"
    write_class_folders(root, mnist_arrays, 32, classes=("cats",))
    write_class_folders(root, mnist_arrays, 4, classes=("x", "dogs"))
    (root / "x").rename(tmp / "unused")  # write_class_folders gives class i digit i
    config = tmp / "uneven.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [24, 24], validation_split: 0.25}}\n"
        "model: {builder: small_cnn, filters: [8]}\n"
        "train: {epochs: 2, batch_size: 8, verbose: 0, early_stopping: null}\n"
        f"output_dir: {tmp / 'out'}\n"
    )
    return config, tmp


def test_check_warns_of_imbalance_and_names_the_keys(uneven):
    config, _ = uneven
    result = invoke_ok("check", config)
    assert "warning: imbalanced classes in train: cats" in result.output
    assert "train.class_weight: balanced" in result.output
    quiet = invoke_ok("check", config, "--set", "train.class_weight=balanced")
    assert "imbalanced" not in quiet.output
    wrong = invoke("check", config, "--set", "train.class_weight={kittens: 2}")
    assert wrong.exit_code == 2
    assert "train.class_weight: no class named 'kittens'" in wrong.output


@pytest.mark.parametrize("keys", [["train.class_weight=balanced"], ["data.sampling=balanced"]])
def test_a_weighted_or_balanced_run_scores_macro_f1(uneven, keys, tmp_path):
    config, _ = uneven
    sets = [item for key in keys for item in ("--set", key)]
    result = invoke_ok("train", config, "--set", f"output_dir={tmp_path}", *sets)
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("train", "val"):
        assert 0 <= metrics[split]["macro_f1"] <= 1
        assert 0 <= metrics[split]["balanced_accuracy"] <= 1
    if keys == ["train.class_weight=balanced"]:
        assert re.search(r"class weights: cats 0\.\d+, dogs [1-9]", result.output), result.output
    assert "imbalanced classes in train" not in result.output  # compensated: no warning
    assert "macro F1" in (run / "report.html").read_text()
