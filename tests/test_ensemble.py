"""Ensembles: `train --seeds`, and `evaluate` / `predict-csv` with several runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnlab.config import load_config

from . import helpers
from .helpers import CONFIGS


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    from typer.testing import CliRunner

    from cnnlab.cli import app

    out = tmp_path_factory.mktemp("ensemble")
    args = ["train", str(CONFIGS / "mnist_small_cnn.yaml"), *helpers.quick(out), "--seeds", "1,2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = sorted(p.parent for p in out.glob("*/metrics.json"))
    return runs, result.output


def probabilities(run_dir: Path, x: np.ndarray) -> np.ndarray:
    import keras

    return keras.models.load_model(run_dir / "model.keras").predict(x, verbose=0)


def test_seeds_train_one_run_per_seed(members):
    runs, output = members
    assert len(runs) == 2
    assert sorted(load_config(r / "config.yaml").seed for r in runs) == [1, 2]
    assert re.search(r"cnnlab evaluate \S+ \S+", output)


def test_ensemble_evaluation_averages_probabilities(members, cli, mnist_arrays, tmp_path):
    runs, _ = members
    out = tmp_path / "ensemble.json"
    result = cli("evaluate", *runs, "-o", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert json.loads(result.output) == report
    # The runs' own test set: max_samples=300 of the MNIST test images.
    x, y = mnist_arrays["x_test"][:300], mnist_arrays["y_test"][:300]
    probs = [probabilities(r, x) for r in runs]
    expected = float((np.mean(probs, axis=0).argmax(axis=1) == y).mean())
    assert report["test"]["accuracy"] == pytest.approx(expected)
    for member, run_dir, p in zip(report["members"], runs, probs, strict=True):
        assert member["run"] == str(run_dir)
        own = json.loads((run_dir / "metrics.json").read_text())["test"]
        assert member["accuracy"] == pytest.approx(own["accuracy"], abs=1e-6)
        assert member["accuracy"] == pytest.approx(float((p.argmax(axis=1) == y).mean()))
        assert member["loss"] == pytest.approx(own["loss"], rel=1e-3)
    # Nothing is written into the members.
    assert not any((r / "evaluation.json").exists() for r in runs)


def test_ensemble_submission_is_the_argmax_of_the_mean(members, cli, kaggle_dir, tmp_path):
    runs, _ = members
    out = tmp_path / "sub.csv"
    result = cli("predict-csv", *runs, kaggle_dir / "test.csv", "-o", out)
    assert result.exit_code == 0, result.output
    assert "average of 2 runs" in result.output
    x = pd.read_csv(kaggle_dir / "test.csv").to_numpy(np.uint8).reshape(-1, 28, 28, 1)
    expected = np.mean([probabilities(r, x) for r in runs], axis=0).argmax(axis=1)
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["ImageId", "Label"]
    np.testing.assert_array_equal(sub["Label"], expected)


def test_ensemble_default_output_is_in_the_working_directory(
    members, cli, kaggle_dir, tmp_path, monkeypatch
):
    runs, _ = members
    monkeypatch.chdir(tmp_path)
    assert cli("predict-csv", *runs, kaggle_dir / "test.csv").exit_code == 0
    assert (tmp_path / "submission-ensemble.csv").is_file()
    again = cli("predict-csv", *runs, kaggle_dir / "test.csv")
    assert again.exit_code == 1 and "already exists" in again.output


def test_runs_of_different_data_have_no_common_test_set(members, cli, tmp_path, quick):
    runs, _ = members
    other = cli("train", CONFIGS / "mnist_small_cnn.yaml", *quick(tmp_path, samples=200, epochs=1))
    assert other.exit_code == 0, other.output
    (odd,) = [p.parent for p in tmp_path.glob("*/metrics.json")]
    result = cli("evaluate", runs[0], odd)
    assert result.exit_code == 1
    assert f"{odd}: its data config differs" in result.output


def test_members_must_share_input_and_classes(members, cli, tmp_path, quick, kaggle_dir):
    runs, _ = members
    mlp = cli(
        "train", CONFIGS / "mnist_small_cnn.yaml", *quick(tmp_path / "mlp", samples=200, epochs=1),
        "--set", "model={builder: mlp, units: [8]}",
    )  # fmt: skip
    assert mlp.exit_code == 0, mlp.output
    # Same task, another builder: a fine ensemble.
    (mlp_run,) = [p.parent for p in (tmp_path / "mlp").glob("*/metrics.json")]
    mixed = cli("predict-csv", runs[0], mlp_run, kaggle_dir / "test.csv", "-o", tmp_path / "s.csv")
    assert mixed.exit_code == 0, mixed.output
    # Eleven classes: not the same task.
    eleven = cli(
        "train", CONFIGS / "mnist_kaggle_deep_cnn.yaml",
        *quick(tmp_path / "eleven", samples=200, epochs=1),
        "--set", f"data.train={kaggle_dir / 'train.csv'}", "--set", "data.test=null",
        "--set", "data.num_classes=11",
        "--set", "model={builder: mlp, units: [8]}", "--set", "train.batch_size=64",
    )  # fmt: skip
    assert eleven.exit_code == 0, eleven.output
    (eleven_run,) = [p.parent for p in (tmp_path / "eleven").glob("*/metrics.json")]
    result = cli("predict-csv", runs[0], eleven_run, kaggle_dir / "test.csv", "-o", tmp_path / "e")
    assert result.exit_code == 1
    assert f"{eleven_run}: its model's number of classes 11 differs" in result.output
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "1,x"], "--seeds: 'x' is not an integer"),
        (["--seeds", "3,3"], "--seeds: seed 3 is given twice"),
        (["--seeds", "1", "--resume", "."], "cannot be combined with --resume"),
    ],
)
def test_bad_seeds(cli, args, message):
    result = cli("train", CONFIGS / "mnist_small_cnn.yaml", *args)
    assert result.exit_code != 0
    assert message in result.output


def test_output_is_for_ensembles_only(members, cli, tmp_path):
    runs, _ = members
    result = cli("evaluate", runs[0], "-o", tmp_path / "x.json")
    assert result.exit_code == 1 and "--output is for several runs" in result.output
