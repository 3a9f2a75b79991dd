"""The names of every file a run directory holds, and `RunDir`, which gives their paths: the
rest of cnnlab asks here rather than spelling a name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Written by `cnnlab train`.
CONFIG_FILE = "config.yaml"  # the resolved config (after --set), written before training
ENVIRONMENT_FILE = "environment.json"  # versions, device, seed and command line
SUMMARY_FILE = "summary.txt"  # the model summary
CLASSES_FILE = "classes.json"  # the class names, in the order of the model's outputs
THRESHOLDS_FILE = "thresholds.json"  # several labels per image: {class: threshold}, set on val
TEMP_DIR = ".tmp"  # temporary files while training
RESUME_DIR = ".resume"  # the last complete epoch, for `cnnlab train --resume`:
PROGRESS_FILE = "progress.json"  # the resume record (cnnlab.training.resume_record), and
EPOCH_MODELS = "epoch-*.keras"  # the model it names (epoch_model_file), with optimizer state
BEST_MODEL = "model.keras"  # the best model by the monitored metric
LAST_MODEL = "last.keras"  # the model after the last epoch
HISTORY_FILE = "history.csv"  # per-epoch metrics and epoch_seconds (training.callbacks)
METRICS_FILE = "metrics.json"  # final train/val/test metrics, epochs, timings, parameters
STATE_FILE = "state.json"  # running / completed / failed (with the reason) / interrupted
BAD_FILES = "bad_files.csv"  # input files the loader could not use (image folders)
SUBMISSION = "submission.csv"  # an unlabelled test set's predicted labels (Kaggle's format)
TENSORBOARD_DIR = "tensorboard"  # with train.tensorboard
MLFLOW_RECORD = "mlflow.json"  # which MLflow run is this run's (a tune study has one too)
# The plots and reports of cnnlab.reports.
CURVES = "curves.png"
CONFUSION = "confusion_matrix.png"
PER_CLASS = "per_class.csv"
CLASS_REPORT = "classification_report.txt"
MOST_CONFUSED = "most_confused.csv"  # the class pairs mixed up most: actual, predicted, count
MISCLASSIFIED = "misclassified.png"
TRAIN_BATCH = "train_batch.png"
LEAKS = "leaks.png"
HEALTH = "data_health.json"
REPORT = "report.html"
# Written by the commands that read a run.
EVALUATION_FILE = "evaluation.json"  # `cnnlab evaluate` (RunDir.csv_evaluation with --csv)
EXPLAIN_DIR = "explain"  # `cnnlab explain`'s default folder
EXPORT_DIR = "export"  # `cnnlab export`'s default folder (RunDir.export_file)
# Not in a run directory: `cnnlab predict-csv` of several runs, in the working directory.
ENSEMBLE_SUBMISSION = "submission-ensemble.csv"


@dataclass(frozen=True)
class RunDir:
    """The paths of a run directory's files: `RunDir(run_dir).metrics` is its metrics.json."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def best_model(self) -> Path:
        return self.path / BEST_MODEL

    @property
    def last_model(self) -> Path:
        return self.path / LAST_MODEL

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def environment(self) -> Path:
        return self.path / ENVIRONMENT_FILE

    @property
    def state(self) -> Path:
        return self.path / STATE_FILE

    @property
    def bad_files(self) -> Path:
        return self.path / BAD_FILES

    @property
    def classes(self) -> Path:
        return self.path / CLASSES_FILE

    @property
    def thresholds(self) -> Path:
        return self.path / THRESHOLDS_FILE

    @property
    def temp(self) -> Path:
        return self.path / TEMP_DIR

    @property
    def resume(self) -> Path:
        return self.path / RESUME_DIR

    @property
    def progress(self) -> Path:
        """The resume record."""
        return self.resume / PROGRESS_FILE

    def epoch_model(self, name: str) -> Path:
        """A model in the resume folder, by its epoch_model_file name."""
        return self.resume / name

    @property
    def submission(self) -> Path:
        return self.path / SUBMISSION

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD_DIR

    @property
    def curves(self) -> Path:
        return self.path / CURVES

    @property
    def confusion(self) -> Path:
        return self.path / CONFUSION

    @property
    def per_class(self) -> Path:
        return self.path / PER_CLASS

    @property
    def class_report(self) -> Path:
        return self.path / CLASS_REPORT

    @property
    def most_confused(self) -> Path:
        return self.path / MOST_CONFUSED

    @property
    def misclassified(self) -> Path:
        return self.path / MISCLASSIFIED

    @property
    def train_batch(self) -> Path:
        return self.path / TRAIN_BATCH

    @property
    def leaks(self) -> Path:
        return self.path / LEAKS

    @property
    def health(self) -> Path:
        return self.path / HEALTH

    @property
    def report(self) -> Path:
        return self.path / REPORT

    def csv_evaluation(self, csv: Path) -> Path:
        """`cnnlab evaluate --csv`'s result: evaluation-<csv stem>.json."""
        return self.path / f"evaluation-{Path(csv).stem}.json"

    @property
    def explain(self) -> Path:
        """`cnnlab explain`'s default folder."""
        return self.path / EXPLAIN_DIR

    @property
    def export(self) -> Path:
        """`cnnlab export`'s default folder."""
        return self.path / EXPORT_DIR

    def export_file(self, suffix: str, quantize: str | None = None) -> Path:
        """`cnnlab export`'s default output: export/model[-QUANTIZE]SUFFIX, or
        export/savedmodel (a folder) without a suffix."""
        if not suffix:
            return self.export / "savedmodel"
        return self.export / ("model" + (f"-{quantize}" if quantize else "") + suffix)

    @property
    def onnx_export(self) -> Path:
        """The ONNX export `cnnlab serve --onnx` runs."""
        return self.export_file(".onnx")


def epoch_model_file(epoch: int) -> str:
    """The name (in RESUME_DIR) of the model file saved after `epoch` epochs."""
    return f"epoch-{epoch:04d}.keras"
