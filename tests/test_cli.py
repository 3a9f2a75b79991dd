"""The commands end to end, on tiny real training runs through the Typer app."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.config import load_config
from cnnlab.runs import new_run_dir

from .helpers import CONFIGS, invoke, only_run

RUN_FILES = {
    "config.yaml", "environment.json", "summary.txt", "model.keras", "last.keras",
    "history.csv", "metrics.json",
}  # fmt: skip


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """One small_cnn run on 600 real MNIST images, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("outputs")
    result = invoke(
        "train", CONFIGS / "mnist_small_cnn.yaml",
        "--set", f"output_dir={out}", "--set", "train.epochs=3", "--set", "train.verbose=0",
        "--set", "data.max_samples=600", "--set", "train.batch_size=32",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return only_run(out), result.output


def test_train_writes_the_run_directory(mnist_run):
    run_dir, output = mnist_run
    assert RUN_FILES <= {p.name for p in run_dir.iterdir()}
    assert run_dir.name.startswith("mnist_small_cnn-")
    assert f"run directory {run_dir}" in output
    assert "training on CPU" in output or "training on GPU" in output
    assert "540 train, 60 validation, 600 test images of 28x28x1, 10 classes" in output


def test_metrics_are_complete_and_consistent(mnist_run):
    run_dir, _ = mnist_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("train", "val", "test"):
        assert set(metrics[split]) == {"loss", "accuracy", "balanced_accuracy", "macro_f1"}
        # 3 epochs on 540 images learns something: far above the 10% of guessing.
        assert metrics[split]["accuracy"] > 0.5, split
    # The test score is the saved model's on the first 600 MNIST test digits, recomputed
    # here with Keras alone.
    import keras

    with np.load(CONFIGS.parent / "data" / "mnist.npz") as z:
        x_test, y_test = z["x_test"][:600, ..., None], z["y_test"][:600]
    probs = keras.models.load_model(run_dir / "model.keras").predict(x_test, verbose=0)
    assert metrics["test"]["accuracy"] == pytest.approx((probs.argmax(1) == y_test).mean())
    from sklearn.metrics import f1_score

    macro = f1_score(y_test, probs.argmax(1), labels=np.unique(y_test), average="macro")
    assert metrics["test"]["macro_f1"] == pytest.approx(macro)
    picked = np.clip(probs[np.arange(600), y_test].astype("float64"), 1e-15, 1)
    assert metrics["test"]["loss"] == pytest.approx(-np.log(picked).mean(), rel=1e-4)
    assert metrics["params"] == 104_202
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 3
    assert metrics["train_seconds"] > 0 and metrics["images_per_second"] > 0
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) == metrics["epochs_run"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"} <= set(history)
    monitored = history[metrics["monitor"]]
    # The first epoch that reached the best value (a later tie is no improvement).
    best = (monitored.idxmax() if metrics["monitor"] == "val_accuracy" else monitored.idxmin()) + 1
    assert metrics["best_epoch"] == best
    assert metrics["val"]["loss"] == pytest.approx(history["val_loss"][best - 1], rel=1e-4)


def test_resolved_config_and_environment_are_recorded(mnist_run):
    run_dir, _ = mnist_run
    cfg = load_config(run_dir / "config.yaml")
    assert cfg.train.epochs == 3 and cfg.data.max_samples == 600  # the overrides
    assert cfg.data.path.is_absolute()
    env = json.loads((run_dir / "environment.json").read_text())
    assert {"tensorflow", "keras", "python", "device", "seed", "command"} <= set(env)
    assert env["seed"] == 42
    assert "Total params: 104,202" in (run_dir / "summary.txt").read_text()


def test_evaluate_reproduces_the_training_split(mnist_run):
    run_dir, _ = mnist_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 0, result.output
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    # Same seed, same split, same model: the same numbers.
    assert evaluation["val"]["accuracy"] == pytest.approx(metrics["val"]["accuracy"], abs=1e-6)
    assert evaluation["test"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert json.loads(result.stdout) == evaluation
    assert "note: scoring val: " in result.stderr  # progress beside the JSON, not in it


def test_evaluate_on_a_labelled_csv(mnist_run, kaggle_dir):
    run_dir, _ = mnist_run
    result = invoke("evaluate", run_dir, "--csv", kaggle_dir / "test_labelled.csv")
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "evaluation-test_labelled.json").read_text())
    # The CSV's 50 rows are the first 50 MNIST test digits: score them with Keras alone.
    import keras

    frame = pd.read_csv(kaggle_dir / "test_labelled.csv")
    x = frame.drop(columns="label").to_numpy("uint8").reshape(-1, 28, 28, 1)
    probs = keras.models.load_model(run_dir / "model.keras").predict(x, verbose=0)
    expected = (probs.argmax(1) == frame["label"].to_numpy()).mean()
    assert saved["test"]["accuracy"] == pytest.approx(expected)
    assert saved["csv"] == str((kaggle_dir / "test_labelled.csv").resolve())


