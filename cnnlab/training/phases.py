"""Fitting a run's phases: each phase's optimizer, compilation and callbacks, and the loop that
continues a resumed run where its record says it stopped."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from cnnlab.config import Config, PhaseConfig, TrainConfig
from cnnlab.data import Dataset
from cnnlab.data.dataset import imbalance, label_text
from cnnlab.data.pipeline import predict, steps
from cnnlab.inference import BATCH_SIZE
from cnnlab.models.common import is_multi_label, trainable_parameters
from cnnlab.models.losses import LabelWeightedCrossentropy, SparseSmoothedCrossentropy
from cnnlab.models.optimizers import make_optimizer
from cnnlab.models.transfer import set_trainable, split_at_features
from cnnlab.training.callbacks import (
    ResumableEarlyStopping,
    ResumableReduceLROnPlateau,
    RunCheckpoint,
    StopOnNaN,
    TimeBudget,
)
from cnnlab.training.resume_record import Step
from cnnlab.utils.console import say, warn
from cnnlab.utils.errors import ConfigError


def compile_model(
    model: keras.Model,
    cfg: TrainConfig,
    train_size: int,
    phase: PhaseConfig | None = None,
    planned_epochs: int | None = None,
    label_weights: np.ndarray | None = None,
) -> None:
    """Compile for the loaders' labels with `phase`'s optimizer (default: the first phase).

    `train_size` sets the length of a learning-rate schedule; `planned_epochs` (a time
    budget) the epochs it is first fitted to; `label_weights` (several labels per image:
    class_weights' negatives' and positives' weights per class) weigh the loss.
    """
    phase = phase or cfg.stages()[0]
    # Loaders give integer class indices, so the sparse loss (no one-hot copy of the labels);
    # one sigmoid unit (two classes) takes them as 0/1 targets of binary cross-entropy, and so
    # does a sigmoid per class (several labels per image: 0/1 per class).
    smoothing = cfg.label_smoothing
    metrics = ["accuracy"]
    if is_multi_label(model):
        # Keras' "accuracy" would compare argmaxes; this is the share of (image, class)
        # decisions right at 0.5, under the same name in history.csv and the curves.
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy")]
        if label_weights is not None:
            loss = LabelWeightedCrossentropy(
                label_weights[1].tolist(), label_weights[0].tolist(), smoothing
            )
        else:
            loss = keras.losses.BinaryCrossentropy(label_smoothing=smoothing)
    elif model.output_shape[-1] == 1:
        loss = keras.losses.BinaryCrossentropy(label_smoothing=smoothing)
    elif smoothing:
        loss = SparseSmoothedCrossentropy(smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(
        optimizer=make_optimizer(
            phase, steps(train_size, cfg.batch_size), model, planned_epochs=planned_epochs
        ),
        loss=loss,
        metrics=metrics,
        jit_compile=cfg.jit_compile,
        steps_per_execution=cfg.steps_per_execution,
    )


def build_step_state(model: keras.Model, x, y) -> None:
    """Create the variables a compiled model's first training step would (the optimizer's
    slots, the compiled metrics' totals) now, from one example `x`, `y`.

    Without a distribution strategy, Keras on TensorFlow creates them inside the first call of
    the traced train step, and a tf.function whose first call creates variables is traced
    twice: seconds lost at the start of every phase. Keras builds them itself in the other
    cases (JAX, or a tf.distribute strategy); there only the optimizer is built here.
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return
    predicted = model(x, training=False)
    model.compute_loss(x, y, predicted, training=False)
    model.compute_metrics(x, y, predicted)
    model.reset_metrics()  # what one example added; fit resets them again anyway


def make_callbacks(
    cfg: TrainConfig,
    phase: PhaseConfig,
    checkpoint: RunCheckpoint,
    inside: bool = False,
    best_weights=None,
    steps_per_epoch: int = 1,
    start: int = 0,
) -> tuple[list[keras.callbacks.Callback], dict[str, keras.callbacks.Callback]]:
    """A phase's callbacks, and those of them whose counters the resume record keeps.

    With `inside` (a resumed run continuing this phase), the counters come back from the
    checkpoint's record, and early stopping gets `best_weights` (model.keras's) back. The
    run's checkpoint, shared by all phases, goes after these. A time budget plans the
    phase's epochs from `start` (epochs before the phase), `steps_per_epoch` steps each.
    """
    restored = checkpoint.record.callbacks if inside else {}
    stateful: dict[str, keras.callbacks.Callback] = {}
    callbacks: list[keras.callbacks.Callback] = [StopOnNaN()]
    if cfg.time_budget is not None:
        budget = restored.get("time_budget", {})
        stateful["time_budget"] = TimeBudget(
            cfg.time_budget, steps_per_epoch, start, phase.epochs,
            used=budget.get("used", 0.0), planned=budget.get("planned_epochs"),
        )  # fmt: skip
    if phase.early_stopping is not None:
        stateful["early_stopping"] = ResumableEarlyStopping(
            monitor=cfg.monitor,
            patience=phase.early_stopping.patience,
            min_delta=phase.early_stopping.min_delta,
            restore_best_weights=True,
            verbose=1,
            state=restored.get("early_stopping"),
            best_weights=best_weights if inside else None,
        )
    if phase.reduce_lr_on_plateau is not None:
        plateau = phase.reduce_lr_on_plateau
        stateful["reduce_lr_on_plateau"] = ResumableReduceLROnPlateau(
            monitor=cfg.monitor,
            factor=plateau.factor,
            patience=plateau.patience,
            min_lr=plateau.min_lr,
            verbose=1,
            state=restored.get("reduce_lr_on_plateau"),
        )
    callbacks.extend(stateful.values())
    if cfg.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=checkpoint.files.tensorboard))
    return callbacks, stateful


