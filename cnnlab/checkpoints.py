"""Checkpoints a run can be continued from, written so that a crash never leaves half a file.

After every epoch, in this order (each file written beside its target, then renamed over it):
    model.keras                    when the monitored value improved
    last.keras                     the model now
    history.csv                    every epoch so far, rewritten whole
    .resume/epoch-NNNN.keras       the model with its optimizer state
    .resume/progress.json          epochs done, phase, best value, callback counters, history,
                                   time; written last, so it always names a complete model file

Epochs are numbered across the phases of a run (phase 2 of 5 + 10 epochs runs epochs 6-15,
or fewer when phase 1 stopped early); model.keras is the best of all phases.

Keras' BackupAndRestore is not enough for this: on resume, ModelCheckpoint(save_best_only)
forgets the best value and overwrites model.keras with a worse model (keras#17012), and
EarlyStopping and ReduceLROnPlateau restart their counters. Here those are carried over too.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import keras

from cnnlab import runs
from cnnlab.atomic import atomic_path, atomic_write, write_json
from cnnlab.errors import CnnlabError, RunDirError
from cnnlab.models.common import trainable_parameters


def _improved(value: float, best: float | None, monitor: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if monitor.endswith("accuracy") else value < best


def save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def read_progress(run_dir: Path) -> dict[str, Any] | None:
    """The last complete epoch's progress record, or None when there is none."""
    path = run_dir / runs.RESUME_DIR / runs.PROGRESS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: damaged ({e.msg}); the run cannot be resumed") from None


def load_resume_model(run_dir: Path, progress: dict[str, Any]) -> keras.Model:
    path = run_dir / runs.RESUME_DIR / progress["model_file"]
    try:
        return keras.models.load_model(path)
    except Exception as e:  # see runs.load_run_model
        raise RunDirError(
            f"{path}: cannot load the saved epoch ({type(e).__name__}: {e})"
        ) from None


