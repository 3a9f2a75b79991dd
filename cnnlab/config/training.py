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
    """Stop when the monitored value (`monitor`) has not improved for `patience` epochs."""

    patience: Count = Field(5, description="Epochs without improvement before training stops.")
    min_delta: Annotated[float, Field(ge=0)] = Field(
        0.0, description="The smallest change of the monitored value that counts as improvement."
    )


class ReduceLrConfig(Schema):
    """Keras ReduceLROnPlateau on the monitored metric."""

    factor: Fraction = Field(0.5, description="The learning rate is multiplied by this.")
    patience: Count = Field(2, description="Epochs without improvement before it is.")
    min_lr: Annotated[float, Field(ge=0)] = Field(
        1e-6, description="The rate is never reduced below this."
    )


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

    momentum: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.9, description="The average's momentum (its final momentum with `rise`)."
    )
    overwrite_every: Count = Field(
        5, description="The average is copied into the model every this many steps."
    )
    rise: bool = Field(
        False,
        description="true: airbench's Lookahead schedule, the momentum rising from 0 at the "
        "phase's first step to `momentum` at its last, so that the weight kept of the average "
        "per copy grows as the cube of the progress (little averaging early, a lot at the end).",
    )


class MuonConfig(Schema):
    """Muon's keys (optimizer: muon): the convolution kernels' updates are the Nesterov momentum
    of their gradients, each orthogonalised by `ns_steps` Newton-Schulz iterations, and each
    kernel is rescaled to the norm sqrt(filters) before its step (airbench94_muon's rule)."""

    learning_rate: Annotated[float, Field(gt=0)] = Field(
        0.02,
        description="The kernels' learning rate, times the schedule's factor: the same warmup, "
        "decay and time budget as the rest.",
    )
    momentum: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.95, description="The Nesterov momentum of the kernels' gradients."
    )
    ns_steps: Annotated[int, Field(ge=1, le=10)] = Field(
        5, description="Newton-Schulz iterations that orthogonalise each kernel's step."
    )


class _Optimization(Schema):
    """The keys a training phase may set for itself."""

    epochs: Count = Field(
        10, description="Epochs to train (the most, with early stopping or `time_budget`)."
    )
    optimizer: Literal["adam", "rmsprop", "sgd", "muon"] = Field(
        "adam",
        description="`muon`: the convolution kernels by Muon (the `muon` keys), every other "
        "variable by SGD with `learning_rate`, `momentum`, `nesterov`, `weight_decay` and "
        "`lr_multipliers`.",
    )
    learning_rate: Annotated[float, Field(gt=0)] = Field(
        1e-3, description="The learning rate (the peak of a schedule)."
    )
    momentum: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0, description="Momentum: `sgd`, `muon` (its SGD part) and `rmsprop` only."
    )
    nesterov: bool = Field(
        False, description="true: Nesterov momentum (`sgd` or `muon` with momentum only)."
    )
    muon: MuonConfig | None = Field(
        None,
        description="Muon's keys (`optimizer: muon` only), e.g. `{learning_rate: 0.02, "
        "momentum: 0.95, ns_steps: 5}`; null: their defaults.",
    )
    weight_decay: Annotated[float, Field(ge=0)] = Field(
        0.0,
        description="Decoupled weight decay (Keras' `weight_decay`): each step every weight "
        "shrinks by learning_rate x weight_decay of itself, apart from the gradient step.",
    )
    lr_multipliers: dict[Annotated[str, Field(pattern=r"^\w+$")], Annotated[float, Field(gt=0)]] = (
        Field(
            {},
            description="The learning rate of the variables of a name, multiplied: e.g. "
            "`{beta: 64}` trains BatchNorm's shifts 64 times as fast (their weight decay is not "
            "multiplied). Names are Keras' variable names: kernel, bias, beta, gamma, ...",
        )
    )
    lr_schedule: Literal["constant", "cosine", "linear"] = Field(
        "constant",
        description="`cosine`: decay from `learning_rate` to `lr_end` x `learning_rate` over "
        "the phase's steps along a half cosine; `linear`: in a straight line (airbench's "
        "schedule). Either may start with a warmup.",
    )
    warmup: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0,
        description="With a schedule: the fraction of the steps spent rising from "
        "`warmup_from` x `learning_rate`.",
    )
    warmup_from: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="With a schedule: the rate at the first step, times `learning_rate`."
    )
    lr_end: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="With a schedule: the rate at the last step, times `learning_rate`."
    )
    ema: EmaConfig | None = Field(
        None,
        description="A moving average of the weights copied into the model every few steps, "
        "e.g. `{momentum: 0.9, overwrite_every: 5, rise: false}`; null: none.",
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        EarlyStoppingConfig(),
        description="Stop when the monitored value stops improving; null: train every epoch.",
    )
    reduce_lr_on_plateau: ReduceLrConfig | None = Field(
        None,
        description="Lower the rate when the monitored value stops improving, e.g. "
        "`{factor: 0.5, patience: 2, min_lr: 1e-6}`; `lr_schedule: constant` only.",
    )

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

    name: str | None = Field(
        None, description="The phase's name in the history and metrics. Default: `phase<N>`."
    )
    unfreeze: Annotated[int, Field(ge=0)] | Literal["all"] = Field(
        0,
        description="Layers of a pretrained base (builders `pretrained`, `vgg16`) that train in "
        "this phase, counted from its top: 0 keeps it frozen, 4 is VGG16's block5 (Chollet's "
        "fine-tuning), `all` unfreezes every layer. BatchNormalization layers stay in inference "
        "mode.",
    )


