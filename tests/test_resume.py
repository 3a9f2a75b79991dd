"""Nothing lost: kill-and-resume, atomic files, NaN stops, determinism."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cnnlab.utils.atomic import atomic_path
from cnnlab.utils.errors import CnnlabError

from .helpers import CONFIGS, ROOT, invoke

# Two phases, the second with another optimizer: a kill in phase 2 must resume in phase 2.
PHASES = "[{epochs: 1}, {epochs: 3, optimizer: sgd, learning_rate: 0.01}]"
SMALL = [
    "--set", "data.max_samples=1500", "--set", "train.batch_size=32", "--set", "train.verbose=0",
    "--set", f"train.phases={PHASES}",
]  # fmt: skip


def metrics_of(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def kill_after_two_epochs(config, out, *extra) -> dict:
    """Start `cnnlab train` in a process of its own and SIGKILL it as its third epoch starts."""
    cmd = [
        sys.executable, "-m", "cnnlab", "train", str(config), *SMALL, "--set", f"output_dir={out}",
        *map(str, extra),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, record_file = time.monotonic() + 240, None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(out.glob("*/.resume/progress.json"))
            # Epoch 2 is the first of phase 2: kill it with phase 2 under way.
            if found and json.loads(found[0].read_text())["epoch"] >= 2:
                record_file = found[0]
                break
            time.sleep(0.01)
        assert record_file is not None, "training never finished its second epoch"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    record = json.loads(record_file.read_text())
    assert record["epoch"] in (2, 3)
    return record


MLP = ("--set", "data.max_samples=3000", "--set", "model.units=[64]")


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A small MLP over 2,700 images (epochs short enough to be cheap, long enough for the kill
    to land in epoch 3), tracked in a local MLflow store, killed in its second phase. The tests
    below that need it as it was killed come before those that resume it."""
    tmp = tmp_path_factory.mktemp("killed")
    out, mlruns = tmp / "killed", tmp / "mlruns"
    record = kill_after_two_epochs(CONFIGS / "mnist_mlp.yaml", out, *MLP, "--mlflow", mlruns)
    (run_dir,) = out.iterdir()
    mlflow_run = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    return SimpleNamespace(run_dir=run_dir, record=record, mlruns=mlruns, mlflow_run=mlflow_run)


