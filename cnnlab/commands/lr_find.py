"""`cnnlab lr-find`: the learning-rate range test (Leslie Smith's, as fastai's lr_find).

A fresh model of the config, with its first phase's optimizer at a constant rate, trains for
`steps` batches while the rate rises exponentially from `low` to `high`. The loss of each batch
is smoothed (an exponential average with bias correction); the suggestion is the rate where the
smoothed loss falls fastest against log(rate), taken before the rate of the lowest loss, since
past that minimum the fall is noise or divergence. There is no suggestion, and the reason is
said, when the loss never falls or diverges from the start.

The folder it writes holds lr_find.csv (step, rate, loss, smoothed), lr_find.json and
lr_find.png; nothing else is written.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import keras
import numpy as np

from cnnlab.config import Config
from cnnlab.data import load_dataset
from cnnlab.data.pipeline import BatchPlan, batches, steps
from cnnlab.models import adapt_model, build_model
from cnnlab.models.transfer import set_trainable
from cnnlab.training.phases import build_step_state, compile_model
from cnnlab.utils.atomic import atomic_path, write_json
from cnnlab.utils.console import say
from cnnlab.utils.environment import dtype_policy, resolve_precision
from cnnlab.utils.errors import CnnlabError, RunDirError

SMOOTHING = 0.98  # fastai's
DIVERGED = 4.0  # the smoothed loss past this times its minimum: stop, the rate is too high


class RateRange(keras.callbacks.Callback):
    """Sets the rate of batch i to low x (high / low) ** (i / (steps - 1)) and records each
    batch's loss; stops once the smoothed loss diverges."""

    def __init__(self, low: float, high: float, total: int):
        super().__init__()
        self.low, self.high, self.total = low, high, total
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._mean = self._average = 0.0

    def rate(self, i: int) -> float:
        return self.low * (self.high / self.low) ** (i / max(self.total - 1, 1))

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate(batch))

    def on_train_batch_end(self, batch, logs=None):
        # Keras logs the mean loss of the epoch so far; the batch's own loss is the difference.
        mean = float(logs["loss"])
        loss = (batch + 1) * mean - batch * self._mean
        self._mean = mean
        self.rates.append(self.rate(batch))
        self.losses.append(loss)
        self._average = SMOOTHING * self._average + (1 - SMOOTHING) * loss
        self.smoothed.append(self._average / (1 - SMOOTHING ** (batch + 1)))
        if not math.isfinite(loss) or self.smoothed[-1] > DIVERGED * min(self.smoothed):
            self.model.stop_training = True


