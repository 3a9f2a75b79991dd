"""`cnnlab lr-find`: the suggestion from a smoothed loss curve, its refusals, and a real range
test that writes only its own folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cnnlab.commands.lr_find import suggest

from .helpers import MNIST_NPZ, invoke, invoke_ok

RATES = list(np.logspace(-7, 0, 100))


def test_the_suggestion_is_the_steepest_fall_before_the_lowest_loss():
    logs = np.log10(RATES)
    # Flat, falling fastest at 1e-3, lowest at 1e-1, then a climb that is steeper still.
    curve = 2.3 - 1.0 / (1 + np.exp(-(logs + 3) * 3)) + np.where(logs > -1, (logs + 1) * 20, 0)
    rate, reason = suggest(RATES, list(curve))
    assert 3e-4 < rate < 3e-3
    assert "below the lowest loss at 0.087" in reason


def test_a_small_fall_is_still_a_suggestion():
    # A hard task's first steps: the loss falls 1.1% (1.605 -> 1.588) from 1e-4 to 2e-3,
    # then climbs away.
    logs = np.log10(RATES)
    fall = 0.017 / (1 + np.exp(-(logs + 3.2) * 4))
    curve = 1.605 - fall + np.where(logs > -2.5, (logs + 2.5) * 3, 0)
    rate, reason = suggest(RATES, list(curve))
    assert 1e-4 < rate < 2e-3
    assert "small fall" in reason and "lower --min" not in reason


def test_no_suggestion_when_the_loss_never_falls_or_diverges_at_once():
    rate, reason = suggest(RATES, [2.3] * 100)
    assert rate is None and "never fell" in reason
    rising = list(2.3 + np.arange(100) * 0.1)
    rate, reason = suggest(RATES, rising)
    assert rate is None and "diverged from the start" in reason and "--min" in reason
    rate, reason = suggest(RATES, [2.3, 2.2, 9.0] + [float("nan")] * 97)
    assert rate is None and "diverged after 3 steps" in reason


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "digits.yaml"
    path.write_text(
        f"data: {{loader: mnist, path: {MNIST_NPZ}, max_samples: 2000}}\n"
        "model: {builder: small_cnn, filters: [8, 16]}\n"
        "train: {batch_size: 32, optimizer: sgd, momentum: 0.9}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    return path


def test_a_range_test_writes_its_folder_and_suggests_a_rate(config, tmp_path):
    result = invoke_ok("lr-find", config, "--steps", "40", "--min", "1e-4", "--max", "3")
    (folder,) = (tmp_path / "out").iterdir()
    assert folder.name.startswith("digits-lr-find-")
    assert sorted(p.name for p in folder.iterdir()) == [
        "lr_find.csv",
        "lr_find.json",
        "lr_find.png",
    ]
    record = json.loads((folder / "lr_find.json").read_text())
    curve = pd.read_csv(folder / "lr_find.csv")
    assert record["steps"] == len(curve) <= 40 and record["optimizer"] == "sgd"
    assert curve["learning_rate"].is_monotonic_increasing
    assert curve["learning_rate"].iloc[0] == pytest.approx(1e-4)
    rate = record["suggested_learning_rate"]
    assert rate is not None, record["reason"]
    assert 1e-4 < rate < curve["learning_rate"].iloc[curve["smoothed_loss"].idxmin()]
    assert f"--set train.learning_rate={rate:.3g}" in result.output


def test_bad_ranges_and_a_used_folder_are_refused(config, tmp_path):
    result = invoke("lr-find", config, "--min", "1", "--max", "0.1")
    assert result.exit_code == 1 and "need 0 < min < max" in result.output
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    result = invoke("lr-find", config, "-o", used)
    assert result.exit_code != 0 and "not empty" in result.output
    assert (used / "keep.txt").read_text() == "mine"