@dataclass(frozen=True)
class Fitting:
    """What fitting the phases works on: the model and its data, the checkpoint that carries
    history and the best model across phases, where to go on from, and how."""

    model: keras.Model
    data: Dataset
    checkpoint: RunCheckpoint
    step: Step  # the phase and epoch to go on from
    best_weights: list | None = None  # a resumed run's best model so far
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = ()  # e.g. tune's pruning
    shard: tuple[int, int] = (0, 1)  # (this process, processes) of a data_parallel run


def fit_phases(cfg: Config, fitting: Fitting) -> None:
    """Fit the phases from `fitting.step` on.

    Every phase recompiles (its own optimizer, schedule and trainable layers) and has its own
    early stopping. A phase continued `inside` keeps the loaded model's optimizer state. With
    `cache_features`, the frozen base runs once and each phase fits only the head.
    """
    model, data, checkpoint, step = fitting.model, fitting.data, fitting.checkpoint, fitting.step
    best_weights, extra_callbacks, shard = (
        fitting.best_weights, fitting.extra_callbacks, fitting.shard
    )  # fmt: skip
    from cnnlab.data.pipeline import BatchPlan, batches

    train_cfg = cfg.train
    x_train, x_val = data.x_train, data.x_val
    fit_model = model
    if getattr(cfg.model, "cache_features", False):
        fit_model, x_train, x_val = _cached_head(model, train_cfg, data)
    weights = class_weights(train_cfg, data.y_train, data.class_names)
    if weights is not None:
        # Several labels per image: the weights of each class's positives (its negatives' in
        # the loss beside them).
        shown_weights = weights[1] if data.multi_label else weights
        shown = ", ".join(
            f"{n} {w:.3g}" for n, w in zip(data.class_names, shown_weights, strict=True)
        )
        say(f"class weights{' of positives' if data.multi_label else ''}: {shown}")
    balanced = cfg.data.sampling == "balanced"
    uneven = imbalance(data.y_train, data.class_names)
    if uneven and weights is None and not balanced and step.epoch == 0:
        warn(uneven)
    label_weights = weights if data.multi_label else None
    if data.multi_label:
        weights = None  # in the loss, not as sample weights
    phases = train_cfg.stages()
    for index in range(step.phase, len(phases)):
        phase = phases[index]
        inside = step.inside and index == step.phase
        start = step.phase_start if index == step.phase else len(checkpoint.record.history)
        epoch = step.epoch if index == step.phase else start
        # A cached-features head's optimizer is not saved: it compiles afresh even inside.
        per_epoch = steps(len(x_train), train_cfg.batch_size)
        if not (inside and fit_model is model):
            set_trainable(model, phase.unfreeze)
            planned = phase.epochs if train_cfg.time_budget is not None else None
            compile_model(fit_model, train_cfg, len(x_train), phase, planned, label_weights)
        callbacks, stateful = make_callbacks(
            train_cfg, phase, checkpoint, inside, best_weights, per_epoch, start
        )
        checkpoint.begin_phase(index, phase, start, stateful, target=model)
        rate = f"{phase.optimizer} {phase.learning_rate:g}"
        if phase.optimizer == "muon":  # the kernels' own rate, then the others' (SGD)
            rate = (
                f"muon {phase.muon_keys.learning_rate:g}, other weights sgd {phase.learning_rate:g}"
            )
        say(
            f"{phase.name}: epochs {start + 1}-{start + phase.epochs}, {rate}, "
            f"{trainable_parameters(fit_model):,} trainable parameters"
        )
        build_step_state(fit_model, x_train[:1], data.y_train[:1])
        fit_model.fit(
            # Seeded per run (see batches for what a resumed run sees).
            batches(
                x_train,
                data.y_train,
                train_cfg.batch_size,
                BatchPlan(
                    seed=cfg.seed,
                    first_epoch=epoch,
                    epochs=start + phase.epochs - epoch,
                    alternate_flip=_alternating_flip(cfg),
                    balanced=balanced,
                    class_weights=weights,
                    shard=shard,
                ),
            ),
            steps_per_epoch=per_epoch,
            epochs=start + phase.epochs,
            initial_epoch=epoch,
            validation_data=batches(
                x_val, data.y_val, train_cfg.batch_size, BatchPlan(shard=shard)
            ),
            shuffle=False,  # the batches are shuffled already
            # The checkpoint last: it saves the others' state.
            callbacks=[*callbacks, *extra_callbacks, checkpoint],
            verbose=train_cfg.fit_verbose(),
        )
        if any(getattr(cb, "stop_run", False) for cb in extra_callbacks):
            break  # e.g. a pruned tuning trial: no later phases either


