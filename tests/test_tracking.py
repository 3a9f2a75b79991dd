"""MLflow tracking against real stores: a local folder (SQLite inside) and an `mlflow server` on
127.0.0.1 started here; what was logged is read back through MLflow's own client. (A run killed
and resumed continues its MLflow run: see test_resume.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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


def check_logged(client: MlflowClient, run, run_dir: Path) -> None:
    """What a finished run's MLflow run holds, against its run directory."""
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert json.loads((run_dir / RECORD).read_text())["run_id"] == run.info.run_id
    cfg = load_config(run_dir / "config.yaml")
    params = run.data.params
    assert params["model.builder"] == "mlp" and params["train.epochs"] == str(cfg.train.epochs)
    assert params["data.max_samples"] == str(cfg.data.max_samples)
    assert params["model.units"] == "[512, 512]" and params["seed"] == str(cfg.seed)
    history = pd.read_csv(run_dir / "history.csv")
    for key in ("loss", "val_accuracy"):
        logged = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in logged] == list(range(1, len(history) + 1))
        assert [m.value for m in logged] == pytest.approx(history[key].tolist())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert run.data.metrics["final_val_loss"] == pytest.approx(metrics["val"]["loss"])
    assert run.data.metrics["params"] == 669_706
    tags = run.data.tags
    assert tags["builder"] == "mlp" and tags["loader"] == "mnist"
    assert tags["backend"] == "tensorflow" and tags["precision"] == metrics["precision"]
    assert tags["device"] == metrics["device"] and tags["cnnlab_version"]
    assert tags["run_dir"] == str(run_dir.resolve())
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "history.csv", "config.yaml", "metrics.json", "plots", "model"} <= files
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/curves.png", "plots/confusion_matrix.png"} <= plots
    model = Path(
        client.download_artifacts(run.info.run_id, "model/model.keras", str(run_dir.parent))
    )
    assert model.read_bytes() == (run_dir / "model.keras").read_bytes()


def test_a_study_is_a_parent_run_with_a_child_run_per_trial(cli, tmp_path, server):
    space = tmp_path / "space.yaml"
    space.write_text("train.learning_rate: {log_uniform: [1e-3, 1e-2]}\n")
    store = tmp_path / "mlruns"  # a local folder: a SQLite store and the files inside
    values = [*_quick(tmp_path / "out", 200, 1)[1::2], "tracking.mlflow.experiment=study"]
    sets = [a for value in values for a in ("--set", value)]
    result = cli("tune", CONFIG, "--space", space, "--trials", 2, "--mlflow", store, *sets)
    assert result.exit_code == 0, result.output
    client = MlflowClient(f"sqlite:///{store / STORE}")
    found = client.search_runs([client.get_experiment_by_name("study").experiment_id])
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == "mnist_mlp-tune" and parent.info.status == "FINISHED"
    assert len(children) == 2 and len(found) == 3
    rates = sorted(float(r.data.params["train.learning_rate"]) for r in children)
    assert all(1e-3 <= rate <= 1e-2 for rate in rates) and rates[0] != rates[1]
    for child in children:  # each trial is an ordinary run, logged in full
        check_logged(client, child, Path(child.data.tags["run_dir"]))
    best = max(r.data.metrics["final_val_accuracy"] for r in children)
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best)
    best_rate = float(parent.data.params["best.train.learning_rate"])
    assert min(abs(best_rate - rate) for rate in rates) < 1e-9


def test_an_mlflow_server_gets_the_run_and_a_down_one_costs_a_warning(cli, tmp_path, server):
    process, url = server
    wait_until_up(url, process)
    run_dir, output = train(cli, tmp_path / "up", "--mlflow", url)
    client = MlflowClient(url)
    run = the_run(client, "mnist_mlp")
    assert f"MLflow run {run.info.run_id} at {url} (experiment mnist_mlp)" in output
    check_logged(client, run, run_dir)
    process.terminate()
    process.wait(timeout=30)
    start = time.monotonic()
    run_dir, output = train(cli, tmp_path / "down", "--mlflow", url)
    assert time.monotonic() - start < 90
    warnings = [line for line in output.splitlines() if "warning: MLflow" in line]
    assert len(warnings) == 1 and "training goes on" in warnings[0], output
    assert read_state(run_dir)["state"] == "completed" and not (run_dir / RECORD).exists()
