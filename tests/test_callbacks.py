"""The training callbacks, driven directly with `on_epoch_end` calls on a small model (as Keras'
own early_stopping_test does): the checkpoint, the NaN stop and the resumable counters."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from cnnlab.config import PhaseConfig
from cnnlab.training.callbacks import (
    ResumableEarlyStopping,
    ResumableReduceLROnPlateau,
    RunCheckpoint,
    StopOnNaN,
)
from cnnlab.training.resume_record import ResumeRecord
from cnnlab.utils.errors import CnnlabError


def small_model() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def checkpoint_over(tmp_path, monitor: str, values: list[float], epochs: int | None = None):
    """A RunCheckpoint fed one epoch per value of `monitor`; before each epoch ends, the
    model's kernel is set to that epoch's number, so a saved file tells which epoch it holds."""
    model = small_model()
    checkpoint = RunCheckpoint(tmp_path, monitor)
    checkpoint.set_model(model)
    checkpoint.set_params({"epochs": epochs or len(values)})
    checkpoint.begin_phase(0, PhaseConfig(name="phase1", epochs=len(values)), 0, {})
    checkpoint.on_train_begin()
    for epoch, value in enumerate(values):
        checkpoint.on_epoch_begin(epoch)
        model.layers[0].kernel.assign(np.full((4, 3), epoch + 1.0, "float32"))
        checkpoint.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
    return checkpoint


def saved_epoch(path) -> float:
    """The epoch whose weights `path` holds (see checkpoint_over)."""
    return float(keras.models.load_model(path).layers[0].kernel.numpy()[0, 0])


def test_the_checkpoint_keeps_the_lowest_loss_and_records_every_epoch(tmp_path):
    checkpoint = checkpoint_over(tmp_path, "val_loss", [0.5, 0.3, 0.4])
    record = checkpoint.record
    assert (record.best, record.best_epoch, record.epoch) == (0.3, 2, 3)
    assert saved_epoch(tmp_path / "model.keras") == 2 and saved_epoch(tmp_path / "last.keras") == 3
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["val_loss"].tolist() == [0.5, 0.3, 0.4] and len(history) == 3
    assert (history["epoch_seconds"] >= 0).all()
    # The record on disk names the model of the last epoch, the only one kept.
    saved = ResumeRecord.load(tmp_path)
    assert saved.epoch == 3 and saved.phase_done and saved.best_epoch == 2
    assert sorted(p.name for p in (tmp_path / ".resume").glob("*.keras")) == ["epoch-0003.keras"]
    assert saved_epoch(saved.model_path(tmp_path)) == 3
    assert saved.phases[0]["best_epoch"] == 2 and saved.phases[0]["epochs_run"] == 3


def test_an_accuracy_is_better_higher(tmp_path):
    checkpoint = checkpoint_over(tmp_path, "val_accuracy", [0.5, 0.7, 0.6])
    assert (checkpoint.record.best, checkpoint.record.best_epoch) == (0.7, 2)
    assert saved_epoch(tmp_path / "model.keras") == 2


def test_a_nan_epoch_is_never_the_best(tmp_path):
    checkpoint = checkpoint_over(tmp_path, "val_loss", [float("nan"), 0.4, float("inf")])
    assert (checkpoint.record.best, checkpoint.record.best_epoch) == (0.4, 2)
    assert saved_epoch(tmp_path / "model.keras") == 2


def test_only_nan_epochs_save_no_best_model(tmp_path):
    checkpoint = checkpoint_over(tmp_path, "val_loss", [float("nan")], epochs=5)
    assert checkpoint.record.best_epoch is None and not (tmp_path / "model.keras").exists()
    # The phase is not over after 1 of 5 epochs: a resume would continue it.
    assert not json.loads((tmp_path / ".resume" / "progress.json").read_text())["phase_done"]


def test_stop_on_nan_raises_one_line_naming_the_epoch_and_batch():
    stop = StopOnNaN()
    stop.set_model(small_model())
    stop.on_epoch_begin(2)
    stop.on_batch_end(0, {"loss": 0.7})  # finite: goes on
    with pytest.raises(CnnlabError, match=r"the loss became nan in epoch 3, batch 5: training "):
        stop.on_batch_end(4, {"loss": float("nan")})


def test_early_stopping_stops_after_its_patience_and_resumes_its_count():
    def stopped_at(losses, state=None, first_epoch=0) -> int | None:
        model = small_model()
        stopping = ResumableEarlyStopping(monitor="val_loss", patience=2, state=state)
        stopping.set_model(model)
        stopping.on_train_begin()
        for epoch, loss in enumerate(losses, first_epoch):
            stopping.on_epoch_end(epoch, {"val_loss": loss})
            if model.stop_training:
                return epoch
        return None

    assert stopped_at([1.0, 0.9, 0.95, 0.97, 0.8]) == 3  # two epochs without a better loss
    assert stopped_at([1.0, 0.9, 0.8, 0.7]) is None
    # Resumed after epoch 3 with its best (0.9) and one epoch of waiting kept: it stops at the
    # first epoch it runs; counting afresh, it would take 0.95 as its best and run two more.
    state = {"wait": 1, "best": 0.9, "best_epoch": 1}
    assert stopped_at([0.95, 0.97, 0.98], state, first_epoch=3) == 3
    assert stopped_at([0.95, 0.97, 0.98], first_epoch=3) == 5


def test_resumable_callbacks_restore_their_counters():
    es = ResumableEarlyStopping(patience=5, state={"wait": 3, "best": 0.25, "best_epoch": 4})
    es.on_train_begin()
    assert (es.wait, es.best, es.best_epoch) == (3, 0.25, 4)
    assert es.state() == {"wait": 3, "best": 0.25, "best_epoch": 4}
    lr = ResumableReduceLROnPlateau(state={"wait": 1, "best": 0.5, "cooldown_counter": 2})
    lr.on_train_begin()
    assert (lr.wait, lr.best, lr.cooldown_counter) == (1, 0.5, 2)
    fresh = ResumableEarlyStopping(patience=5)
    fresh.on_train_begin()
    assert fresh.wait == 0 and fresh.best is None


def test_nan_in_fit_stops_training_and_keeps_the_last_good_model(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model = small_model()

    def batches():
        rng = np.random.default_rng(0)
        for step in range(100):
            x = rng.normal(size=(8, 4)).astype("float32")
            if step >= 4:  # the second epoch meets broken input
                x[0, 0] = np.nan
            yield x, rng.integers(0, 3, 8)

    val = (np.zeros((8, 4), "float32"), np.zeros(8, int))
    checkpoint = RunCheckpoint(run_dir, "val_loss")
    checkpoint.begin_phase(0, PhaseConfig(name="phase1", epochs=3), 0, {})
    with pytest.raises(CnnlabError, match=r"the loss became nan in epoch 2, batch 1"):
        model.fit(
            batches(), steps_per_epoch=4, epochs=3, validation_data=val, verbose=0,
            shuffle=False, callbacks=[StopOnNaN(), checkpoint],
        )  # fmt: skip
    good = keras.models.load_model(run_dir / "model.keras")
    assert all(np.isfinite(w).all() for w in good.get_weights())
    record = json.loads((run_dir / ".resume" / "progress.json").read_text())
    assert record["epoch"] == 1 and len(pd.read_csv(run_dir / "history.csv")) == 1