def test_predict_csv_writes_a_submission_and_never_overwrites(mnist_run, kaggle_dir, tmp_path):
    run_dir, _ = mnist_run
    out = tmp_path / "submission.csv"
    result = invoke("predict-csv", run_dir, kaggle_dir / "test.csv", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote 50 predictions to {out}" in result.output
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["ImageId", "Label"]
    assert sub["ImageId"].tolist() == list(range(1, 51))
    assert sub["Label"].between(0, 9).all()
    # The labels are the model's own predictions: scoring them against the answers agrees
    # with evaluating the same rows.
    score = invoke("data", "score", out, kaggle_dir / "test_labels.csv")
    assert score.exit_code == 0, score.output
    evaluation = json.loads(
        invoke("evaluate", run_dir, "--csv", kaggle_dir / "test_labelled.csv").output
    )
    assert f"accuracy {evaluation['test']['accuracy']:.4f} on 50 images" in score.output

    before = out.read_bytes()
    again = invoke("predict-csv", run_dir, kaggle_dir / "test.csv", "-o", out)
    assert again.exit_code == 1
    assert again.output.strip() == f"error: {out}: already exists; pass --overwrite to replace it"
    assert out.read_bytes() == before
    forced = invoke("predict-csv", run_dir, kaggle_dir / "test.csv", "-o", out, "--overwrite")
    assert forced.exit_code == 0, forced.output


def test_predict_csv_default_output_is_in_the_run(mnist_run, kaggle_dir):
    run_dir, _ = mnist_run
    result = invoke("predict-csv", run_dir, kaggle_dir / "test.csv")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(run_dir / "submission.csv")) == 50


def test_predict_csv_checks_the_shape_against_the_model(mnist_run, tmp_path):
    run_dir, _ = mnist_run
    bad = tmp_path / "small.csv"
    pd.DataFrame(np.zeros((3, 100), np.uint8), columns=[f"pixel{i}" for i in range(100)]).to_csv(
        bad, index=False
    )
    result = invoke("predict-csv", run_dir, bad, "-o", tmp_path / "sub.csv")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {bad}:1: found 100 pixel columns besides label/id, expected 784 "
        "(images of 28x28x1)"
    )
    assert not (tmp_path / "sub.csv").exists()


def test_kaggle_workflow_writes_a_submission(kaggle_dir, tmp_path):
    result = invoke(
        "train", CONFIGS / "mnist_kaggle_deep_cnn.yaml",
        "--set", f"data.train={kaggle_dir / 'train.csv'}",
        "--set", f"data.test={kaggle_dir / 'test.csv'}",
        "--set", f"output_dir={tmp_path}", "--set", "train.epochs=1", "--set", "train.verbose=0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"] is None  # the Kaggle test file has no labels
    assert metrics["params"] == 936_426
    sub = pd.read_csv(run_dir / "submission.csv")
    assert sub["ImageId"].tolist() == list(range(1, 51))
    score = invoke("data", "score", run_dir / "submission.csv", kaggle_dir / "test_labels.csv")
    assert score.exit_code == 0 and "on 50 images" in score.output


def test_mnist_to_kaggle_command(tmp_path, mnist_arrays):
    # A small MNIST file of the same layout: the conversion is the same for 60,000 images.
    npz = tmp_path / "mnist.npz"
    small = {k: v[:300] if k.endswith("train") else v[:70] for k, v in mnist_arrays.items()}
    np.savez_compressed(npz, **small)
    out = tmp_path / "kaggle"
    result = invoke("data", "mnist-to-kaggle", npz, out)
    assert result.exit_code == 0, result.output
    train_csv = pd.read_csv(out / "train.csv")
    assert list(train_csv.columns[:2]) == ["label", "pixel0"] and train_csv.shape == (300, 785)
    np.testing.assert_array_equal(train_csv["label"], small["y_train"])
    np.testing.assert_array_equal(
        train_csv.iloc[:, 1:].to_numpy(), small["x_train"].reshape(300, -1)
    )
    test_csv = pd.read_csv(out / "test.csv")
    assert test_csv.shape == (70, 784) and "label" not in test_csv
    np.testing.assert_array_equal(test_csv.to_numpy(), small["x_test"].reshape(70, -1))
    labels = pd.read_csv(out / "test_labels.csv")
    assert list(labels.columns) == ["ImageId", "Label"] and labels["ImageId"].tolist() == list(
        range(1, 71)
    )
    np.testing.assert_array_equal(labels["Label"], small["y_test"])
    again = invoke("data", "mnist-to-kaggle", npz, out)
    assert again.exit_code == 1 and "pass --overwrite" in again.output


def test_config_error_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {loader: mnist}\nmodel: {builder: small_cnn}\ntrain: {epoch: 3}\n")
    result = invoke("train", bad)
    assert result.exit_code == 2
    assert result.output == f"error: {bad}:3: unknown key 'train.epoch'; did you mean 'epochs'?\n"
    assert not (tmp_path / "outputs").exists()


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {loader: mnist}\nmodel: {builder: small_cnn}\ntrain: {epoch: 3}\n")
    result = CliRunner().invoke(app, ["--debug", "train", str(bad)])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "ConfigError"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "nowhere"], "error: nowhere: no such run directory"),
        (["predict-csv", "nowhere", "x.csv"], "error: nowhere: no such run directory"),
    ],
)
def test_missing_run_directory(args, message):
    result = invoke(*args)
    assert result.exit_code == 1 and result.output.strip() == message