@pytest.fixture(scope="module")
def resumed(killed):
    """The killed run, resumed to its end: the output of `cnnlab train --resume`."""
    result = invoke("train", "--resume", killed.run_dir)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The same config trained without a kill."""
    out = tmp_path_factory.mktemp("whole")
    result = invoke("train", CONFIGS / "mnist_mlp.yaml", *SMALL, *MLP, "--set", f"output_dir={out}")
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    return run_dir


@pytest.mark.subprocess
def test_a_killed_run_is_left_interrupted_in_its_phase(killed):
    assert (killed.record["phase"], killed.record["phase_done"]) == (1, False)
    assert not (killed.run_dir / "metrics.json").exists()
    listed = invoke("compare", killed.run_dir.parent)
    assert killed.run_dir.name in listed.output and "interrupted" in listed.output


@pytest.mark.subprocess
def test_resuming_with_another_config_is_refused_and_changes_nothing(killed):
    changed = invoke(
        "train", CONFIGS / "mnist_mlp.yaml", *SMALL, *MLP, "--set", "train.batch_size=64",
        "--set", f"output_dir={killed.run_dir.parent}", "--resume", killed.run_dir,
        "--mlflow", killed.mlruns,
    )  # fmt: skip
    assert changed.exit_code == 1
    assert "cannot resume with a different config (train.batch_size: 32 -> 64)" in changed.output
    record = json.loads((killed.run_dir / ".resume" / "progress.json").read_text())
    assert record == killed.record  # untouched


@pytest.mark.subprocess
@pytest.mark.precision
def test_killed_run_resumes_in_its_phase_to_the_same_end(killed, resumed, whole):
    run_dir = killed.run_dir
    assert f"resuming {run_dir}" in resumed
    a, b = metrics_of(run_dir), metrics_of(whole)
    assert a["epochs_run"] == b["epochs_run"] == 4 and a["resumed"] and not b["resumed"]
    assert [p["epochs_run"] for p in a["phases"]] == [1, 3]
    assert [p["optimizer"] for p in a["phases"]] == ["adam", "sgd"]
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert history["phase"].tolist() == [1, 2, 2, 2]
    # model.keras is still the most accurate epoch of all four, not the last one written.
    assert a["best_epoch"] == int(history["val_accuracy"].idxmax()) + 1
    assert a["val"]["accuracy"] == pytest.approx(history["val_accuracy"].max(), abs=1e-6)
    assert a["test"]["accuracy"] > 0.7  # it learned (chance: 0.1)
    assert a["test"]["accuracy"] == pytest.approx(b["test"]["accuracy"], abs=0.03)
    assert json.loads((run_dir / "state.json").read_text())["state"] == "completed"
    assert not (run_dir / ".resume").exists()  # no use for a backup once complete
    again = invoke("train", "--resume", run_dir)
    assert again.exit_code == 1 and "already completed" in again.output


@pytest.mark.subprocess
def test_a_resumed_run_continues_its_mlflow_run(killed, resumed):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{killed.mlruns / 'mlflow.db'}")
    (tracked_run,) = client.search_runs([client.get_experiment_by_name("mnist_mlp").experiment_id])
    assert tracked_run.info.run_id == killed.mlflow_run and tracked_run.info.status == "FINISHED"
    assert f"MLflow run {killed.mlflow_run} continues" in resumed
    losses = client.get_metric_history(killed.mlflow_run, "loss")
    # Epoch 3 may have been logged before the kill and again after: the same step.
    assert {m.step for m in losses} == {1, 2, 3, 4}
    history = pd.read_csv(killed.run_dir / "history.csv")
    for step, loss in enumerate(history["loss"], 1):
        assert any(m.value == pytest.approx(loss) for m in losses if m.step == step)
    accuracy = metrics_of(killed.run_dir)["test"]["accuracy"]
    assert tracked_run.data.metrics["final_test_accuracy"] == pytest.approx(accuracy)


@pytest.mark.precision
def test_a_resumed_run_repeats_the_whole_run(tmp_path):
    """Stopped as its second epoch begins and resumed, a run without dropout ends with the
    weights of the run trained whole: the same batches in the same order, in any precision."""
    import keras

    from cnnlab.config import load_config
    from cnnlab.runs import LAST_MODEL, load_model_file
    from cnnlab.training.trainer import train

    class StopAtSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    def config(out):
        overrides = ["data.max_samples=300", "train.epochs=2", "train.verbose=0",
                     "model.dropout=0.0", "model.filters=[8, 16]", f"output_dir={out}"]  # fmt: skip
        return load_config(CONFIGS / "mnist_small_cnn.yaml", overrides)

    whole = train(config(tmp_path / "whole"))
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "stopped"), callbacks=[StopAtSecondEpoch()])
    (stopped,) = (tmp_path / "stopped").iterdir()
    assert json.loads((stopped / "state.json").read_text())["state"] == "interrupted"
    resumed = train(config(tmp_path / "stopped"), resume=stopped)
    a, b = (pd.read_csv(d / "history.csv") for d in (resumed, whole))
    assert a["loss"].tolist() == b["loss"].tolist() and len(a) == 2
    weights = [load_model_file(d / LAST_MODEL).get_weights() for d in (resumed, whole)]
    for x, y in zip(*weights, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.subprocess
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_says_how_to_resume_it(tmp_path, signum):
    """Ctrl+C, or a scheduler's SIGTERM, in the second epoch: exit 130 and the command that
    continues the run, which then completes it."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cnnlab", "train", str(CONFIGS / "mnist_mlp.yaml"),
           "--set", f"output_dir={out}", "--set", "data.max_samples=3000",
           "--set", "train.epochs=40", "--set", "train.verbose=0"]  # fmt: skip
    # A test worker may ignore SIGINT, and its children would inherit that: not a terminal's.
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("*/.resume/progress.json")):
            time.sleep(0.05)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    (run_dir,) = out.iterdir()
    assert proc.returncode == 130, stderr
    command = f"cnnlab train --resume {run_dir}"
    assert stderr.strip().splitlines()[-1] == (
        f"error: interrupted; the run continues from its last complete epoch with: {command}"
    )
    assert json.loads((run_dir / "state.json").read_text())["state"] == "interrupted"


def test_temporary_files_of_libraries_stay_in_the_run_directory(tmp_path):
    """Keras saves each checkpoint through a `tmpXXXXXXXX` folder from `tempfile`: while a run
    trains, such folders are made in its run directory's .tmp/, which a resume empties and
    the end of the run deletes, so a run killed mid-save leaves nothing in the system's."""
    import tempfile

    import keras

    from cnnlab.config import load_config
    from cnnlab.training.trainer import train

    made = []

    class MakeTemporaryFolder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            made.append(Path(tempfile.mkdtemp()))  # as keras.saving does

    before = tempfile.gettempdir()
    overrides = ["data.max_samples=200", "train.epochs=1", "train.verbose=0",
                 f"output_dir={tmp_path}"]  # fmt: skip
    run_dir = train(
        load_config(CONFIGS / "mnist_mlp.yaml", overrides), callbacks=[MakeTemporaryFolder()]
    )
    assert [p.parent for p in made] == [run_dir / ".tmp"]
    assert not (run_dir / ".tmp").exists() and tempfile.gettempdir() == before


def test_rerunning_an_interrupted_config_offers_to_resume(tmp_path):
    run = tmp_path / "mnist_lenet5-20260101-000000"
    (run / ".resume").mkdir(parents=True)
    from cnnlab.config import dump_config, load_config

    cfg = load_config(
        CONFIGS / "mnist_lenet5.yaml",
        [f"output_dir={tmp_path}", "train.epochs=1", "data.max_samples=100", "train.verbose=0"],
    )
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / ".resume" / "progress.json").write_text("{}")
    (run / "state.json").write_text(json.dumps({"state": "interrupted"}))
    result = invoke(
        "train",
        CONFIGS / "mnist_lenet5.yaml",
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        "train.epochs=1",
        "--set",
        "data.max_samples=100",
        "--set",
        "train.verbose=0",
    )
    assert result.exit_code == 0, result.output
    assert f"note: {run} is an interrupted run of this config" in result.output
    assert f"cnnlab train --resume {run}" in result.output