def class_weights(cfg: TrainConfig, y: np.ndarray, class_names: list[str]) -> np.ndarray | None:
    """One loss weight per class from `train.class_weight`, or None.

    balanced: n / (classes x n_class), scikit-learn's rule (a class with no training image
    weighs 1); a mapping: by class name, classes left out weigh 1.

    Several labels per image (`y` of 0/1 per class): a (2, classes) array, the weights of each
    class's negatives and positives. balanced: each class on its own as two classes by the
    same rule, n / (2 x n_positive) and n / (2 x n_negative); a mapping weighs a class's
    positives.

    Raises:
        ConfigError: a mapping names a class the data does not have.
    """
    setting = cfg.class_weight
    if setting is None:
        return None
    count = len(class_names)
    if y.ndim == 2 and setting == "balanced":
        positives = y.sum(axis=0).astype(np.float64)
        both = np.stack([len(y) - positives, positives])
        return np.where(both > 0, len(y) / (2 * np.maximum(both, 1)), 1.0)
    if setting == "balanced":
        counts = np.bincount(y, minlength=count).astype(np.float64)
        return np.where(counts > 0, len(y) / (count * np.maximum(counts, 1)), 1.0)
    unknown = sorted(set(setting) - set(class_names))
    if unknown:
        raise ConfigError(
            f"train.class_weight: no class named {', '.join(map(repr, unknown))}; the classes "
            f"are {', '.join(class_names)}"
        )
    given = np.array([setting.get(name, 1.0) for name in class_names], np.float64)
    return np.stack([np.ones(count), given]) if y.ndim == 2 else given


PREVIEW_IMAGES = 32  # of the first batch, in train_batch.png


def write_train_batch(cfg: Config, model: keras.Model, data: Dataset, out) -> bool:
    """Draw the first training batch (its first PREVIEW_IMAGES) after augmentation, labelled,
    into `out`; False when the run augments nothing (no file then)."""
    from cnnlab.data.pipeline import first_batch
    from cnnlab.models.common import augment, has_augmentation
    from cnnlab.reports import plot_batch

    flips = _alternating_flip(cfg)
    if not (has_augmentation(model) or flips):
        return False
    images, labels = first_batch(
        data.x_train, data.y_train, cfg.train.batch_size, cfg.seed, flips,
        cfg.data.sampling == "balanced",
    )  # fmt: skip
    images, labels = images[:PREVIEW_IMAGES], labels[:PREVIEW_IMAGES]
    shown = augment(model, images)
    names = [label_text(label, data.class_names) for label in labels]
    batch = min(cfg.train.batch_size, len(data.x_train))
    title = f"{cfg.name}: the first training batch after augmentation ({len(images)} of {batch:,})"
    plot_batch(shown, names, out, title)
    return True


def _alternating_flip(cfg: Config) -> bool:
    augmentation = cfg.model.augmentation
    return augmentation is not None and augmentation.flip == "alternating"


def _cached_head(model: keras.Model, train_cfg: TrainConfig, data: Dataset):
    """The head to fit on the frozen base's features, and those features of train and val."""
    extractor, head = split_at_features(model)
    say("computing the frozen base's features once ...")
    x_train, x_val = (
        predict(extractor, x, BATCH_SIZE).astype("float32") for x in (data.x_train, data.x_val)
    )
    # The saved model (image in, probabilities out) is scored and reloaded: compile it too,
    # with its optimizer built so that it saves and loads whole.
    label_weights = class_weights(train_cfg, data.y_train, data.class_names)
    compile_model(
        model, train_cfg, len(x_train), label_weights=label_weights if data.multi_label else None
    )
    model.optimizer.build(model.trainable_variables)
    return head, x_train, x_val
