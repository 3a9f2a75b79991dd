"""One training run: seed, load, build, compile, fit, evaluate the best model, save it all."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import keras

from cnnlab import reports, runs
from cnnlab.checkpoints import (
    ResumableEarlyStopping,
    ResumableReduceLROnPlateau,
    RunCheckpoint,
    StopOnNaN,
    load_resume_model,
    read_progress,
)
from cnnlab.config import Config, TrainConfig
from cnnlab.data import Dataset, load_dataset
from cnnlab.environment import describe_device, dtype_policy, environment, resolve_precision
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import score
from cnnlab.models import build_model
from cnnlab.predict import predict_labels, write_submission


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
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


def compile_model(model: keras.Model, cfg: TrainConfig, train_size: int) -> None:
    """Compile for integer labels; `train_size` sets the length of a learning-rate schedule."""
    # Loaders give integer class indices, so the sparse loss; no one-hot copy of the labels.
    model.compile(
        optimizer=make_optimizer(cfg, math.ceil(train_size / cfg.batch_size)),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
        jit_compile=cfg.jit_compile,
        steps_per_execution=cfg.steps_per_execution,
    )


def make_callbacks(
    cfg: TrainConfig, run_dir: Path, progress: dict | None = None, best_weights=None
) -> list[keras.callbacks.Callback]:
    """The run's callbacks; `progress` (from a resumed run) restores their counters."""
    restored = (progress or {}).get("callbacks", {})
    stateful: dict[str, keras.callbacks.Callback] = {}
    callbacks: list[keras.callbacks.Callback] = [StopOnNaN()]
    if cfg.early_stopping is not None:
        stateful["early_stopping"] = ResumableEarlyStopping(
            monitor=cfg.monitor,
            patience=cfg.early_stopping.patience,
            min_delta=cfg.early_stopping.min_delta,
            restore_best_weights=True,
            verbose=1,
            state=restored.get("early_stopping"),
            best_weights=best_weights,
        )
    if cfg.reduce_lr_on_plateau is not None:
        plateau = cfg.reduce_lr_on_plateau
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
    # Last: it saves the counters the callbacks above updated in the same epoch.
    callbacks.append(RunCheckpoint(run_dir, cfg.monitor, progress, stateful))
    return callbacks


def _describe_data(data: Dataset) -> str:
    test = "none" if data.x_test is None else f"{len(data.x_test):,}"
    if data.x_test is not None and data.y_test is None:
        test += " (unlabelled)"
    return (
        f"{len(data.x_train):,} train, {len(data.x_val):,} validation, {test} test images "
        f"of {'x'.join(map(str, data.input_shape))}, {data.num_classes} classes"
    )


def train(cfg: Config, resume: Path | None = None) -> Path:
    """Run one experiment end to end, or continue an interrupted one.

    Args:
        cfg: a validated config (see cnnlab.config.load_config).
        resume: a run directory to continue from its last complete epoch; `cfg` must be the
            config it was started with (cnnlab.resume checks that).

    Returns:
        The run directory, holding the files listed in cnnlab.runs and cnnlab.reports.
    """
    run_dir = resume if resume is not None else runs.new_run_dir(cfg)
    runs.write_state(run_dir, "running")
    print(f"cnnlab: {'resuming' if resume else 'run directory'} {run_dir}", flush=True)
    try:
        _run(cfg, run_dir, read_progress(run_dir) if resume else None)
    except KeyboardInterrupt:
        runs.write_state(run_dir, "interrupted", "stopped from the keyboard")
        raise
    except Exception as e:
        reason = str(e) if isinstance(e, CnnlabError) else f"{type(e).__name__}: {e}"
        runs.write_state(run_dir, "failed", reason)
        raise
    print(f"cnnlab: report {run_dir / reports.REPORT}", flush=True)
    return run_dir


def _run(cfg: Config, run_dir: Path, progress: dict | None) -> None:
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    device = describe_device()
    precision, why = resolve_precision(cfg.train.precision)
    print(f"cnnlab: training on {device}, precision {precision} ({why})", flush=True)
    with dtype_policy(precision):
        if progress is None:
            runs.write_json(run_dir / runs.ENVIRONMENT_FILE, environment(cfg.seed, device))
        _fit_and_score(cfg, run_dir, progress, device)


def _fit_and_score(cfg: Config, run_dir: Path, progress: dict | None, device: str) -> None:
    from cnnlab.data.pipeline import batches

    data = load_dataset(cfg.data, cfg.seed)
    print(f"cnnlab: {_describe_data(data)}", flush=True)
    best_weights = None
    if progress is None:
        model = build_model(cfg.model, data.input_shape, data.num_classes)
        compile_model(model, cfg.train, len(data.x_train))
        lines: list[str] = []
        model.summary(print_fn=lambda text, **_: lines.append(text))
        runs.atomic_write(run_dir / runs.SUMMARY_FILE, "\n".join(lines) + "\n")
    else:
        # Weights, optimizer state (and so the learning-rate schedule's step) of the last
        # complete epoch; early stopping's best weights are those of model.keras.
        model = load_resume_model(run_dir, progress)
        if (run_dir / runs.BEST_MODEL).is_file():
            best_weights = runs.load_run_model(run_dir).get_weights()
        print(f"cnnlab: continuing after epoch {progress['epoch']}/{cfg.train.epochs}", flush=True)
    data.check_labels(int(model.output_shape[-1]))
    print(f"cnnlab: model {model.name}, {model.count_params():,} parameters", flush=True)

    callbacks = make_callbacks(cfg.train, run_dir, progress, best_weights)
    checkpoint = callbacks[-1]
    start_epoch = progress["epoch"] if progress else 0
    if not (progress and progress["fit_done"]) and start_epoch < cfg.train.epochs:
        model.fit(
            # Seeded per run; a resumed run reshuffles from the seed again.
            batches(data.x_train, data.y_train, cfg.train.batch_size, shuffle_seed=cfg.seed),
            epochs=cfg.train.epochs,
            initial_epoch=start_epoch,
            validation_data=batches(data.x_val, data.y_val, cfg.train.batch_size),
            shuffle=False,  # the batches are shuffled already
            callbacks=callbacks,
            verbose=cfg.train.verbose,
        )
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
        "images_per_second": round(len(data.x_train) * epochs_run / train_seconds, 1),
        "params": int(best.count_params()),
        "device": device,
        "precision": keras.mixed_precision.global_policy().name,
        "jit_compile": bool(model.jit_compile),
        "resumed": progress is not None,
    }
    if data.x_test is not None and data.y_test is None:
        write_submission(predict_labels(best, data.x_test), run_dir / "submission.csv")
        print(f"cnnlab: wrote {run_dir / 'submission.csv'}", flush=True)
    runs.write_json(run_dir / runs.METRICS_FILE, metrics)
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
