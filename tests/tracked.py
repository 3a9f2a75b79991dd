"""Reading back what a run logged to MLflow, through MLflow's own client."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from cnnlab.config import load_config
from cnnlab.runs import MLFLOW_RECORD


def the_run(client: MlflowClient, experiment: str):
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def check_logged(client: MlflowClient, run, run_dir: Path) -> None:
    """What a finished run's MLflow run holds, against its run directory."""
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert json.loads((run_dir / MLFLOW_RECORD).read_text())["run_id"] == run.info.run_id
    cfg = load_config(run_dir / "config.yaml")
    params = run.data.params
    assert params["model.builder"] == "mlp" and params["train.epochs"] == str(cfg.train.epochs)
    assert params["data.max_samples"] == str(cfg.data.max_samples)
    assert params["model.units"] == str(cfg.model.units) and params["seed"] == str(cfg.seed)
    assert float(params["train.learning_rate"]) == cfg.train.learning_rate
    history = pd.read_csv(run_dir / "history.csv")
    for key in ("loss", "val_accuracy"):
        logged = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in logged] == list(range(1, len(history) + 1))
        assert [m.value for m in logged] == pytest.approx(history[key].tolist())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert run.data.metrics["final_val_loss"] == pytest.approx(metrics["val"]["loss"])
    assert run.data.metrics["params"] == metrics["params"]
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