def test_not_a_run_directory(tmp_path):
    result = invoke("evaluate", tmp_path)
    assert result.exit_code == 1
    assert (
        result.output.strip() == f"error: {tmp_path}: not a cnnlab run directory (no config.yaml)"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"cats": 0}', "expected a list of class names, each a non-empty string"),
        ('["cats", ""]', "expected a list of class names, each a non-empty string"),
        ("[0, 1]", "expected a list of class names, each a non-empty string"),
        ('["cats", "dogs", "cats"]', "the class name 'cats' is given twice"),
        ('["cats", ', "cannot read the class names: Expecting value: line 1 column 10 (char 9)"),
    ],
)
def test_a_damaged_classes_json_is_one_line_naming_it(tmp_path, text, problem):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text((CONFIGS / "mnist_mlp.yaml").read_text())
    (run / "classes.json").write_text(text)
    (tmp_path / "a.png").write_bytes(b"")
    for command in (["evaluate", run], ["predict", run, tmp_path / "a.png"]):
        result = invoke(*command)
        assert result.exit_code == 1
        assert result.output == f"error: {run / 'classes.json'}: {problem}\n"


def test_corrupt_model_is_reported_as_damaged(mnist_run, tmp_path):
    import shutil

    run_dir, _ = mnist_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    data = (copy / "model.keras").read_bytes()
    (copy / "model.keras").write_bytes(data[: len(data) // 2])
    result = invoke("evaluate", copy)
    assert result.exit_code == 1
    assert result.output.startswith(
        f"error: {copy / 'model.keras'}: damaged: not a complete .keras file"
    )
    assert "not found" not in result.output.lower()


def test_a_model_file_cut_anywhere_or_with_a_flipped_byte_is_damaged(mnist_run, tmp_path):
    from cnnlab.runs import load_model_file
    from cnnlab.utils.errors import RunDirError

    run_dir, _ = mnist_run
    data = (run_dir / "last.keras").read_bytes()
    assert load_model_file(run_dir / "last.keras").count_params() == 104_202
    cut = tmp_path / "last.keras"
    # 300 cut points spread over the file, the first and last bytes included.
    for size in sorted({0, 1, len(data) - 1, *range(0, len(data), len(data) // 300 + 1)}):
        cut.write_bytes(data[:size])
        with pytest.raises(RunDirError, match=r"damaged: not a complete \.keras file"):
            load_model_file(cut)
    # A flipped byte inside the weights: the member's checksum fails.
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    cut.write_bytes(bytes(flipped))
    with pytest.raises(RunDirError, match="damaged"):
        load_model_file(cut)


def test_runs_never_share_a_directory(tmp_path):
    cfg = load_config(CONFIGS / "mnist_mlp.yaml", [f"output_dir={tmp_path}"])
    now = datetime(2026, 1, 2, 3, 4, 5)
    first, second = new_run_dir(cfg, now), new_run_dir(cfg, now)
    assert first != second
    assert first.name == "mnist_mlp-20260102-030405"
    assert second.name == "mnist_mlp-20260102-030405-2"
    assert load_config(first / "config.yaml") == cfg


def test_output_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("train", CONFIGS / "mnist_mlp.yaml", "--set", f"output_dir={blocker}/runs")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: output_dir {blocker}/runs: cannot create it: Not a directory"
    )


def fake_run_folder(root) -> None:
    """A folder holding one run directory with only its config: enough for compare's table."""
    (root / "run").mkdir(parents=True)
    (root / "run" / "config.yaml").write_text("data: {loader: mnist}\nmodel: {builder: mlp}\n")


def test_a_file_that_cannot_be_written_is_named(tmp_path):
    fake_run_folder(tmp_path / "runs")
    out = tmp_path / "gone" / "table.csv"
    result = invoke("compare", tmp_path / "runs", "--csv", out)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"error: {out}: No such file or directory"


@pytest.mark.subprocess
def test_a_full_disk_names_the_file_being_written(tmp_path):
    import resource
    import signal
    import subprocess
    import sys

    def small_files():  # writes past 100 bytes fail as on a full disk (EFBIG, not a signal)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))

    fake_run_folder(tmp_path / "runs")
    out = tmp_path / "table.csv"
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "compare", tmp_path / "runs", "--csv", out],
        capture_output=True, text=True, preexec_fn=small_files, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"error: {out}: File too large"
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "runs"]


def test_check_gives_the_train_command_with_every_set(tmp_path):
    import shlex

    sets = ["data.max_samples=200", "output_dir=" + str(tmp_path / "my runs")]
    result = invoke("check", CONFIGS / "mnist_mlp.yaml", *[w for s in sets for w in ("--set", s)])
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("ok: ")]
    command = line.split("`")[1]
    assert shlex.split(command) == [
        "cnnlab",
        "train",
        str(CONFIGS / "mnist_mlp.yaml"),
        "--set",
        sets[0],
        "--set",
        sets[1],
    ]
