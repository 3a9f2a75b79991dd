"""One training run: seed, load, build, compile, fit, evaluate the best model, save it all."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from pathlib import Path

import keras

from cnnlab import reports, runs
from cnnlab.atomic import atomic_write, write_json
from cnnlab.checkpoints import (
    ResumableEarlyStopping,
    ResumableReduceLROnPlateau,
    RunCheckpoint,
    StopOnNaN,
    load_resume_model,
    read_progress,
)
from cnnlab.config import Config, PhaseConfig, TrainConfig
from cnnlab.data import Dataset, load_dataset
from cnnlab.data.image_dir import BAD_FILES, BadFilesError, describe_problems, write_problems
from cnnlab.distribute import Placement, make_placement
from cnnlab.environment import describe_device, dtype_policy, environment, resolve_precision
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import score
from cnnlab.models import build_model
from cnnlab.models.common import output_classes, trainable_parameters
from cnnlab.models.transfer import set_trainable, split_at_features
from cnnlab.predict import PREDICT_BATCH_SIZE, predict_labels, write_submission


def make_optimizer(
    cfg: TrainConfig | PhaseConfig, steps_per_epoch: int
) -> keras.optimizers.Optimizer:
    """The optimizer of a phase (or of train's own keys), its schedule over the phase's steps."""
    rate = cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            rate, decay_steps=cfg.epochs * steps_per_epoch
        )
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate, momentum=cfg.momentum)
    return keras.optimizers.SGD(rate, momentum=cfg.momentum)


def compile_model(
    model: keras.Model, cfg: TrainConfig, train_size: int, phase: PhaseConfig | None = None
) -> None:
    """Compile for integer labels with `phase`'s optimizer (default: the first phase).

    `train_size` sets the length of a learning-rate schedule.
    """
    phase = phase or cfg.stages()[0]
    # Loaders give integer class indices, so the sparse loss (no one-hot copy of the labels);
    # one sigmoid unit (two classes) takes them as 0/1 targets of binary cross-entropy.
    if model.output_shape[-1] == 1:
        loss = keras.losses.BinaryCrossentropy()
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(
        optimizer=make_optimizer(phase, math.ceil(train_size / cfg.batch_size)),
        loss=loss,
        metrics=["accuracy"],
        jit_compile=cfg.jit_compile,
        steps_per_execution=cfg.steps_per_execution,
    )


def make_callbacks(
    cfg: TrainConfig,
    phase: PhaseConfig,
    run_dir: Path,
    restored: dict | None = None,
    best_weights=None,
) -> tuple[list[keras.callbacks.Callback], dict[str, keras.callbacks.Callback]]:
    """A phase's callbacks, and those of them whose counters a resumed run restores.

    `restored` holds those counters (from a resumed run's progress record); the run's
    RunCheckpoint, shared by all phases, goes after these.
    """
    restored = restored or {}
    stateful: dict[str, keras.callbacks.Callback] = {}
    callbacks: list[keras.callbacks.Callback] = [StopOnNaN()]
    if phase.early_stopping is not None:
        stateful["early_stopping"] = ResumableEarlyStopping(
            monitor=cfg.monitor,
            patience=phase.early_stopping.patience,
            min_delta=phase.early_stopping.min_delta,
            restore_best_weights=True,
            verbose=1,
            state=restored.get("early_stopping"),
            best_weights=best_weights,
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
        callbacks.append(keras.callbacks.TensorBoard(log_dir=run_dir / "tensorboard"))
    return callbacks, stateful


def _describe_data(data: Dataset) -> str:
    test = "none" if data.x_test is None else f"{len(data.x_test):,}"
    if data.x_test is not None and data.y_test is None:
        test += " (unlabelled)"
    return (
        f"{len(data.x_train):,} train, {len(data.x_val):,} validation, {test} test images "
        f"of {'x'.join(map(str, data.input_shape))}, {data.num_classes} classes"
    )


def train(
    cfg: Config,
    resume: Path | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> Path:
    """Run one experiment end to end, or continue an interrupted one.

    Args:
        cfg: a validated config (see cnnlab.config.load_config).
        resume: a run directory to continue from its last complete epoch; `cfg` must be the
            config it was started with (cnnlab.resume checks that).
        callbacks: more Keras callbacks for every phase (cnnlab tune's pruning); epochs are
            numbered across phases. One whose `stop_run` attribute is true after a phase
            ends the training there (the run is then scored and completed as usual).

    Returns:
        The run directory, holding the files listed in cnnlab.runs and cnnlab.reports.
    """
    run_dir = resume if resume is not None else runs.new_run_dir(cfg)
    runs.write_state(run_dir, "running")
    print(f"cnnlab: {'resuming' if resume else 'run directory'} {run_dir}", flush=True)
    try:
        _run(cfg, run_dir, read_progress(run_dir) if resume else None, callbacks or [])
    except KeyboardInterrupt:
        runs.write_state(run_dir, "interrupted", "stopped from the keyboard")
        raise
    except Exception as e:
        reason = str(e) if isinstance(e, CnnlabError) else f"{type(e).__name__}: {e}"
        runs.write_state(run_dir, "failed", reason)
        raise
    print(f"cnnlab: report {run_dir / reports.REPORT}", flush=True)
    return run_dir


def _load_data(cfg: Config, run_dir: Path) -> Dataset:
    """The config's data; files left out (or stopping the run) are listed in the run dir."""
    try:
        data = load_dataset(cfg.data, cfg.seed)
    except BadFilesError as e:
        write_problems(e.problems, run_dir / BAD_FILES)
        raise BadFilesError(f"{e} (full list: {run_dir / BAD_FILES})", e.problems) from None
    if data.problems:
        write_problems(data.problems, run_dir / BAD_FILES)
        print(
            f"cnnlab: skipped {describe_problems(data.problems)} (full list: "
            f"{run_dir / BAD_FILES})",
            flush=True,
        )
    return data


def _fit_phases(
    cfg: Config,
    model: keras.Model,
    data: Dataset,
    checkpoint: RunCheckpoint,
    progress: dict | None,
    best_weights,
    extra_callbacks: list[keras.callbacks.Callback],
) -> None:
    """Fit each phase in turn, continuing a resumed run where its record says it stopped.

    Every phase recompiles (its own optimizer, schedule and trainable layers) and has its own
    early stopping; `checkpoint` carries the history and the best model across them. With
    `cache_features`, the frozen base runs once and each phase fits only the head.
    """
    from cnnlab.data.pipeline import batches

    train_cfg = cfg.train
    x_train, x_val = data.x_train, data.x_val
    fit_model = model
    if getattr(cfg.model, "cache_features", False):
        extractor, fit_model = split_at_features(model)
        print("cnnlab: computing the frozen base's features once ...", flush=True)
        x_train, x_val = (
            extractor.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=0).astype("float32")
            for x in (data.x_train, data.x_val)
        )
        # The saved model (image in, probabilities out) is scored and reloaded: compile it too,
        # with its optimizer built so that it saves and loads whole.
        compile_model(model, train_cfg, len(x_train))
        model.optimizer.build(model.trainable_variables)
    if progress is not None:  # records from before phases existed had one phase
        progress = {"phase": 0, "phase_start": 0, "phase_done": progress["fit_done"], **progress}
    epoch = progress["epoch"] if progress else 0
    phases = train_cfg.stages()
    for index, phase in enumerate(phases):
        if progress is not None and (
            index < progress["phase"] or (index == progress["phase"] and progress["phase_done"])
        ):
            continue  # finished before the interruption
        continuing = progress is not None and index == progress["phase"]
        start = progress["phase_start"] if continuing else epoch
        # A continued phase keeps the loaded model's optimizer state; a new phase compiles
        # afresh (so does a cached-features head, whose optimizer is not saved).
        if not (continuing and fit_model is model):
            set_trainable(model, phase.unfreeze)
            compile_model(fit_model, train_cfg, len(x_train), phase)
        callbacks, stateful = make_callbacks(
            train_cfg,
            phase,
            checkpoint.run_dir,
            progress["callbacks"] if continuing else None,
            best_weights if continuing else None,
        )
        checkpoint.begin_phase(
            index, phase, start, stateful, target=model, last=index == len(phases) - 1
        )
        print(
            f"cnnlab: {phase.name}: epochs {start + 1}-{start + phase.epochs}, {phase.optimizer} "
            f"{phase.learning_rate:g}, {trainable_parameters(fit_model):,} trainable parameters",
            flush=True,
        )
        fit_model.fit(
            # Seeded per run; a resumed run reshuffles from the seed again.
            batches(x_train, data.y_train, train_cfg.batch_size, shuffle_seed=cfg.seed),
            epochs=start + phase.epochs,
            initial_epoch=epoch,
            validation_data=batches(x_val, data.y_val, train_cfg.batch_size),
            shuffle=False,  # the batches are shuffled already
            # The checkpoint last: it saves the others' state.
            callbacks=[*callbacks, *extra_callbacks, checkpoint],
            verbose=train_cfg.verbose,
        )
        epoch = len(checkpoint.history)
        if any(getattr(cb, "stop_run", False) for cb in extra_callbacks):
            break  # e.g. a pruned tuning trial: no later phases either


def _run(
    cfg: Config,
    run_dir: Path,
    progress: dict | None,
    callbacks: list[keras.callbacks.Callback],
) -> None:
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    device = describe_device()
    precision, why = resolve_precision(cfg.train.precision)
    print(f"cnnlab: training on {device}, precision {precision} ({why})", flush=True)
    placement = make_placement(cfg.train.distribute)
    if os.environ.get("TF_CONFIG"):
        print(
            "cnnlab: warning: TF_CONFIG is set, but cnnlab does not train across workers "
            "(Keras 3's fit fails under MultiWorkerMirroredStrategy, keras-team/keras#20585); "
            "this process trains on its own",
            flush=True,
        )
    if placement.strategy is not None:
        placed = placement.describe(cfg.train.batch_size)
        print(
            f"cnnlab: {placement.name} over {placement.replicas} replicas "
            f"({', '.join(placement.devices)}): batch_size {placed['global_batch_size']} is the "
            f"global batch, {placed['per_replica_batch_size']:g} per replica; learning rate as "
            "configured",
            flush=True,
        )
    scope = placement.strategy.scope() if placement.strategy else contextlib.nullcontext()
    with dtype_policy(precision), scope:
        if progress is None:
            write_json(run_dir / runs.ENVIRONMENT_FILE, environment(cfg.seed, device))
        _fit_and_score(cfg, run_dir, progress, device, placement, callbacks)


def _fit_and_score(
    cfg: Config,
    run_dir: Path,
    progress: dict | None,
    device: str,
    placement: Placement,
    extra_callbacks: list[keras.callbacks.Callback],
) -> None:
    data = _load_data(cfg, run_dir)
    print(f"cnnlab: {_describe_data(data)}", flush=True)
    phases = cfg.train.stages()
    best_weights = None
    if progress is None:
        model = build_model(cfg.model, data.input_shape, data.num_classes)
        set_trainable(model, phases[0].unfreeze)
        lines: list[str] = []
        model.summary(print_fn=lambda text, **_: lines.append(text))
        atomic_write(run_dir / runs.SUMMARY_FILE, "\n".join(lines) + "\n")
    else:
        # Weights, optimizer state (and so the learning-rate schedule's step) of the last
        # complete epoch; early stopping's best weights are those of model.keras.
        model = load_resume_model(run_dir, progress)
        if (run_dir / runs.BEST_MODEL).is_file():
            best_weights = runs.load_run_model(run_dir).get_weights()
        print(
            f"cnnlab: continuing after epoch {progress['epoch']}/{cfg.train.total_epochs}",
            flush=True,
        )
    data.check_labels(output_classes(model))
    print(f"cnnlab: model {model.name}, {model.count_params():,} parameters", flush=True)

    checkpoint = RunCheckpoint(run_dir, cfg.train.monitor, progress)
    if not (progress and progress["fit_done"]):
        _fit_phases(cfg, model, data, checkpoint, progress, best_weights, extra_callbacks)
    epochs_run = len(checkpoint.history)
    train_seconds = checkpoint.train_seconds

    if checkpoint.best_epoch is None:
        raise CnnlabError(
            f"{run_dir}: no epoch produced a finite {cfg.train.monitor}, so no best model was "
            "saved; lower train.learning_rate"
        )
    # Score the checkpoint itself: what evaluate and predict-csv will load.
    best = runs.load_run_model(run_dir)
    metrics = {
        "train": score(best, data.x_train, data.y_train),
        "val": score(best, data.x_val, data.y_val),
        "test": None if data.y_test is None else score(best, data.x_test, data.y_test),
        "epochs_run": epochs_run,
        "best_epoch": checkpoint.best_epoch,
        "monitor": cfg.train.monitor,
        "train_seconds": round(train_seconds, 3),
        "phases": checkpoint.phases,
        "images_per_second": round(len(data.x_train) * epochs_run / train_seconds, 1),
        "params": int(best.count_params()),
        "device": device,
        "precision": keras.mixed_precision.global_policy().name,
        "distribute": placement.describe(cfg.train.batch_size),
        "jit_compile": bool(model.jit_compile),
        "resumed": progress is not None,
    }
    if data.x_test is not None and data.y_test is None:
        write_submission(predict_labels(best, data.x_test), run_dir / "submission.csv")
        print(f"cnnlab: wrote {run_dir / 'submission.csv'}", flush=True)
    write_json(run_dir / runs.METRICS_FILE, metrics)
    runs.write_state(run_dir, "completed")
    # The resume record duplicates last.keras; a completed run has no use for it.
    shutil.rmtree(run_dir / runs.RESUME_DIR, ignore_errors=True)
    reports.write_run_reports(run_dir, best, data)
    summary = ", ".join(
        f"{split} accuracy {metrics[split]['accuracy']:.4f}"
        for split in ("train", "val", "test")
        if metrics[split] is not None
    )
    print(
        f"cnnlab: best epoch {metrics['best_epoch']}/{epochs_run}: {summary} "
        f"({train_seconds:.0f} s, {metrics['images_per_second']:,.0f} images/s)",
        flush=True,
    )
