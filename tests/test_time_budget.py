"""train.time_budget: durations, the schedule fitted to the planned steps, the planning
callback, and a real run that ends inside its budget with its schedule complete."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from cnnlab.config import TrainConfig
from cnnlab.config.training import duration_seconds
from cnnlab.models.optimizers import PlannedSchedule, WarmupLinearDecay, make_optimizer
from cnnlab.training.callbacks import TimeBudget, clock

from .helpers import MNIST_NPZ, invoke_ok, only_run


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("20m", 1200), ("1h30m", 5400), ("90s", 90), ("2h", 7200), ("1200", 1200), (45, 45),
     ("1.5h", 5400), ("2m30s", 150), (" 10M ", 600)],
)  # fmt: skip
def test_durations(text, seconds):
    assert duration_seconds(text) == seconds
    assert TrainConfig(time_budget=text).time_budget == seconds


@pytest.mark.parametrize("bad", ["soon", "10 minutes", "m", "-5m", "0"])
def test_a_bad_duration_is_refused(bad):
    with pytest.raises(ValueError, match="time_budget"):
        TrainConfig(time_budget=bad)


def test_a_budget_plans_one_phase():
    with pytest.raises(ValueError, match="time_budget plans the epochs of one phase"):
        TrainConfig(time_budget="10m", phases=[{"epochs": 1}, {"epochs": 2}])


def test_clock():
    assert [clock(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m05s"]


def test_the_schedule_is_squeezed_onto_the_planned_steps():
    base = WarmupLinearDecay(1.0, decay_steps=100, warmup_steps=20, start=0.2, end=0.1)
    planned = PlannedSchedule(base, nominal_steps=100)
    assert float(planned(50)) == pytest.approx(float(base(50)))  # not planned yet: as made
    planned.planned = keras.Variable(40.0)
    # 40 steps planned of 100: warmup ends at step 8, the decay at step 40.
    for step, nominal in ((0, 0), (4, 10), (8, 20), (24, 60), (40, 100), (60, 100)):
        assert float(planned(step)) == pytest.approx(float(base(nominal)), rel=1e-5)
    again = PlannedSchedule.from_config(planned.get_config())
    assert isinstance(again.schedule, WarmupLinearDecay) and again.nominal_steps == 100


def test_the_optimizer_keeps_the_plan_and_the_rising_average_follows_it():
    cfg = TrainConfig(
        optimizer="sgd", learning_rate=1.0, epochs=10, lr_schedule="cosine",
        ema={"momentum": 0.9, "rise": True},
    )  # fmt: skip
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = make_optimizer(cfg, steps_per_epoch=10, model=model, planned_epochs=10)
    optimizer.build(model.trainable_variables)
    assert float(optimizer.planned_steps) == 100
    optimizer.planned_steps.assign(50.0)
    optimizer.iterations.assign(50)
    assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-6)  # decayed: 50 of 50
    assert float(optimizer.ema_momentum) == pytest.approx(0.9)  # risen all the way
    assert optimizer.get_config()["planned_steps"] == 50


def fit_with_budget(budget: TimeBudget, epochs: int = 50) -> keras.callbacks.History:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x = np.ones((64, 4), "float32")
    return model.fit(
        x, np.zeros((64, 2)), batch_size=8, epochs=epochs, verbose=0, callbacks=[budget],
        validation_data=(x[:8], np.zeros((8, 2))),
    )  # fmt: skip


def test_time_spent_before_a_resume_counts():
    spent = TimeBudget(seconds=60, steps_per_epoch=8, first_epoch=0, max_epochs=50, used=59.99)
    history = fit_with_budget(spent)
    assert len(history.epoch) == 1 and spent.planned == 1
    assert spent.state()["used"] >= 59.99


def test_a_budget_that_holds_every_epoch_runs_them_all():
    roomy = TimeBudget(seconds=3600, steps_per_epoch=8, first_epoch=0, max_epochs=5)
    assert len(fit_with_budget(roomy, epochs=5).epoch) == 5
    assert roomy.planned == 5 and 0 < roomy.used < 3600


def test_a_run_ends_inside_its_budget_with_its_schedule_complete(tmp_path):
    budget = 5.0
    config = tmp_path / "budget.yaml"
    config.write_text(
        f"data: {{loader: mnist, path: {MNIST_NPZ}, max_samples: 1500}}\n"
        "model: {builder: small_cnn, filters: [8, 16]}\n"
        "train: {epochs: 500, batch_size: 64, optimizer: sgd, learning_rate: 0.05,\n"
        "        momentum: 0.9, lr_schedule: linear, warmup: 0.2, warmup_from: 0.1,\n"
        f"        lr_end: 0.05, time_budget: {budget}, early_stopping: null, verbose: 0}}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    result = invoke_ok("train", config)
    assert "time budget 5s:" in result.output and "planned" in result.output
    run = only_run(tmp_path / "out")
    metrics = json.loads((run / "metrics.json").read_text())
    planned = metrics["time_budget"]
    assert 1 < metrics["epochs_run"] < 500
    assert planned["planned_epochs"] == metrics["epochs_run"] == planned["epochs_run"]
    assert planned["seconds"] == budget and planned["max_epochs"] == 500
    # Within the budget and one epoch: the machine's speed varies, a test must not time it.
    epochs = pd.read_csv(run / "history.csv")["epoch_seconds"]
    assert len(epochs) == metrics["epochs_run"]
    assert planned["used"] <= budget + epochs.max() + 1.0
    last = keras.models.load_model(run / "last.keras")
    # The decay was fitted to the epochs run: the last step is at lr_end x learning_rate.
    assert float(last.optimizer.learning_rate) == pytest.approx(0.05 * 0.05, rel=1e-3)
