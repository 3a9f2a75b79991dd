"""Checkpoints a run can be continued from, written so that a crash never leaves half a file.

After every epoch, in this order (each file written beside its target, then renamed over it):
    model.keras                    when the monitored value improved
    last.keras                     the model now
    history.csv                    every epoch so far, rewritten whole
    .resume/epoch-NNNN.keras       the model with its optimizer state
    .resume/progress.json          the resume record (cnnlab.training.resume_record); written
                                   last, so it always names a complete model file

Epochs are numbered across the phases of a run (phase 2 of 5 + 10 epochs runs epochs 6-15,
or fewer when phase 1 stopped early); model.keras is the best of all phases.

Keras' BackupAndRestore is not enough for this: on resume, ModelCheckpoint(save_best_only)
forgets the best value and overwrites model.keras with a worse model (keras#17012), and
EarlyStopping and ReduceLROnPlateau restart their counters. Here those are carried over too.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras

from cnnlab import runs
from cnnlab.config.training import maximizes
from cnnlab.models.common import trainable_parameters
from cnnlab.training.resume_record import ResumeRecord
from cnnlab.utils.atomic import atomic_path, atomic_write
from cnnlab.utils.console import say
from cnnlab.utils.errors import CnnlabError


def _improved(value: float, best: float | None, monitor: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if maximizes(monitor) else value < best


def save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


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
                f"stopped; {runs.BEST_MODEL} keeps the best epoch so far. Lower "
                "train.learning_rate"
            ) from None


class RunCheckpoint(keras.callbacks.Callback):
    """Writes model.keras, last.keras, history.csv and the resume record after every epoch.

    One instance serves every phase of a run (see `begin_phase`); its state is the run's
    ResumeRecord record. Put it last among the callbacks: it records the counters the others
    updated this epoch.
    """

    def __init__(self, run_dir: Path, monitor: str, record: ResumeRecord | None = None):
        super().__init__()
        self.run_dir = run_dir
        self.files = runs.RunDir(run_dir)
        self.monitor = monitor
        self.record = record if record is not None else ResumeRecord()
        self.stateful: dict[str, keras.callbacks.Callback] = {}
        self.last_phase = True
        self.target: keras.Model | None = None
        self.files.resume.mkdir(exist_ok=True)

    def begin_phase(
        self,
        index: int,
        phase,
        start_epoch: int,
        stateful: dict[str, keras.callbacks.Callback],
        target: keras.Model | None = None,
    ) -> None:
        """Record the epochs from `start_epoch` as phase `index` (a PhaseConfig).

        Args:
            stateful: the phase's callbacks whose counters go into the resume record.
            target: the model to save, when fit trains only part of it (a head on cached
                features); default the model being fit.
        """
        self.record.phase, self.record.phase_start = index, start_epoch
        self.stateful, self.target = stateful, target
        if len(self.record.phases) <= index:
            self.record.phases.append(
                {
                    "name": phase.name,
                    "unfreeze": phase.unfreeze,
                    "optimizer": phase.optimizer,
                    "learning_rate": phase.learning_rate,
                    "first_epoch": start_epoch + 1,
                    "epochs_run": 0,
                    "best_epoch": None,
                    f"best_{self.monitor}": None,
                    "train_seconds": 0.0,
                }
            )

    def on_train_begin(self, logs=None):
        phase = self.record.phases[self.record.phase]
        phase["trainable_params"] = trainable_parameters(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        record = self.record
        seconds = time.perf_counter() - self._started
        logs["epoch_seconds"] = seconds
        record.train_seconds += seconds
        record.history.append(
            {"epoch": epoch, "phase": record.phase + 1, **{k: float(v) for k, v in logs.items()}}
        )
        phase = record.phases[record.phase]
        phase["epochs_run"] += 1
        phase["train_seconds"] = round(phase["train_seconds"] + seconds, 3)
        target = self.target or self.model
        value = logs.get(self.monitor)
        key = f"best_{self.monitor}"
        if value is not None and _improved(float(value), phase[key], self.monitor):
            phase[key], phase["best_epoch"] = float(value), epoch + 1
        if value is not None and _improved(float(value), record.best, self.monitor):
            record.best, record.best_epoch = float(value), epoch + 1
            save_model(target, self.files.best_model)
        save_model(target, self.files.last_model)
        self._write_history()
        phase_done = bool(self.model.stop_training) or epoch + 1 >= self.params.get("epochs", 0)
        self._save_record(epoch + 1, phase_done)

    def on_train_end(self, logs=None):
        # Early stopping ends a phase after the epoch's record was written.
        if self.record.history:
            self._save_record(len(self.record.history), phase_done=True)

    def _write_history(self) -> None:
        import pandas as pd

        frame = pd.DataFrame(self.record.history)
        atomic_write(self.files.history, frame.to_csv(index=False))

    def _save_record(self, epochs_done: int, phase_done: bool) -> None:
        record = self.record
        record.epoch, record.phase_done = epochs_done, phase_done
        record.model_file = runs.epoch_model_file(epochs_done)
        path = record.model_path(self.run_dir)
        if not path.is_file():
            save_model(self.target or self.model, path)
        record.callbacks = {name: cb.state() for name, cb in self.stateful.items()}
        record.save(self.run_dir)


def clock(seconds: float) -> str:
    """Seconds as 1h02m03s, 4m05s or 6s."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class TimeBudget(keras.callbacks.Callback):
    """Plans a phase's epochs so that fitting (validation and checkpoints included) ends
    within `seconds`, at most `max_epochs`; put it before the RunCheckpoint.

    After every epoch it estimates what one more epoch costs (the training steps at the speed
    measured after the first step, whose time includes tracing; the validation; the
    checkpoint written after the epoch before) and plans as many epochs as the time left holds.
    The plan goes into the optimizer's `planned_steps` (the schedule and the rising average
    follow it, see PlannedSchedule), and fit stops when the planned epochs are done. `used`
    seconds (a resumed run's earlier fitting) count against the budget.
    """

    def __init__(
        self, seconds: float, steps_per_epoch: int, first_epoch: int, max_epochs: int,
        used: float = 0.0, planned: int | None = None,
    ):  # fmt: skip
        super().__init__()
        self.seconds, self.steps_per_epoch = seconds, steps_per_epoch
        self.first_epoch, self.max_epochs = first_epoch, max_epochs
        self.used = used
        self.planned = planned or max_epochs
        self.costs: list[float] = []  # the estimated cost of an epoch, after each epoch

    def state(self) -> dict:
        return {
            "seconds": self.seconds, "used": round(self.used, 3),
            "planned_epochs": self.planned, "max_epochs": self.max_epochs,
        }  # fmt: skip

    def on_train_begin(self, logs=None):
        self._start = self._last_end = time.perf_counter()
        self._used_before = self.used

    def on_epoch_begin(self, epoch, logs=None):
        now = time.perf_counter()
        self._saving = now - self._last_end  # the checkpoint after the epoch before
        self._epoch_start = now
        self._first_step = self._train_end = None

    def on_train_batch_end(self, batch, logs=None):
        if self._first_step is None:
            self._first_step = time.perf_counter()

    def on_test_begin(self, logs=None):
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.used = self._used_before + now - self._start
        train_end = self._train_end or now
        steps = self.steps_per_epoch
        if self._first_step is not None and steps > 1:
            training = (train_end - self._first_step) * steps / (steps - 1)
        else:
            training = train_end - self._epoch_start
        cost = training + (now - train_end) + self._saving
        self.costs.append(cost)
        self._last_end = now
        estimate = sorted(self.costs[-3:])[len(self.costs[-3:]) // 2]  # median of the last 3
        done = epoch + 1 - self.first_epoch
        more = max(0, math.floor((self.seconds - self.used) / estimate)) if estimate > 0 else 0
        planned = max(done, min(self.max_epochs, done + more))
        if planned != self.planned or len(self.costs) == 1:
            self._plan(planned, done, estimate)
        if done >= self.planned:
            self.model.stop_training = True

    def _plan(self, planned: int, done: int, estimate: float) -> None:
        changed = planned != self.planned
        self.planned = planned
        optimizer = self.model.optimizer
        if changed and getattr(optimizer, "planned_steps", None) is not None:
            optimizer.planned_steps.assign(float(planned * self.steps_per_epoch))
        end = self.used + (planned - done) * estimate
        say(
            f"time budget {clock(self.seconds)}: {clock(self.used)} used, about "
            f"{clock(estimate)} an epoch; planned {planned} of at most {self.max_epochs} "
            f"epochs, fitting to end at about {clock(end)}"
        )