def test_resume_needs_a_complete_epoch(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: {loader: mnist}\nmodel: {builder: mlp}\n")
    (run / "state.json").write_text(json.dumps({"state": "failed", "reason": "x"}))
    result = invoke("train", "--resume", run)
    assert result.exit_code == 1 and "no complete epoch to continue from" in result.output
    assert invoke("train").exit_code == 1
    assert (
        "--set and --mlflow need a CONFIG"
        in invoke("train", "--resume", run, "--set", "seed=1").output
    )


def test_nan_through_the_cli_is_one_line_and_recorded(tmp_path):
    result = invoke(
        "train",
        CONFIGS / "mnist_mlp.yaml",
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        "train.learning_rate=1e12",
        "--set",
        "train.optimizer=sgd",
        "--set",
        "data.max_samples=300",
        "--set",
        "train.verbose=0",
    )
    assert result.exit_code == 1
    assert "the loss became" in result.output and "Lower train.learning_rate" in result.output
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "state.json").read_text())["state"] == "failed"


def test_deterministic_runs_repeat_exactly(tmp_path):
    outs = []
    for n in range(2):
        result = invoke(
            "train",
            CONFIGS / "mnist_small_cnn.yaml",
            "--set",
            f"output_dir={tmp_path / str(n)}",
            "--set",
            "deterministic=true",
            "--set",
            "data.max_samples=300",
            "--set",
            "train.epochs=1",
            "--set",
            "train.verbose=0",
        )
        assert result.exit_code == 0, result.output
        (run_dir,) = (tmp_path / str(n)).iterdir()
        outs.append(metrics_of(run_dir))
        env = json.loads((run_dir / "environment.json").read_text())
        assert env["seed"] == 42 and env["tensorflow"] and env["keras"]
    for split in ("train", "val", "test"):
        assert outs[0][split] == outs[1][split]
    # Deterministic ops were the runs' own: later runs in this process may use XLA again.
    from tensorflow.python.framework import config as tf_config

    assert not tf_config.is_op_determinism_enabled()


def test_no_temporary_files_are_left_behind(trained_run):
    assert [p.name for p in trained_run.rglob("*") if ".tmp" in p.name] == []


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise OSError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_labels_outside_the_model_are_refused(tmp_path, mnist_arrays):
    bad = tmp_path / "bad.npz"
    y = mnist_arrays["y_train"][:50].copy()
    y[7] = 12
    np.savez(
        bad,
        x_train=mnist_arrays["x_train"][:50],
        y_train=y,
        x_test=mnist_arrays["x_test"][:10],
        y_test=mnist_arrays["y_test"][:10],
    )
    result = invoke("check", CONFIGS / "mnist_mlp.yaml", "--set", f"data.path={bad}")
    assert result.exit_code == 1 and "y_train holds 0..12; MNIST labels are 0-9" in result.output

    from cnnlab.data.dataset import Dataset

    data = Dataset(
        np.zeros((2, 2, 2, 1)),
        np.array([0, 3]),
        np.zeros((1, 2, 2, 1)),
        np.array([1]),
        None,
        None,
        ["a", "b", "c"],
    )
    with pytest.raises(CnnlabError, match="train labels run from 0 to 3, but the model has 3"):
        data.check_labels(3)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = invoke(
        "train",
        CONFIGS / "mnist_mlp.yaml",
        "--set",
        f"output_dir={out}",
        "--set",
        "data.max_samples=200",
        "--set",
        "train.epochs=1",
        "--set",
        "train.verbose=0",
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    return run_dir


def test_a_lambda_layer_is_refused_by_safe_mode(trained_run, tmp_path):
    import shutil

    import keras

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Lambda(lambda t: keras.ops.reshape(t, (-1, 784))[:, :10])(inputs)
    keras.Model(inputs, outputs).save(run / "model.keras")
    result = invoke("evaluate", run)
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {run / 'model.keras'}: cannot load the model")
    assert "Lambda" in result.output and "\n" not in result.output.strip()


def test_a_folder_where_a_model_file_belongs(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "model.keras").unlink()
    (run / "model.keras").mkdir()
    result = invoke("predict-csv", run, "whatever.csv")
    assert (
        result.exit_code == 1
        and "is a folder (a SavedModel?), not a .keras model file" in result.output
    )


def test_evaluate_says_when_a_run_did_not_finish(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "state.json").write_text(json.dumps({"state": "interrupted", "reason": "killed"}))
    result = invoke("evaluate", run)
    assert result.exit_code == 0, result.output
    assert f"note: {run} is interrupted (killed); using its best model so far" in result.output
