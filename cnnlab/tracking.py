"""MLflow tracking (`tracking.mlflow` in the config, or `--mlflow URI`).

A run logs its resolved config as parameters (flattened keys: train.learning_rate), each
epoch's metrics with the epoch (1, 2, ... across phases) as the step, its final metrics
(final_test_accuracy, ...), tags (builder, loader, device, precision, backend, cnnlab version)
and its files (report.html, the plots, history.csv, model/model.keras). The MLflow run's id is
kept in the run directory (mlflow.json), so `cnnlab train --resume` continues the same MLflow
run; a `cnnlab tune` study is a parent run with each trial a child run.

Tracking never costs the training run: the first call that fails (a server that is down, a
full disk) prints one warning and tracking stops for that run; the run directory has it all.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from cnnlab import __version__, runs
from cnnlab.config import Config, MlflowConfig, flat_config
from cnnlab.config.tracking import is_folder
from cnnlab.utils.atomic import write_json
from cnnlab.utils.console import say, warn
from cnnlab.utils.errors import first_line

STORE = "mlflow.db"  # the SQLite store cnnlab keeps in a local tracking folder
ARTIFACTS = "artifacts"
LOGGED_FILES = (
    runs.CONFIG_FILE, runs.METRICS_FILE, runs.HISTORY_FILE, runs.SUMMARY_FILE, runs.REPORT,
)  # fmt: skip
# A server that is down should cost seconds, not MLflow's default minutes of retries.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def tracking_uri(cfg: MlflowConfig) -> str:
    """The MLflow tracking URI: a local folder becomes a SQLite store inside it."""
    if not is_folder(cfg.uri):
        return cfg.uri
    Path(cfg.uri).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(cfg.uri) / STORE}"


class Tracker:
    """One cnnlab run (or tune study) as one MLflow run; every call is safe (see the module)."""

    def __init__(self, cfg: MlflowConfig):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        from mlflow import MlflowClient

        # Not MLflow's notes on setting up its database (it configures its logger on import).
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)

        self.cfg, self.where = cfg, cfg.uri  # the store, as messages name it
        self.uri = tracking_uri(cfg)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id: str | None = None
        self.failed = False

    @classmethod
    def open(
        cls, cfg: Config, folder: Path, parent: str | None = None, name: str | None = None
    ) -> Tracker | None:
        """The MLflow run of the run (or study) in `folder`: continued when its mlflow.json
        names one, else created (as a child of run `parent`). None without tracking."""
        if cfg.tracking.mlflow is None:
            return None
        tracker = cls(cfg.tracking.mlflow)
        tracker._safely("start the run", tracker._start, cfg, folder, parent, name or folder.name)
        return tracker if tracker.run_id is not None else None

    def _start(self, cfg: Config, folder: Path, parent: str | None, name: str) -> None:
        record = folder / runs.MLFLOW_RECORD
        if record.is_file():
            self.run_id = json.loads(record.read_text(encoding="utf-8"))["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            say(f"MLflow run {self.run_id} continues at {self.where}")
            return
        if parent is not None:  # in the parent's experiment, whatever this run's name
            experiment = self.client.get_run(parent).info.experiment_id
            experiment_name = self.client.get_experiment(experiment).name
        else:
            experiment_name = self.cfg.experiment or cfg.name
            experiment = self._experiment(experiment_name)
        import keras

        tags = {
            "builder": cfg.model.builder,
            "loader": cfg.data.loader,
            "backend": keras.backend.backend(),
            "cnnlab_version": __version__,
            "run_dir": str(folder.resolve()),
        }
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(experiment, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        self._log(params=flat_config(cfg))
        write_json(record, {"tracking_uri": self.uri, "run_id": self.run_id})
        say(f"MLflow run {self.run_id} at {self.where} (experiment {experiment_name})")

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        artifacts = None
        if is_folder(self.cfg.uri):
            artifacts = (Path(self.cfg.uri) / ARTIFACTS).as_uri()
        return self.client.create_experiment(name, artifact_location=artifacts)

    def _log(self, metrics: dict[str, float] | None = None, params=None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        metric_list = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
        param_list = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        # MLflow takes at most 100 parameters and 1,000 metrics per call.
        for i in range(0, len(param_list), 100):
            self.client.log_batch(self.run_id, params=param_list[i : i + 100])
        for i in range(0, len(metric_list), 1000):
            self.client.log_batch(self.run_id, metrics=metric_list[i : i + 1000])

    def _safely(self, what: str, call, *args) -> None:
        if self.failed:
            return
        try:
            call(*args)
        except Exception as e:
            self.failed = True
            warn(
                f"MLflow tracking at {self.where} stopped: cannot {what} "
                f"({type(e).__name__}: {first_line(e)[:200]}); training goes on, the run "
                "directory keeps everything"
            )

    def log_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        """Metrics of epoch `epoch` (1-based, counted across phases)."""
        numbers = {k: v for k, v in logs.items() if isinstance(v, int | float)}
        self._safely(f"log epoch {epoch}", lambda: self._log(numbers, step=epoch))

    def log_values(self, metrics: dict[str, float] | None = None, params=None) -> None:
        self._safely("log", lambda: self._log(metrics, params))

    def finish(self, run_dir: Path | None, status: str = "FINISHED") -> None:
        """Final metrics, tags and files of a completed run (`run_dir`; None for a run that
        did not complete), and the MLflow run's end status."""
        if run_dir is not None:
            self._safely("log the results", self._results, run_dir)
        self._safely("end the run", self.client.set_terminated, self.run_id, status)

    def _results(self, run_dir: Path) -> None:
        files = runs.RunDir(run_dir)
        metrics = json.loads(files.metrics.read_text(encoding="utf-8"))
        # final_*: the best model's scores, apart from the per-epoch loss, val_accuracy, ...
        final = {
            f"final_{split}_{name}": value
            for split in ("train", "val", "test")
            for name, value in (metrics.get(split) or {}).items()
            if isinstance(value, int | float)
        }
        for key in ("epochs_run", "best_epoch", "train_seconds", "images_per_second", "params"):
            if isinstance(metrics.get(key), int | float):
                final[key] = metrics[key]
        self._log(final, step=int(metrics.get("epochs_run", 0)))
        for key in ("device", "precision"):
            self.client.set_tag(self.run_id, key, str(metrics.get(key)))
        for name in LOGGED_FILES:
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        for plot in sorted(run_dir.glob("*.png")):
            self.client.log_artifact(self.run_id, str(plot), "plots")
        if files.best_model.is_file():
            self.client.log_artifact(self.run_id, str(files.best_model), "model")

    def callback(self):
        """A Keras callback logging each epoch's metrics as Keras reports them."""
        import keras

        tracker = self

        class LogToMlflow(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                tracker.log_epoch(epoch + 1, dict(logs or {}))

        return LogToMlflow()