def suggest(rates: list[float], smoothed: list[float]) -> tuple[float | None, str]:
    """(suggested rate or None, the reason) from the smoothed loss curve.

    Whenever the loss falls below its first value, the suggestion is the rate where it falls
    steepest before its lowest point, however small the fall (a small one is said); without
    a fall, the reason says whether the loss rose from the start (the rates begin too high)
    or stayed flat (they end too low, or the data does not fit the labels).
    """
    finite = [i for i, v in enumerate(smoothed) if math.isfinite(v)]
    if len(finite) < 10:
        return None, (
            f"the loss diverged after {len(finite)} steps, at {rates[len(finite) - 1]:.2g}: "
            "lower --min"
            if finite
            else "the loss was not finite from the first step"
        )
    curve = np.array([smoothed[i] for i in finite])
    lowest = int(curve.argmin())
    if lowest == 0:
        if len(finite) < len(smoothed) or curve.max() > 1.02 * curve[0]:
            return None, (
                f"the loss diverged from the start (it rose from {curve[0]:.4g} at "
                f"{rates[finite[0]]:.2g} and never fell below it): lower --min"
            )
        return None, (
            f"the loss never fell (it stayed near {curve[0]:.4g}): raise --max or --steps, or "
            "check the data"
        )
    logs = np.log10(np.array([rates[i] for i in finite]))
    slopes = np.gradient(curve, logs)
    # Skip the first steps, where the average has seen few batches.
    start = min(len(curve) // 10, lowest - 1)
    steepest = start + int(slopes[start:lowest].argmin())
    fall = 1 - curve[lowest] / curve[0]
    small = " (a small fall: compare with a rate 3x lower)" if fall < 0.02 else ""
    return float(rates[finite[steepest]]), (
        f"steepest descent of the smoothed loss, below the lowest loss at "
        f"{rates[finite[lowest]]:.2g}, {fall:.1%} under the first{small}"
    )


def find_rate(
    cfg: Config, config_path: Path, total: int, low: float, high: float, out: Path | None
) -> dict:
    """Run the range test; write and return its record."""
    if not 0 < low < high:
        raise CnnlabError(f"--min {low:g} --max {high:g}: need 0 < min < max")
    if total < 10:
        raise CnnlabError(f"--steps {total}: at least 10")
    folder = out or cfg.output_dir / f"{cfg.name}-lr-find-{datetime.now():%Y%m%d-%H%M%S}"
    if folder.exists() and any(folder.iterdir()):
        raise RunDirError(f"{folder}: not empty; give another -o folder")
    data = load_dataset(cfg.data, cfg.seed)
    phase = cfg.train.stages()[0]
    constant = phase.model_copy(
        update={"lr_schedule": "constant", "warmup": 0.0, "warmup_from": 0.0, "lr_end": 0.0,
                "ema": None, "reduce_lr_on_plateau": None, "learning_rate": low}
    )  # fmt: skip
    precision, _ = resolve_precision(cfg.train.precision)
    keras.utils.set_random_seed(cfg.seed)
    with dtype_policy(precision):
        model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.data)
        adapt_model(model, data.x_train)
        set_trainable(model, phase.unfreeze)
        compile_model(model, cfg.train, len(data.x_train), constant)
        build_step_state(model, data.x_train[:1], data.y_train[:1])
        per_epoch = steps(len(data.x_train), cfg.train.batch_size)
        probe = RateRange(low, high, total)
        say(
            f"{total} steps of {cfg.train.batch_size} images, {phase.optimizer} from {low:g} "
            f"to {high:g} ..."
        )
        model.fit(
            batches(
                data.x_train, data.y_train, cfg.train.batch_size,
                BatchPlan(seed=cfg.seed, epochs=math.ceil(total / per_epoch)),
            ),
            steps_per_epoch=total, epochs=1, callbacks=[probe], verbose=0, shuffle=False,
        )  # fmt: skip
    rate, reason = suggest(probe.rates, probe.smoothed)
    record = {
        "config": str(config_path), "optimizer": phase.optimizer,
        "batch_size": cfg.train.batch_size, "steps": len(probe.rates), "min": low, "max": high,
        "suggested_learning_rate": rate, "reason": reason, "precision": precision,
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    _write_curve(folder, probe)
    _plot(folder / "lr_find.png", probe, rate, cfg.name)
    write_json(folder / "lr_find.json", record)
    record["folder"] = str(folder)
    return record


def _write_curve(folder: Path, probe: RateRange) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {"step": np.arange(1, len(probe.rates) + 1), "learning_rate": probe.rates,
         "loss": probe.losses, "smoothed_loss": probe.smoothed}
    )  # fmt: skip
    with atomic_path(folder / "lr_find.csv") as tmp:
        frame.to_csv(tmp, index=False)


def _plot(path: Path, probe: RateRange, rate: float | None, name: str) -> None:
    from cnnlab.reports import figure

    fig = figure(figsize=(7, 4.2))
    ax = fig.subplots()
    ax.plot(probe.rates, probe.losses, color="0.75", linewidth=0.8, label="loss of each batch")
    ax.plot(probe.rates, probe.smoothed, color="C0", linewidth=2, label="smoothed")
    finite = [v for v in probe.smoothed if math.isfinite(v)]
    if finite:
        low, first = min(finite), finite[0]
        span = max(first - low, 0.05 * abs(first), 1e-6)
        ax.set_ylim(low - 0.4 * span, first + 0.4 * span)
        lowest = probe.smoothed.index(low)
        ax.axvline(probe.rates[lowest], color="0.4", linestyle=":", label="lowest loss")
    if rate is not None:
        ax.axvline(rate, color="C3", linestyle="--", label=f"suggested {rate:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"{name}: learning-rate range test")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
