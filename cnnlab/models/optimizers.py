"""A phase's optimizer and its learning-rate schedule, on either backend.

Keras' own optimizers do the work; cnnlab adds two things they lack: per-variable learning-rate
multipliers (airbench trains BatchNorm's shifts at 64 times the rate) and a warmup followed by
a linear decay (airbench's schedule). Both are registered Keras objects, so a checkpoint with
its optimizer state saves and loads as any other. They live beside cnnlab's layers for that
reason: a .keras file holds both, and loading one (cnnlab.runs) sits below training.
"""

from __future__ import annotations

import keras
from keras import ops

from cnnlab.config import PhaseConfig, TrainConfig
from cnnlab.utils.errors import CnnlabError


@keras.saving.register_keras_serializable(package="cnnlab")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """From `start` x `peak` up to `peak` over `warmup_steps`, then linearly down to
    `end` x `peak` at `decay_steps` (and held there)."""

    def __init__(self, peak, decay_steps, warmup_steps=0, start=1.0, end=0.0, name=None):
        super().__init__()
        self.peak, self.decay_steps, self.warmup_steps = peak, decay_steps, warmup_steps
        self.start, self.end, self.name = start, end, name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = max(self.warmup_steps, 1)
        rising = self.start + (1.0 - self.start) * step / warmup
        falling_steps = max(self.decay_steps - self.warmup_steps, 1)
        done = ops.clip((step - self.warmup_steps) / falling_steps, 0.0, 1.0)
        falling = 1.0 + (self.end - 1.0) * done
        fraction = ops.where(step < self.warmup_steps, rising, falling)
        return self.peak * fraction

    def get_config(self):
        return {
            "peak": self.peak, "decay_steps": self.decay_steps, "warmup_steps": self.warmup_steps,
            "start": self.start, "end": self.end, "name": self.name,
        }  # fmt: skip


