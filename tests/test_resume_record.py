"""The resume record: where a killed run goes on, at every point it can be killed, without
training anything."""

from __future__ import annotations

import json

import pytest

from cnnlab.runs import RunDir, epoch_model_file
from cnnlab.training.resume_record import ResumeRecord, Step
from cnnlab.utils.errors import RunDirError


def record_after(epoch: int, phase_epochs: list[int]) -> ResumeRecord:
    """The record RunCheckpoint leaves after `epoch` epochs of a run whose phases run
    `phase_epochs` epochs each."""
    start = 0
    for index, length in enumerate(phase_epochs):
        if epoch <= start + length:
            return ResumeRecord(
                epoch=epoch, model_file=epoch_model_file(epoch), phase=index,
                phase_start=start, phase_done=epoch == start + length,
            )  # fmt: skip
        start += length
    raise AssertionError("epoch past the run's end")


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (1, Step(phase=0, phase_start=0, epoch=1, inside=True)),
        (2, Step(phase=0, phase_start=0, epoch=2, inside=True)),
        (3, Step(phase=1, phase_start=3, epoch=3, inside=False)),  # phase 1 complete
        (4, Step(phase=1, phase_start=3, epoch=4, inside=True)),
        (5, None),  # every phase ran: only scoring is left
    ],
)
def test_a_two_phase_run_goes_on_where_it_was_killed(epoch, expected):
    assert record_after(epoch, [3, 2]).next_step(phases=2) == expected


def test_a_new_run_starts_at_the_first_phase():
    assert ResumeRecord().next_step(phases=3) == Step(0, 0, 0, False)


def test_a_phase_stopped_early_hands_over_at_its_last_epoch():
    # Phase 1 was set to 10 epochs; early stopping ended it after 4.
    record = ResumeRecord(epoch=4, model_file=epoch_model_file(4), phase=0, phase_done=True)
    assert record.next_step(phases=2) == Step(phase=1, phase_start=4, epoch=4, inside=False)
    # In the last phase, early stopping ends the fit.
    record = ResumeRecord(epoch=9, phase=1, phase_start=4, phase_done=True)
    assert record.next_step(phases=2) is None


def test_a_killed_second_phase_keeps_its_own_start(tmp_path):
    # Killed after epoch 6 of phase 2, which began after epoch 4: epochs 5-6 ran in it.
    record = ResumeRecord(epoch=6, phase=1, phase_start=4, phase_done=False)
    assert record.next_step(phases=3) == Step(phase=1, phase_start=4, epoch=6, inside=True)


def test_save_and_load_keep_every_field_and_only_the_newest_model(tmp_path):
    (tmp_path / ".resume").mkdir()
    for old in (1, 2):
        (tmp_path / ".resume" / epoch_model_file(old)).write_bytes(b"model")
    record = ResumeRecord(
        epoch=2, model_file=epoch_model_file(2), phase=0, best=0.25, best_epoch=2,
        train_seconds=3.5, callbacks={"early_stopping": {"wait": 1, "best": 0.25}},
        phases=[{"name": "phase1", "epochs_run": 2}],
        history=[{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}],
    )  # fmt: skip
    record.save(tmp_path)
    assert ResumeRecord.load(tmp_path) == record
    assert sorted(p.name for p in (tmp_path / ".resume").glob("*.keras")) == ["epoch-0002.keras"]
    assert record.model_path(tmp_path) == tmp_path / ".resume" / "epoch-0002.keras"


def test_a_run_killed_before_its_first_epoch_has_nothing_to_resume(tmp_path):
    with pytest.raises(RunDirError, match="no complete epoch to continue from"):
        ResumeRecord.load(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"epoch": 2, "model_fi', "damaged"),  # cut short by a full disk
        ("\x00\x00\x00", "damaged"),
        (json.dumps({"epoch": 2, "model_file": "epoch-0002.keras", "fit_done": False}),
         "not a resume record of this cnnlab version"),  # written before phases existed
        ("[1, 2]", "not a resume record of this cnnlab version"),
    ],
)  # fmt: skip
def test_a_damaged_or_old_record_is_refused_by_name(tmp_path, content, message):
    RunDir(tmp_path).progress.parent.mkdir()
    RunDir(tmp_path).progress.write_text(content)
    with pytest.raises(RunDirError, match=message) as info:
        ResumeRecord.load(tmp_path)
    assert str(RunDir(tmp_path).progress) in str(info.value)
