"""The resume record of a run: how far training got, written after every complete epoch.

`.resume/progress.json` names the model file of that epoch (`.resume/epoch-NNNN.keras`, saved
with its optimizer state just before the record; cnnlab.runs names both files) and carries
what a restart needs: the epoch and phase, the best monitored value, the callbacks' counters,
the history and the time spent. This module is its one owner: it loads and saves the record
and says which phases and epochs are left (`ResumeRecord.next_step`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cnnlab.runs import EPOCH_MODELS, RunDir
from cnnlab.utils.atomic import write_json
from cnnlab.utils.errors import RunDirError


class Step(NamedTuple):
    """Where training goes on: phase `phase` (an index), which began after `phase_start`
    epochs, continued from epoch `epoch` (epochs done so far, across phases). `inside` is
    true when that phase already ran epochs: its optimizer state and counters carry on."""

    phase: int
    phase_start: int
    epoch: int
    inside: bool


@dataclass
class ResumeRecord:
    """The record after `epoch` complete epochs (epochs are numbered across phases)."""

    epoch: int = 0
    model_file: str = ""  # in .resume/, the model (with optimizer state) after `epoch`
    phase: int = 0  # the phase `epoch` belongs to
    phase_start: int = 0  # epochs done before that phase began
    phase_done: bool = False  # that phase will run no more epochs (all run, or stopped early)
    best: float | None = None  # the best monitored value so far: model.keras's
    best_epoch: int | None = None
    train_seconds: float = 0.0
    callbacks: dict[str, dict] = field(default_factory=dict)  # counters by callback name
    phases: list[dict[str, Any]] = field(default_factory=list)  # metrics.json's `phases`
    history: list[dict[str, float]] = field(default_factory=list)  # a row per epoch

    def next_step(self, phases: int) -> Step | None:
        """Where a run of `phases` phases goes on from here; None when fitting is over."""
        if not self.phase_done:
            return Step(self.phase, self.phase_start, self.epoch, self.epoch > self.phase_start)
        if self.phase + 1 < phases:
            return Step(self.phase + 1, self.epoch, self.epoch, False)
        return None

    @classmethod
    def load(cls, run_dir: Path) -> ResumeRecord:
        """The run's record.

        Raises:
            RunDirError: no record, or one that is damaged or was written by an older cnnlab.
        """
        path = RunDir(run_dir).progress
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{run_dir}: no complete epoch to continue from") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunDirError(f"{path}: damaged ({e}); the run cannot be resumed") from None
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise RunDirError(
                f"{path}: not a resume record of this cnnlab version (keys differ); the run "
                "cannot be resumed, start a new one"
            )
        return cls(**data)

    def save(self, run_dir: Path) -> None:
        """Write the record (its model file must be saved already), then drop older models."""
        files = RunDir(run_dir)
        write_json(files.progress, dataclasses.asdict(self))
        for old in files.resume.glob(EPOCH_MODELS):
            if old.name != self.model_file:
                old.unlink(missing_ok=True)

    def model_path(self, run_dir: Path) -> Path:
        return RunDir(run_dir).epoch_model(self.model_file)