class _Resumable:
    """Mixin for Keras callbacks whose counters (named in STATE) must survive a restart.

    Keras resets them in on_train_begin, so the saved values are put back right after it.
    """

    STATE: tuple[str, ...] = ()

    def __init__(self, *args, state: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._restored = state or {}

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for name, value in self._restored.items():
            setattr(self, name, value)

    def state(self) -> dict:
        """The counters as plain JSON numbers (Keras keeps some as NumPy scalars)."""
        values = {name: getattr(self, name) for name in self.STATE}
        return {k: v if v is None or isinstance(v, int) else float(v) for k, v in values.items()}


class ResumableEarlyStopping(_Resumable, keras.callbacks.EarlyStopping):
    """EarlyStopping that also gets its best weights back (those of model.keras)."""

    STATE = ("wait", "best", "best_epoch")

    def __init__(self, *args, best_weights=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._restored_weights = best_weights

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._restored:
            self.best_weights = self._restored_weights


class ResumableReduceLROnPlateau(_Resumable, keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau with its counters restored (the rate itself is optimizer state)."""

    STATE = ("wait", "best", "cooldown_counter")


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Stop at the first NaN/Inf loss with the project's error (and so a one-line message)."""

    def __init__(self):
        super().__init__(raise_error=True)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError:
            loss = (logs or {}).get("loss")
            raise CnnlabError(
                f"the loss became {loss} in epoch {self._epoch + 1}, batch {batch + 1}: training "
                "stopped; model.keras keeps the best epoch so far. Lower train.learning_rate"
            ) from None


class RunCheckpoint(keras.callbacks.Callback):
    """Writes model.keras, last.keras, history.csv and the resume record after every epoch.

    One instance serves every phase of a run (see `begin_phase`). Put it last among the
    callbacks: it records the counters the others updated this epoch.
    """

    def __init__(
        self,
        run_dir: Path,
        monitor: str,
        progress: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.run_dir = run_dir
        self.monitor = monitor
        progress = progress or {}
        self.best: float | None = progress.get("best")
        self.best_epoch: int | None = progress.get("best_epoch")
        self.history: list[dict] = progress.get("history", [])
        self.train_seconds: float = progress.get("train_seconds", 0.0)
        self.phases: list[dict[str, Any]] = progress.get("phases", [])
        self.stateful: dict[str, keras.callbacks.Callback] = {}
        self.phase_index, self.phase_start, self.last_phase = 0, 0, True
        self.target: keras.Model | None = None
        (run_dir / runs.RESUME_DIR).mkdir(exist_ok=True)

    def begin_phase(
        self,
        index: int,
        phase,
        start_epoch: int,
        stateful: dict[str, keras.callbacks.Callback],
        target: keras.Model | None = None,
        last: bool = True,
    ) -> None:
        """Record the epochs from `start_epoch` as phase `index` (a PhaseConfig).

        Args:
            stateful: the phase's callbacks whose counters go into the resume record.
            target: the model to save, when fit trains only part of it (a head on cached
                features); default the model being fit.
            last: whether the run ends with this phase.
        """
        self.phase_index, self.phase_start, self.last_phase = index, start_epoch, last
        self.stateful, self.target = stateful, target
        if len(self.phases) <= index:
            self.phases.append(
                self._phase_record(
                    phase.name,
                    start_epoch,
                    unfreeze=phase.unfreeze,
                    optimizer=phase.optimizer,
                    learning_rate=phase.learning_rate,
                )
            )

    def _phase_record(self, name: str, start_epoch: int, **settings) -> dict[str, Any]:
        """A phase's entry in metrics.json, before its first epoch."""
        return {
            "name": name,
            **settings,
            "first_epoch": start_epoch + 1,
            "epochs_run": 0,
            "best_epoch": None,
            f"best_{self.monitor}": None,
            "train_seconds": 0.0,
        }

    def on_train_begin(self, logs=None):
        if not self.phases:  # used without begin_phase: one phase
            self.phases.append(self._phase_record("phase1", 0))
        self.phases[self.phase_index]["trainable_params"] = trainable_parameters(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        seconds = time.perf_counter() - self._started
        logs["epoch_seconds"] = seconds
        self.train_seconds += seconds
        self.history.append(
            {
                "epoch": epoch,
                "phase": self.phase_index + 1,
                **{k: float(v) for k, v in logs.items()},
            }
        )
        phase = self.phases[self.phase_index]
        phase["epochs_run"] += 1
        phase["train_seconds"] = round(phase["train_seconds"] + seconds, 3)
        target = self.target or self.model
        value = logs.get(self.monitor)
        key = f"best_{self.monitor}"
        if value is not None and _improved(float(value), phase[key], self.monitor):
            phase[key], phase["best_epoch"] = float(value), epoch + 1
        if value is not None and _improved(float(value), self.best, self.monitor):
            self.best, self.best_epoch = float(value), epoch + 1
            save_model(target, self.run_dir / runs.BEST_MODEL)
        save_model(target, self.run_dir / runs.LAST_MODEL)
        self._write_history()
        phase_done = bool(self.model.stop_training) or epoch + 1 >= self.params.get("epochs", 0)
        self._write_progress(epoch + 1, phase_done=phase_done)

    def on_train_end(self, logs=None):
        if self.history:
            self._write_progress(len(self.history), phase_done=True)

    def _write_history(self) -> None:
        import pandas as pd

        atomic_write(
            self.run_dir / runs.HISTORY_FILE, pd.DataFrame(self.history).to_csv(index=False)
        )

    def _write_progress(self, epochs_done: int, phase_done: bool) -> None:
        folder = self.run_dir / runs.RESUME_DIR
        model_file = f"epoch-{epochs_done:04d}.keras"
        if not (folder / model_file).is_file():
            save_model(self.target or self.model, folder / model_file)
        record = {
            "epoch": epochs_done,
            "model_file": model_file,
            "phase": self.phase_index,
            "phase_start": self.phase_start,
            "phase_done": phase_done,
            "fit_done": phase_done and self.last_phase,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "callbacks": {name: cb.state() for name, cb in self.stateful.items()},
            "phases": self.phases,
            "history": self.history,
        }
        write_json(folder / runs.PROGRESS_FILE, record)
        for old in folder.glob("epoch-*.keras"):
            if old.name != model_file:
                old.unlink(missing_ok=True)
