"""MLflow tracking to a real `mlflow server` on 127.0.0.1 (SQLite backend) started here, and to
one that is down, and the tracker's run states; what was logged is read back through MLflow's
own client. A local folder store is tested with a tuning study (test_tune), and a killed and
resumed run continuing its MLflow run in test_resume."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cnnlab.config import load_config
from cnnlab.runs import MLFLOW_RECORD, read_state

from . import helpers
from .helpers import CONFIGS, free_port
from .tracked import check_logged, the_run

CONFIG = CONFIGS / "mnist_mlp.yaml"


@pytest.fixture(scope="module", autouse=True)
def server(tmp_path_factory):
    """`mlflow server` with a SQLite backend, started with the module: it comes up while the
    first test runs and the server test trains its first run."""
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
    result = cli("train", CONFIG, *helpers.quick(out, samples=300, epochs=2), *extra)
    assert result.exit_code == 0, result.output
    (run,) = [p.parent for p in out.glob("*/model.keras")]
    return run, result.output


def test_an_interrupted_run_is_killed_in_mlflow_and_continued_by_its_record(tmp_path):
    """The Tracker alone, without training: stop, continue from mlflow.json, finish."""
    from cnnlab.tracking import Tracker

    store, run_dir = tmp_path / "mlruns", tmp_path / "run"
    run_dir.mkdir()
    cfg = load_config(CONFIG, [f"tracking.mlflow.uri={store}", "tracking.mlflow.experiment=t"])
    first = Tracker.open(cfg, run_dir)
    first.log_epoch(1, {"loss": 2.0, "val_accuracy": 0.5, "note": "not a number"})
    first.finish(None, "KILLED")
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    assert the_run(client, "t").info.status == "KILLED"
    again = Tracker.open(cfg, run_dir)
    assert again.run_id == first.run_id and the_run(client, "t").info.status == "RUNNING"
    again.log_epoch(2, {"loss": 1.0})
    again.finish(None, "FAILED")
    run = the_run(client, "t")
    assert run.info.status == "FAILED" and run.data.params["train.epochs"] == "20"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0)]
    assert "note" not in run.data.metrics


@pytest.mark.subprocess
def test_an_mlflow_server_gets_the_run_and_a_down_one_costs_a_warning(cli, tmp_path, server):
    # While the server starts: a tracking URI where nothing answers costs one warning.
    nowhere = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    run_dir, output = train(cli, tmp_path / "down", "--mlflow", nowhere)
    assert time.monotonic() - start < 90
    warnings = [line for line in output.splitlines() if "warning: MLflow" in line]
    assert len(warnings) == 1 and f"tracking at {nowhere} stopped" in warnings[0], output
    assert "training goes on" in warnings[0]
    assert read_state(run_dir)["state"] == "completed" and not (run_dir / MLFLOW_RECORD).exists()

    process, url = server
    wait_until_up(url, process)
    run_dir, output = train(cli, tmp_path / "up", "--mlflow", url)
    client = MlflowClient(url)
    run = the_run(client, "mnist_mlp")
    assert f"MLflow run {run.info.run_id} at {url} (experiment mnist_mlp)" in output
    check_logged(client, run, run_dir)