@keras.saving.register_keras_serializable(package="cnnlab")
class PlannedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule`, made for `nominal_steps`, stretched or squeezed onto the steps a time budget
    plans: at step s of P planned, the rate of step s x nominal / P. Warmup and decay keep their
    shares of the run whatever P is. P is the optimizer's `planned_steps` variable (so a JAX
    train step sees it as state, and a checkpoint keeps it); TimeBudget sets it."""

    def __init__(self, schedule, nominal_steps: int, name=None):
        super().__init__()
        self.schedule, self.nominal_steps, self.name = schedule, nominal_steps, name
        self.planned = None  # the optimizer's variable, attached when it builds

    def __call__(self, step):
        planned = self.nominal_steps if self.planned is None else self.planned
        warped = ops.cast(step, "float32") * self.nominal_steps / ops.cast(planned, "float32")
        return self.schedule(warped)

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "nominal_steps": self.nominal_steps, "name": self.name,
        }  # fmt: skip

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


class _ScaledRates:
    """An optimizer whose learning rate is multiplied, for each variable whose name is a key of
    `lr_multipliers`, by that key's value (e.g. {"beta": 64.0} for BatchNorm's shifts).

    Only the step is scaled: Keras applies weight decay apart from update_step, at the base
    rate, so a multiplied variable decays as the others do (as in airbench).
    """

    def __init__(
        self,
        *args,
        lr_multipliers: dict[str, float] | None = None,
        ema_rise_steps: int | None = None,
        planned_steps: int | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self.ema_rise_steps = ema_rise_steps
        # With a time budget: the steps the run plans, a variable of the optimizer (build).
        self.planned_steps = planned_steps

    def build(self, variables):
        super().build(variables)
        if self.planned_steps is not None and not isinstance(self.planned_steps, keras.Variable):
            self.planned_steps = self.add_variable(
                (), initializer=keras.initializers.Constant(float(self.planned_steps)),
                dtype="float32", name="planned_steps",
            )  # fmt: skip
            if isinstance(self._learning_rate, PlannedSchedule):
                self._learning_rate.planned = self.planned_steps

    # Keras reads ema_momentum at every step (base_optimizer's moving average): with
    # ema_rise_steps it rises as momentum x (step / steps) ** (3 / overwrite frequency), so the
    # share of the old average kept per copy, momentum ** frequency x progress ** 3, follows
    # airbench's Lookahead.
    @property
    def ema_momentum(self):
        if not self.ema_rise_steps or not self.built:
            return self._ema_momentum
        steps = self.ema_rise_steps if self.planned_steps is None else self.planned_steps
        progress = ops.minimum(ops.cast(self.iterations, "float32") / steps, 1.0)
        power = 3.0 / (self.ema_overwrite_frequency or 1)
        return self._ema_momentum * ops.power(progress, power)

    @ema_momentum.setter
    def ema_momentum(self, value):
        self._ema_momentum = value

    def update_step(self, gradient, variable, learning_rate):
        factor = self.lr_multipliers.get(variable_name(variable))
        if factor is not None:
            learning_rate = ops.multiply(learning_rate, ops.cast(factor, learning_rate.dtype))
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {
            **super().get_config(),
            "ema_momentum": self._ema_momentum,
            "lr_multipliers": self.lr_multipliers,
            "ema_rise_steps": self.ema_rise_steps,
            "planned_steps": _number(self.planned_steps),
        }


def _number(value):
    """A planned_steps variable as the int it holds (configs hold numbers)."""
    if isinstance(value, keras.Variable):
        return int(round(float(ops.convert_to_numpy(value))))
    return value


@keras.saving.register_keras_serializable(package="cnnlab")
class SGD(_ScaledRates, keras.optimizers.SGD):
    """Keras' SGD with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="cnnlab")
class Adam(_ScaledRates, keras.optimizers.Adam):
    """Keras' Adam with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="cnnlab")
class RMSprop(_ScaledRates, keras.optimizers.RMSprop):
    """Keras' RMSprop with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="cnnlab")
class Muon(SGD):
    """Muon for the convolution kernels (4-D variables), cnnlab's SGD for every other one: the
    split airbench94_muon trains CIFAR-10 with (github KellerJordan/cifar10-airbench).

    A kernel's step: its momentum m <- muon_momentum x m + g; the Nesterov update g +
    muon_momentum x m, as a (k x k x in, filters) matrix, orthogonalised by `ns_steps` of
    Keras Muon's Newton-Schulz iterations; before the step the kernel is rescaled to the norm
    sqrt(filters). The kernels' rate is the optimizer's rate (its schedule included) times
    `muon_scale`, so one schedule, warmup and time budget drive both; kernels take no weight
    decay and no lr_multipliers. Keras' own Muon updates 2-D variables only and trains the
    others with AdamW, hence this class.
    """

    # Keras Muon's Newton-Schulz iteration and its coefficients, used as they are.
    zeropower_via_newtonschulz5 = keras.optimizers.Muon.zeropower_via_newtonschulz5
    transpose_last_axis = keras.optimizers.Muon.transpose_last_axis
    muon_a, muon_b, muon_c = 3.4445, -4.7750, 2.0315

    def __init__(self, *args, muon_scale=1.0, muon_momentum=0.95, ns_steps=5, **kwargs):
        super().__init__(*args, **kwargs)
        self.muon_scale, self.muon_momentum, self.ns_steps = muon_scale, muon_momentum, ns_steps

    @staticmethod
    def orthogonalised(variable) -> bool:
        return len(variable.shape) == 4

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.muon_momentums = [
            self.add_variable_from_reference(v, name="muon_momentum")
            if self.orthogonalised(v) else None
            for v in variables
        ]  # fmt: skip

    def _use_weight_decay(self, variable):
        return not self.orthogonalised(variable) and super()._use_weight_decay(variable)

    def update_step(self, gradient, variable, learning_rate):
        if not self.orthogonalised(variable):
            return super().update_step(gradient, variable, learning_rate)
        m = self.muon_momentums[self._get_variable_index(variable)]
        gradient = ops.cast(gradient, variable.dtype)
        self.assign(m, ops.add(ops.multiply(m, self.muon_momentum), gradient))
        nesterov = ops.add(gradient, ops.multiply(m, self.muon_momentum))
        shape = variable.shape
        update = self.zeropower_via_newtonschulz5(
            ops.reshape(nesterov, (-1, shape[-1])), self.ns_steps
        )
        norm = ops.sqrt(ops.sum(ops.square(variable)))
        self.assign(variable, ops.multiply(variable, float(shape[-1]) ** 0.5 / (norm + 1e-12)))
        rate = ops.cast(learning_rate, variable.dtype) * self.muon_scale
        self.assign_sub(variable, ops.multiply(ops.reshape(update, shape), rate))

    def get_config(self):
        return {
            **super().get_config(),
            "muon_scale": self.muon_scale, "muon_momentum": self.muon_momentum,
            "ns_steps": self.ns_steps,
        }  # fmt: skip


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "muon": Muon}
# Without multipliers or a rising average, Keras' own class: a run's model.keras then loads in
# plain Keras (`keras.models.load_model`), with no cnnlab installed.
KERAS_OPTIMIZERS = {
    "sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
}  # fmt: skip


def variable_name(variable) -> str:
    """A variable's own name ("beta"): on TensorFlow an optimizer updates the tf.Variable
    under a Keras variable, named by its path ("batch_normalization/beta:0")."""
    return variable.name.rsplit("/", 1)[-1].split(":", 1)[0]


def learning_rate(cfg: TrainConfig | PhaseConfig, steps_per_epoch: int):
    """The phase's learning rate: a number, or a schedule over the phase's steps."""
    rate, steps = cfg.learning_rate, cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup * steps)
    if cfg.lr_schedule == "cosine":
        # Keras' warmup runs from initial_learning_rate up to warmup_target.
        start = rate * cfg.warmup_from if warmup else rate
        return keras.optimizers.schedules.CosineDecay(
            start, decay_steps=steps - warmup, alpha=cfg.lr_end, warmup_steps=warmup,
            warmup_target=rate if warmup else None,
        )  # fmt: skip
    if cfg.lr_schedule == "linear":
        return WarmupLinearDecay(rate, steps, warmup, cfg.warmup_from, cfg.lr_end)
    return rate


def make_optimizer(
    cfg: TrainConfig | PhaseConfig,
    steps_per_epoch: int,
    model: keras.Model | None = None,
    planned_epochs: int | None = None,
) -> keras.optimizers.Optimizer:
    """The optimizer of a phase (or of train's own keys), its schedule over the phase's steps.

    With `planned_epochs` (a time budget), the schedule and the rising average follow the
    optimizer's `planned_steps` variable instead of the phase's `epochs` (see PlannedSchedule).

    Raises:
        CnnlabError: a learning-rate multiplier names no trainable variable of `model`.
    """
    rises = cfg.ema is not None and cfg.ema.rise
    rate = learning_rate(cfg, steps_per_epoch)
    if planned_epochs is not None and not isinstance(rate, float):
        rate = PlannedSchedule(rate, cfg.epochs * steps_per_epoch)
    options = {"learning_rate": rate, "weight_decay": cfg.weight_decay or None}
    if cfg.lr_multipliers or rises or planned_epochs is not None:
        options["lr_multipliers"] = cfg.lr_multipliers
    if planned_epochs is not None:
        options["planned_steps"] = planned_epochs * steps_per_epoch
    if cfg.ema is not None:
        options.update(
            use_ema=True,
            ema_momentum=cfg.ema.momentum,
            ema_overwrite_frequency=cfg.ema.overwrite_every,
        )
    if rises:
        options["ema_rise_steps"] = cfg.epochs * steps_per_epoch
    if cfg.optimizer in ("sgd", "muon"):
        options.update(momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "muon":
        muon = cfg.muon_keys
        options.update(
            lr_multipliers=cfg.lr_multipliers, muon_scale=muon.learning_rate / cfg.learning_rate,
            muon_momentum=muon.momentum, ns_steps=muon.ns_steps,
        )  # fmt: skip
    elif cfg.optimizer == "rmsprop":
        options["momentum"] = cfg.momentum
    if model is not None and cfg.lr_multipliers:
        names = {variable_name(v) for v in model.trainable_variables}
        unknown = sorted(set(cfg.lr_multipliers) - names)
        if unknown:
            raise CnnlabError(
                f"train.lr_multipliers: no trainable variable of model {model.name} is named "
                f"{', '.join(map(repr, unknown))}; its names are {', '.join(sorted(names))}"
            )
    kinds = OPTIMIZERS if "lr_multipliers" in options else KERAS_OPTIMIZERS
    return kinds[cfg.optimizer](**options)
