"""One training run: seed, load, build, compile, fit, evaluate the best model, save it all."""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras

from cnnlab import reports, runs
from cnnlab.config import Config, TrainConfig
from cnnlab.data import Dataset, load_dataset
from cnnlab.environment import describe_device, environment
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
    )


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to each epoch's logs (and so to history.csv)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


def make_callbacks(cfg: TrainConfig, run_dir: Path) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = [
        EpochTimer(),
        keras.callbacks.ModelCheckpoint(
            run_dir / runs.BEST_MODEL, monitor=cfg.monitor, save_best_only=True
        ),
        keras.callbacks.ModelCheckpoint(run_dir / runs.LAST_MODEL),
    ]
    if cfg.early_stopping is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=cfg.monitor,
                patience=cfg.early_stopping.patience,
                min_delta=cfg.early_stopping.min_delta,
                restore_best_weights=True,
                verbose=1,
            )
        )
    if cfg.reduce_lr_on_plateau is not None:
        plateau = cfg.reduce_lr_on_plateau
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=cfg.monitor,
                factor=plateau.factor,
                patience=plateau.patience,
                min_lr=plateau.min_lr,
                verbose=1,
            )
        )
    if cfg.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=run_dir / "tensorboard"))
    # Last, so the row it writes includes what the callbacks above added to the logs.
    callbacks.append(keras.callbacks.CSVLogger(run_dir / runs.HISTORY_FILE))
    return callbacks


def _best_epoch(history: dict[str, list[float]], monitor: str) -> int:
    """1-based epoch with the best monitored value (the one model.keras holds)."""
    values = history[monitor]
    pick = max if monitor.endswith("accuracy") else min
    return values.index(pick(values)) + 1


def _describe_data(data: Dataset) -> str:
    test = "none" if data.x_test is None else f"{len(data.x_test):,}"
    if data.x_test is not None and data.y_test is None:
        test += " (unlabelled)"
    return (
        f"{len(data.x_train):,} train, {len(data.x_val):,} validation, {test} test images "
        f"of {'x'.join(map(str, data.input_shape))}, {data.num_classes} classes"
    )


def train(cfg: Config) -> Path:
    """Run one experiment end to end.

    Args:
        cfg: a validated config (see cnnlab.config.load_config).

    Returns:
        The new run directory, holding the files listed in cnnlab.runs and cnnlab.reports.
    """
    run_dir = runs.new_run_dir(cfg)
    runs.write_state(run_dir, "running")
    print(f"cnnlab: run directory {run_dir}", flush=True)
    try:
        _run(cfg, run_dir)
    except KeyboardInterrupt:
        runs.write_state(run_dir, "interrupted", "stopped from the keyboard")
        raise
    except Exception as e:
        reason = str(e) if isinstance(e, CnnlabError) else f"{type(e).__name__}: {e}"
        runs.write_state(run_dir, "failed", reason)
        raise
    print(f"cnnlab: report {run_dir / reports.REPORT}", flush=True)
    return run_dir


def _run(cfg: Config, run_dir: Path) -> None:
    keras.utils.set_random_seed(cfg.seed)
    device = describe_device()
    print(f"cnnlab: training on {device}", flush=True)
    runs.write_json(run_dir / runs.ENVIRONMENT_FILE, environment(cfg.seed, device))

    data = load_dataset(cfg.data, cfg.seed)
    print(f"cnnlab: {_describe_data(data)}", flush=True)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    compile_model(model, cfg.train, len(data.x_train))
    lines: list[str] = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    runs.atomic_write(run_dir / runs.SUMMARY_FILE, "\n".join(lines) + "\n")
    print(f"cnnlab: model {model.name}, {model.count_params():,} parameters", flush=True)

    started = time.perf_counter()
    history = model.fit(
        data.x_train,
        data.y_train,
        batch_size=cfg.train.batch_size,
        epochs=cfg.train.epochs,
        validation_data=(data.x_val, data.y_val),
        callbacks=make_callbacks(cfg.train, run_dir),
        verbose=cfg.train.verbose,
    ).history
    train_seconds = time.perf_counter() - started
    epochs_run = len(history["loss"])

    if not (run_dir / runs.BEST_MODEL).is_file():
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
        "best_epoch": _best_epoch(history, cfg.train.monitor),
        "monitor": cfg.train.monitor,
        "train_seconds": round(train_seconds, 3),
        "images_per_second": round(len(data.x_train) * epochs_run / train_seconds, 1),
        "params": int(best.count_params()),
        "device": device,
    }
    if data.x_test is not None and data.y_test is None:
        write_submission(predict_labels(best, data.x_test), run_dir / "submission.csv")
        print(f"cnnlab: wrote {run_dir / 'submission.csv'}", flush=True)
    runs.write_json(run_dir / runs.METRICS_FILE, metrics)
    runs.write_state(run_dir, "completed")
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
