"""Training schemas: optimizer, schedule, callbacks, phases, precision and devices."""

from __future__ import annotations

import importlib.util
import re
import sys
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from cnnlab.config.base import Count, Fraction, Schema


def maximizes(monitor: str) -> bool:
    """Whether a larger `monitor` value is better: accuracies (a loss is better smaller)."""
    return monitor.endswith("accuracy")


class EarlyStoppingConfig(Schema):
    patience: Count = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class ReduceLrConfig(Schema):
    """Keras ReduceLROnPlateau on the monitored metric."""

    factor: Fraction = 0.5
    patience: Count = 2
    min_lr: Annotated[float, Field(ge=0)] = 1e-6


VariableName = Annotated[str, Field(pattern=r"^\w+$")]

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def duration_seconds(value: Any) -> Any:
    """'1h30m', '20m', '45s', '2h', or a number of seconds, as seconds (a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return value  # the float check below says what is wrong
    if isinstance(value, int | float):
        return float(value)
    text = value.strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(text)
    if not text or match is None or not any(match.groups()):
        try:
            return float(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a duration: write seconds (1200) or hours, minutes and "
                "seconds such as 20m, 1h30m, 90s"
            ) from None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class EmaConfig(Schema):
    """An exponential moving average of the weights (Keras' `use_ema`), copied into the model
    every `overwrite_every` steps: with a few steps between copies it works as Lookahead does,
    pulling the weights back towards their recent average."""

    momentum: Annotated[float, Field(gt=0, lt=1)] = 0.9
    overwrite_every: Count = 5
    # true: airbench's Lookahead schedule, the momentum rising from 0 at the phase's first step
    # to `momentum` at its last, so that the weight kept of the average per copy grows as the
    # cube of the progress (little averaging early, a lot at the end).
    rise: bool = False


class MuonConfig(Schema):
    """Muon's keys (optimizer: muon): the convolution kernels' updates are the Nesterov momentum
    of their gradients, each orthogonalised by `ns_steps` Newton-Schulz iterations, and each
    kernel is rescaled to the norm sqrt(filters) before its step (airbench94_muon's rule)."""

    # The kernels' rate; it follows train's schedule (the same warmup, decay and time budget).
    learning_rate: Annotated[float, Field(gt=0)] = 0.02
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.95
    ns_steps: Annotated[int, Field(ge=1, le=10)] = 5


class _Optimization(Schema):
    """The keys a training phase may set for itself."""

    epochs: Count = 10
    # muon: the convolution kernels by Muon (`muon` keys), every other variable by SGD with
    # `learning_rate`, `momentum`, `nesterov`, `weight_decay` and `lr_multipliers`.
    optimizer: Literal["adam", "rmsprop", "sgd", "muon"] = "adam"
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0  # sgd, muon and rmsprop only
    nesterov: bool = False  # sgd or muon with momentum only
    muon: MuonConfig | None = None  # optimizer: muon only; null: MuonConfig's defaults
    # Decoupled weight decay (Keras' `weight_decay`): each step every weight shrinks by
    # learning_rate x weight_decay of itself, apart from the gradient step.
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    # The learning rate of the variables of a name, multiplied: e.g. {beta: 64} trains
    # BatchNorm's shifts 64 times as fast (their weight decay is not multiplied). Names are
    # Keras' variable names: kernel, bias, beta, gamma, ...
    lr_multipliers: dict[
        Annotated[str, Field(pattern=r"^\w+$")], Annotated[float, Field(gt=0)]
    ] = {}
    # cosine: decay to lr_end x learning_rate over the phase's steps along a half cosine;
    # linear: in a straight line (airbench's schedule). Either may start with a warmup.
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup: Annotated[float, Field(ge=0, lt=1)] = 0.0  # the fraction of the steps spent rising
    warmup_from: Annotated[float, Field(ge=0, le=1)] = 0.0  # x learning_rate at the first step
    lr_end: Annotated[float, Field(ge=0, le=1)] = 0.0  # x learning_rate at the last step
    ema: EmaConfig | None = None
    early_stopping: EarlyStoppingConfig | None = EarlyStoppingConfig()  # null: run every epoch
    reduce_lr_on_plateau: ReduceLrConfig | None = None

    @property
    def muon_keys(self) -> MuonConfig:
        """The `muon` keys in force: as given, or MuonConfig's defaults."""
        return self.muon or MuonConfig()

    @model_validator(mode="after")
    def _consistent(self):
        if self.momentum and self.optimizer == "adam":
            raise ValueError(
                "momentum applies to sgd, muon and rmsprop only; remove it or change optimizer"
            )
        if self.nesterov and not (self.optimizer in ("sgd", "muon") and self.momentum):
            raise ValueError("nesterov needs optimizer: sgd or muon with a momentum above 0")
        if self.muon is not None and self.optimizer != "muon":
            raise ValueError("muon needs optimizer: muon; remove it or change optimizer")
        scheduled = {"warmup": self.warmup, "warmup_from": self.warmup_from, "lr_end": self.lr_end}
        if self.lr_schedule == "constant" and any(scheduled.values()):
            key = next(k for k, v in scheduled.items() if v)
            raise ValueError(f"{key} needs lr_schedule: cosine or linear; set one or remove it")
        if self.lr_schedule != "constant" and self.reduce_lr_on_plateau is not None:
            raise ValueError(
                "reduce_lr_on_plateau needs lr_schedule: constant (a schedule already sets the "
                "learning rate); remove one of them"
            )
        return self


PHASE_KEYS = tuple(_Optimization.model_fields)


class PhaseConfig(_Optimization):
    """One stage of training with its own optimizer and trainable layers.

    Keys left out take the value of the same key under `train`. The model is compiled again
    at the start of each phase (fresh optimizer state); the run's history, best model and
    checkpoints span all phases.
    """

    name: str | None = None  # default phase<N>
    # Layers of a pretrained base (vgg16) that train in this phase, counted from its top: 0
    # keeps it frozen, 4 is Chollet's block5 fine-tuning, all unfreezes every layer.
    unfreeze: Annotated[int, Field(ge=0)] | Literal["all"] = 0


class TrainConfig(_Optimization):
    batch_size: Count = 128
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    # Train against targets of 1 - s + s/K for the true class and s/K for the others (K
    # classes): a less confident, often better calibrated and more accurate model. 0: off.
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # Training in stages, e.g. a frozen base then fine-tuning; without it, one phase made of
    # the keys above.
    phases: Annotated[list[PhaseConfig], Field(min_length=1)] | None = None
    # Keras dtype policy. auto: mixed_bfloat16 on GPUs of compute capability 8.0 or more and
    # (on TensorFlow) on CPUs with AVX512_BF16 or AMX, mixed_float16 on older GPUs (7.x),
    # float32 otherwise. The output layer always computes in float32.
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "auto"
    # XLA compilation of the training step. auto: Keras' choice, on for GPUs, off on CPU-only
    # machines (where it is several times slower).
    jit_compile: Literal["auto"] | bool = "auto"
    # Several devices. mirrored: TensorFlow's MirroredStrategy over all GPUs (or logical CPU
    # devices). data_parallel: keras.distribution.DataParallel on JAX over all local devices,
    # and over all processes when cnnlab runs as several (--num-processes). auto: data_parallel
    # on JAX with several devices or processes, mirrored on TensorFlow with two GPUs or more,
    # else one device. The batch_size is global (split across replicas and processes); the
    # learning rate is not rescaled.
    distribute: Literal["auto", "none", "mirrored", "data_parallel"] = "auto"
    # Batches run per call into the compiled step; more cuts per-step Python overhead.
    steps_per_execution: Count = 1
    # Keras' fit output: 1 the progress bar, 2 one line per epoch, 0 nothing; auto: the bar in
    # a terminal, one line per epoch when output goes to a file (CI, nohup, Slurm).
    verbose: Literal["auto", 0, 1, 2] = "auto"
    tensorboard: bool = False  # write TensorBoard logs to <run dir>/tensorboard
    # The time fitting may take, validation and checkpoints included (20m, 1h30m, or seconds):
    # after each epoch the run plans how many epochs fit (at most `epochs`) from the measured
    # speed, and the learning-rate schedule and the rising average are fitted to those steps.
    time_budget: Annotated[float, BeforeValidator(duration_seconds), Field(gt=0)] | None = None
    # Weigh each training image's loss by its class: balanced (n / (classes x n_class), as
    # scikit-learn's) or {class name: weight} (classes left out weigh 1). null: all alike.
    class_weight: (
        Literal["balanced"]
        | dict[Annotated[str, Field(min_length=1)], Annotated[float, Field(gt=0)]]
        | None
    ) = None

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard_installed(cls, wanted: bool) -> bool:
        if wanted and importlib.util.find_spec("tensorboard") is None:
            raise ValueError("needs the tensorboard package: pip install 'cnnlab[tensorboard]'")
        return wanted

    @field_validator("distribute", mode="before")
    @classmethod
    def _no_multi_worker(cls, value: Any) -> Any:
        if value == "multi_worker":
            raise ValueError(
                "TensorFlow's multi-worker training fails under Keras 3's fit "
                "(keras-team/keras#20585); to train across processes and hosts, use backend: jax "
                "with train.distribute: data_parallel"
            )
        return value

    @model_validator(mode="after")
    def _budget_one_phase(self):
        if self.time_budget is not None and self.phases and len(self.phases) > 1:
            raise ValueError(
                "time_budget plans the epochs of one phase; with several phases, set each "
                "phase's epochs instead, or remove time_budget"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _phases_inherit(cls, data: Any) -> Any:
        # Fill each phase's missing keys from train's own, so that the config written into
        # the run directory spells every phase out (and reads back the same).
        if not isinstance(data, dict) or not isinstance(data.get("phases"), list):
            return data
        inherited = {k: data[k] for k in PHASE_KEYS if k in data}
        phases = [
            {**inherited, **phase} if isinstance(phase, dict) else phase for phase in data["phases"]
        ]
        return {**data, "phases": phases}

    def stages(self) -> list[PhaseConfig]:
        """The phases to train, in order: `phases`, or one made of train's own keys."""
        if self.phases:
            return [
                p if p.name else p.model_copy(update={"name": f"phase{i + 1}"})
                for i, p in enumerate(self.phases)
            ]
        return [PhaseConfig(name="phase1", **{k: getattr(self, k) for k in PHASE_KEYS})]

    def fit_verbose(self) -> int:
        """Keras' fit verbosity: `auto` is the bar in a terminal, one line per epoch otherwise."""
        if self.verbose != "auto":
            return self.verbose
        return 1 if sys.stdout.isatty() else 2

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.stages())
