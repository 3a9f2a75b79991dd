"""MLflow tracking against real stores: a local folder (SQLite inside) and an `mlflow server` on
127.0.0.1 started here; what was logged is read back through MLflow's own client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import keras
import pandas as pd
import pytest
from mlflow import MlflowClient

from cnnlab.config import load_config
from cnnlab.runs import read_state
from cnnlab.tracking import RECORD, STORE

from .conftest import CONFIGS, _quick

CONFIG = CONFIGS / "mnist_mlp.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` with a SQLite backend; it starts while the first tests train."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield process, f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One local tracking folder for the module (setting up its database takes seconds); each
    test logs to an experiment of its own."""
    return tmp_path_factory.mktemp("mlruns")


def local(store: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{store / STORE}")


def wait_until_up(url: str, process, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "mlflow server exited"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server at {url} did not answer in {seconds} s")


def train(cli, out: Path, *extra) -> tuple[Path, str]:
    result = cli("train", CONFIG, *_quick(out, samples=300, epochs=2), *extra)
    assert result.exit_code == 0, result.output
    (run,) = [p.parent for p in out.glob("*/model.keras")]
    return run, result.output


def the_run(client: MlflowClient, experiment: str):
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def check_logged(client: MlflowClient, run_dir: Path, experiment: str) -> None:
    """What a finished run's MLflow run holds, against its run directory."""
    run = the_run(client, experiment)
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert json.loads((run_dir / RECORD).read_text())["run_id"] == run.info.run_id
    params = run.data.params
    assert params["model.builder"] == "mlp" and params["train.epochs"] == "2"
    assert params["data.max_samples"] == "300" and params["model.units"] == "[512, 512]"
    history = pd.read_csv(run_dir / "history.csv")
    for key in ("loss", "val_accuracy"):
        logged = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in logged] == [1, 2]
        assert [m.value for m in logged] == pytest.approx(history[key].tolist())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert run.data.metrics["final_val_loss"] == pytest.approx(metrics["val"]["loss"])
    assert run.data.metrics["params"] == 669_706
    tags = run.data.tags
    assert tags["builder"] == "mlp" and tags["loader"] == "mnist"
    assert tags["backend"] == "tensorflow" and tags["precision"] == metrics["precision"]
    assert tags["device"] == metrics["device"] and tags["cnnlab_version"]
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "history.csv", "config.yaml", "metrics.json", "plots", "model"} <= files
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/curves.png" in plots
    model = Path(
        client.download_artifacts(run.info.run_id, "model/model.keras", str(run_dir.parent))
    )
    assert model.read_bytes() == (run_dir / "model.keras").read_bytes()


def test_a_run_logs_to_a_local_folder(cli, tmp_path, store, server):
    run_dir, output = train(cli, tmp_path / "out", "--mlflow", store)
    assert f"MLflow run {the_run(local(store), 'mnist_mlp').info.run_id} at {store}" in output
    assert (store / STORE).is_file() and (store / "artifacts").is_dir()
    check_logged(local(store), run_dir, "mnist_mlp")


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, store, server):
    from cnnlab.train import start_or_resume, train

    class StopInEpoch2(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    tracking = [f"tracking.mlflow.uri={store}", "tracking.mlflow.experiment=resumed"]
    cfg = load_config(CONFIG, [*_quick(tmp_path / "out", 300, 2)[1::2], *tracking])
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[StopInEpoch2()])
    (run_dir,) = (tmp_path / "out").iterdir()
    killed = the_run(local(store), "resumed").info
    assert read_state(run_dir)["state"] == "interrupted" and killed.status == "KILLED"
    cfg, resume = start_or_resume(None, run_dir, None)
    train(cfg, resume)
    check_logged(local(store), run_dir, "resumed")


def test_a_study_is_a_parent_run_with_a_child_run_per_trial(cli, tmp_path, store, server):
    space = tmp_path / "space.yaml"
    space.write_text("train.learning_rate: {log_uniform: [1e-3, 1e-2]}\n")
    values = [*_quick(tmp_path / "out", 200, 1)[1::2], "tracking.mlflow.experiment=study"]
    sets = [a for value in values for a in ("--set", value)]
    result = cli("tune", CONFIG, "--space", space, "--trials", 2, "--mlflow", store, *sets)
    assert result.exit_code == 0, result.output
    client = local(store)
    found = client.search_runs([client.get_experiment_by_name("study").experiment_id])
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == "mnist_mlp-tune" and parent.info.status == "FINISHED"
    assert len(children) == 2 and len(found) == 3
    rates = sorted(float(r.data.params["train.learning_rate"]) for r in children)
    assert all(1e-3 <= rate <= 1e-2 for rate in rates) and rates[0] != rates[1]
    best = max(r.data.metrics["final_val_accuracy"] for r in children)
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best)
    best_rate = float(parent.data.params["best.train.learning_rate"])
    assert min(abs(best_rate - rate) for rate in rates) < 1e-9


def test_an_mlflow_server_gets_the_run_and_a_down_one_costs_a_warning(cli, tmp_path, server):
    process, url = server
    wait_until_up(url, process)
    run_dir, _ = train(cli, tmp_path / "up", "--mlflow", url)
    check_logged(MlflowClient(url), run_dir, "mnist_mlp")
    process.terminate()
    process.wait(timeout=30)
    start = time.monotonic()
    run_dir, output = train(cli, tmp_path / "down", "--mlflow", url)
    assert time.monotonic() - start < 90
    warnings = [line for line in output.splitlines() if "warning: MLflow" in line]
    assert len(warnings) == 1 and "training goes on" in warnings[0], output
    assert read_state(run_dir)["state"] == "completed" and not (run_dir / RECORD).exists()