class TrainConfig(_Optimization):
    """How the model is trained. The keys a phase may set for itself (see `train.phases`) are
    the defaults of every phase."""

    batch_size: Count = Field(
        128,
        description="Images a step: the global batch, split across replicas and processes "
        "when several devices train.",
    )
    monitor: Literal["val_loss", "val_accuracy"] = Field(
        "val_loss",
        description="The value that picks the best epoch (`model.keras`) and drives early "
        "stopping, the plateau and tuning. Several labels per image: `val_loss` (Keras' "
        "accuracy there is the share of image-class decisions right at 0.5).",
    )
    score_train: Literal["sample", "full"] = Field(
        "sample",
        description="How the training split is scored when training ends (metrics.json's "
        "`train`). `sample`: at most 10,000 of its images (seeded), one view each: enough to "
        "see overfitting, in seconds. `full`: every training image, with `model.tta`'s views.",
    )
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0,
        description="Train against targets of 1 - s + s/K for the true class and s/K for each "
        "of the K - 1 others (for one sigmoid unit, and for each class's sigmoid with several "
        "labels per image, Keras' binary smoothing: 1 - s/2 and s/2): a less confident, often "
        "better calibrated and more accurate model. 0: off.",
    )
    phases: Annotated[list[PhaseConfig], Field(min_length=1)] | None = Field(
        None,
        description="Training in stages, e.g. a frozen base then fine-tuning; without it, one "
        "phase made of train's own keys.",
    )
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto",
        description="The Keras dtype policy. `auto`: mixed_bfloat16 on GPUs of compute "
        "capability 8.0 or more and (on TensorFlow) on CPUs with AVX512_BF16 or AMX, "
        "mixed_float16 on older GPUs (7.x), float32 otherwise. Weights and the output layer "
        "stay float32.",
    )
    jit_compile: Literal["auto"] | bool = Field(
        "auto",
        description="XLA compilation of the training step. `auto`: Keras' choice, on for GPUs, "
        "off on CPU-only machines (where it is several times slower), and off on TensorFlow "
        "for a model with rotation, zoom, translation or shift augmentation, which XLA cannot "
        "compile there.",
    )
    distribute: Literal["auto", "none", "mirrored", "data_parallel"] = Field(
        "auto",
        description="Several devices. `mirrored`: TensorFlow's MirroredStrategy over all GPUs "
        "(or logical CPU devices). `data_parallel`: keras.distribution.DataParallel on JAX over "
        "all local devices, and over all processes when cnnlab runs as several "
        "(`--num-processes`). `auto`: data_parallel on JAX with several devices or processes, "
        "mirrored on TensorFlow with two GPUs or more, else one device. The learning rate is "
        "not rescaled.",
    )
    steps_per_execution: Count = Field(
        1,
        description="Batches run per call into the compiled step; more cuts per-step Python "
        "overhead.",
    )
    verbose: Literal["auto", 0, 1, 2] = Field(
        "auto",
        description="Keras' fit output: 1 the progress bar, 2 one line per epoch, 0 nothing. "
        "`auto`: the bar in a terminal or a notebook, one line per epoch when output goes to a "
        "file (CI, nohup, Slurm).",
    )
    tensorboard: bool = Field(
        False,
        description="true: TensorBoard logs in `<run dir>/tensorboard` "
        "(`pip install 'cnnlab[tensorboard]'`).",
    )
    time_budget: Annotated[float, BeforeValidator(duration_seconds), Field(gt=0)] | None = Field(
        None,
        description="The time fitting may take, validation and checkpoints included (`20m`, "
        "`1h30m`, or seconds): after each epoch the run plans how many epochs fit (at most "
        "`epochs`) from the measured speed, and the learning-rate schedule and a rising "
        "average are fitted to those steps. One phase only.",
    )
    class_weight: (
        Literal["balanced"]
        | dict[Annotated[str, Field(min_length=1)], Annotated[float, Field(gt=0)]]
        | None
    ) = Field(
        None,
        description="Weigh each training image's loss by its class: `balanced` (n / (classes "
        "x n_class), scikit-learn's rule) or `{class name: weight}` (classes left out weigh "
        "1). null: all alike.",
    )

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
        """Keras' fit verbosity: `auto` is the bar in a terminal or a notebook (where it
        redraws in place), one line per epoch otherwise (a file)."""
        if self.verbose != "auto":
            return self.verbose
        return 1 if sys.stdout.isatty() or "ipykernel" in sys.modules else 2

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.stages())
