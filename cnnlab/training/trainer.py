"""One training run: seed, load, build, compile, fit the phases, score and finish the run; and
the ways to start one (several seeds, resuming an interrupted run)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import keras

from cnnlab import reports, runs
from cnnlab.config import Config
from cnnlab.data import BadFilesError, Dataset, describe_problems, load_dataset
from cnnlab.inference import headline
from cnnlab.models import ADAPT_IMAGES, adapt_model, build_model
from cnnlab.models.common import output_classes
from cnnlab.models.transfer import set_trainable
from cnnlab.scoring import score_run
from cnnlab.tracking import Tracker
from cnnlab.training.callbacks import RunCheckpoint
from cnnlab.training.cluster import ONE_PROCESS, Cluster
from cnnlab.training.distribute import Placement, make_placement
from cnnlab.training.phases import Fitting, fit_phases, write_train_batch
from cnnlab.training.resume_record import ResumeRecord
from cnnlab.utils.atomic import atomic_write, write_json
from cnnlab.utils.console import note, say, warn
from cnnlab.utils.environment import (
    describe_device,
    dtype_policy,
    environment,
    op_determinism,
    resolve_precision,
)
from cnnlab.utils.errors import CnnlabError, DataError, RunInterrupted
from cnnlab.utils.scratch import temporary_files_in
from cnnlab.utils.stopwatch import Stopwatch

# Training images scored when a run ends, unless train.score_train is full (one view each).
TRAIN_SCORE_SAMPLE = 10_000


def train(
    cfg: Config,
    resume: Path | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    parent_tracking_run: str | None = None,
    cluster: Cluster = ONE_PROCESS,
) -> Path:
    """Run one experiment end to end, or continue an interrupted one.

    Args:
        cfg: a validated config (see cnnlab.config.load_config).
        resume: a run directory to continue from its last complete epoch; `cfg` must be the
            config it was started with (runs.prepare_resume checks that).
        callbacks: more Keras callbacks for every phase (cnnlab tune's pruning); epochs are
            numbered across phases. One whose `stop_run` attribute is true after a phase
            ends the training there (the run is then scored and completed as usual).
        parent_tracking_run: the MLflow run this one is logged under (a tune study's).
        cluster: the processes training this model together (data_parallel); process 0
            writes the run directory, the others train alongside it and write nothing there.

    Returns:
        The run directory, holding the files cnnlab.runs names.
    """
    if not cluster.is_chief:
        return _train_alongside(cfg, resume, cluster)
    clock = Stopwatch()
    record = ResumeRecord.load(resume) if resume is not None else None
    run_dir = resume if resume is not None else runs.new_run_dir(cfg)
    runs.write_state(run_dir, "running")
    say(f"{'resuming' if resume else 'run directory'} {run_dir}")
    tracker = Tracker.open(cfg, run_dir, parent_tracking_run)
    callbacks = [*(callbacks or ()), *([tracker.callback()] if tracker else [])]
    try:
        with sigterm_interrupts():
            _run(cfg, run_dir, record, tuple(callbacks), cluster, clock)
    except KeyboardInterrupt:
        runs.write_state(run_dir, "interrupted", "stopped by Ctrl+C or SIGTERM")
        if tracker:
            tracker.finish(None, "KILLED")
        raise RunInterrupted(run_dir) from None
    except Exception as e:
        reason = str(e) if isinstance(e, CnnlabError) else f"{type(e).__name__}: {e}"
        runs.write_state(run_dir, "failed", reason)
        if tracker:
            tracker.finish(None, "FAILED")
        raise
    if tracker:
        tracker.finish(run_dir)
    say(f"report {runs.RunDir(run_dir).report}")
    return run_dir


@contextlib.contextmanager
def sigterm_interrupts():
    """Within the block, SIGTERM (a scheduler's or `kill`'s stop) interrupts as Ctrl+C does,
    so the run is marked interrupted and its resume command said. Main thread only."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train_alongside(cfg: Config, resume: Path | None, cluster: Cluster) -> Path:
    """A process other than 0 of a data_parallel run: the same steps as process 0, with its
    files in a scratch folder deleted afterwards and its output silenced. A resumed run starts
    from a copy of process 0's run directory (on several hosts, output_dir must be shared)."""
    scratch = Path(tempfile.mkdtemp(prefix=f"cnnlab-process{cluster.process_id}-"))
    try:
        if resume is not None:
            # Process 0 writes in its run directory meanwhile: not its temporary files.
            shutil.copytree(
                resume, scratch, dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(runs.TEMP_DIR, ".*.tmp*"),
            )  # fmt: skip
        record = ResumeRecord.load(scratch) if resume is not None else None
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            _run(cfg, scratch, record, (), cluster, Stopwatch())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return resume or scratch


def train_seeds(configs: list[Config], cluster: Cluster = ONE_PROCESS) -> list[Path]:
    """Train one run per config (the same config with different seeds), one after another."""
    done = []
    for i, cfg in enumerate(configs, 1):
        say(f"seed {cfg.seed} ({i}/{len(configs)})")
        done.append(train(cfg, cluster=cluster))
    listed = " ".join(str(d) for d in done)
    say(f"{len(done)} runs; score them as an ensemble with\n  cnnlab evaluate {listed}")
    return done


def start_or_resume(
    cfg: Config | None,
    resume: Path | None,
    ask: Callable[[str], bool] | None,
    cluster: Cluster = ONE_PROCESS,
) -> tuple[Config, Path | None]:
    """The config to train and the run to continue (None: a new run).

    Without `resume`, an interrupted run of the identical config is looked for: `ask` (a
    yes/no question to the user, None when nobody can answer) decides whether to continue
    it; otherwise the command that would is printed and a new run starts. Several processes
    never pick up an interrupted run by themselves: --resume given to each continues one.
    """
    if not cluster.is_chief:
        if resume is None:
            return cfg, None
        # Process 0 has marked the run running by now: the checks are its to make.
        run_dir, saved = runs.open_run(resume, need_data=True)
        return saved, run_dir
    if resume is None and cluster.processes > 1:
        return cfg, None
    if resume is None:
        found = runs.find_resumable(cfg)
        if found is None:
            return cfg, None
        if ask is not None and ask(f"{found} is an interrupted run of this config. Resume it?"):
            resume = found
        else:
            note(
                f"{found} is an interrupted run of this config; "
                f"`cnnlab train --resume {found}` continues it. Starting a new run."
            )
            return cfg, None
    resume, cfg = runs.prepare_resume(resume, cfg)
    return cfg, resume


def _run(
    cfg: Config, run_dir: Path, record: ResumeRecord | None, callbacks: tuple, cluster: Cluster,
    clock: Stopwatch,
) -> None:  # fmt: skip
    with temporary_files_in(runs.RunDir(run_dir).temp):
        _run_in(cfg, run_dir, record, callbacks, cluster, clock)


def _run_in(
    cfg: Config, run_dir: Path, record: ResumeRecord | None, callbacks: tuple, cluster: Cluster,
    clock: Stopwatch,
) -> None:  # fmt: skip
    keras.utils.set_random_seed(cfg.seed)
    device = describe_device()
    precision, why = resolve_precision(cfg.train.precision)
    say(f"training on {device} with {keras.backend.backend()}, precision {precision} ({why})")
    placement = _placement(cfg, cluster)
    with op_determinism(cfg.deterministic), dtype_policy(precision):
        if record is None:
            write_json(runs.RunDir(run_dir).environment, environment(cfg.seed, device))
        with clock.stage("decode"):
            data = _load_data(cfg, run_dir)
        runs.write_class_names(run_dir, data.class_names)
        if data.source:
            say(data.source)
        say(_describe_data(data))
        if record is None:
            with clock.stage("health"):
                _data_health(cfg, run_dir, data, cluster.is_chief)
        with placement.scope():
            data = _split_evenly(data, placement)
            model, best_weights = _model(cfg, run_dir, data, record)
            if (
                record is None
                and cluster.is_chief
                and write_train_batch(cfg, model, data, runs.RunDir(run_dir).train_batch)
            ):
                say(f"wrote {runs.RunDir(run_dir).train_batch}: the first batch, augmented")
            checkpoint = RunCheckpoint(run_dir, cfg.train.monitor, record)
            step = checkpoint.record.next_step(len(cfg.train.stages()))
            fitting = Fitting(
                model, data, checkpoint, step, best_weights, callbacks, placement.shard
            )
            if step is not None:
                with clock.stage("fit"):
                    fit_phases(cfg, fitting)
        if cluster.is_chief:
            # Scored on one device, outside the placement: the best model is read back anew.
            _finish(cfg, run_dir, fitting, Trained(device, placement, record is not None, clock))


def _placement(cfg: Config, cluster: Cluster) -> Placement:
    """The devices (and processes) the run trains on, said as it starts."""
    placement = make_placement(cfg.train.distribute, cluster.processes, cluster.process_id)
    if os.environ.get("TF_CONFIG") and keras.backend.backend() == "tensorflow":
        warn(
            "TF_CONFIG is set, but cnnlab does not train across TensorFlow workers "
            "(Keras 3's fit fails under MultiWorkerMirroredStrategy, keras-team/keras#20585); "
            "this process trains on its own. Across processes and hosts, use backend: jax "
            "with train.distribute: data_parallel"
        )
    if placement.replicas > 1:
        placement.check_batch_size(cfg.train.batch_size)
        placed = placement.describe(cfg.train.batch_size)
        processes = f", {placement.processes} processes" if placement.processes > 1 else ""
        say(
            f"{placement.name} over {placement.replicas} replicas{processes} "
            f"({', '.join(placement.devices)}): batch_size {placed['global_batch_size']} is the "
            f"global batch, {placed['per_replica_batch_size']:g} per replica; learning rate as "
            "configured"
        )
    return placement


def _split_evenly(data: Dataset, placement: Placement) -> Dataset:
    """The training and validation images cut to a multiple of the replica count, when
    data_parallel needs every batch to split evenly (at most replicas - 1 images each)."""
    for split in ("train", "val"):
        data.set_split(split, *placement.even_split(split, *data.split(split)))
    if placement.dropped:
        left = ", ".join(f"{n} {split}" for split, n in placement.dropped.items())
        say(f"left out {left} image(s) so that every batch splits evenly across the replicas")
    return data


def _load_data(cfg: Config, run_dir: Path) -> Dataset:
    """The config's data; files left out (or stopping the run) are listed in the run dir."""
    try:
        data = load_dataset(cfg.data, cfg.seed)
    except BadFilesError as e:
        listed = runs.write_bad_files(run_dir, e.problems)
        raise BadFilesError(f"{e} (full list: {listed})", e.problems) from None
    if data.problems:
        listed = runs.write_bad_files(run_dir, data.problems)
        say(f"skipped {describe_problems(data.problems)} (full list: {listed})")
    return data


def _data_health(cfg: Config, run_dir: Path, data: Dataset, writes: bool) -> None:
    """Duplicates, leaks and conflicting labels: said, written (data_health.json, leaks.png)
    and acted on as data.on_leak says."""
    from cnnlab.data.health import check_health, describe, drop_leaked

    record = check_health(data)
    leaks = sum(found["pairs"] for found in record["leaks"].values())
    for line in describe(record):
        (warn if line.startswith(("leak", "conflicting")) else say)(f"data health: {line}")
    if writes:
        write_json(runs.RunDir(run_dir).health, record)
        reports.plot_leaks(data, record, runs.RunDir(run_dir).leaks)
    if leaks and cfg.data.on_leak == "error":
        raise DataError(
            f"{leaks:,} images copy images of another split ({runs.HEALTH} lists them); "
            "remove them, or set data.on_leak: drop_from_test or warn"
        )
    if cfg.data.on_leak == "drop_from_test":
        dropped = drop_leaked(data, record)
        if dropped:
            say(f"data health: dropped {dropped:,} test images that copy train or validation")


def _describe_data(data: Dataset) -> str:
    test = "none" if data.x_test is None else f"{len(data.x_test):,}"
    if data.x_test is not None and data.y_test is None:
        test += " (unlabelled)"
    return (
        f"{len(data.x_train):,} train, {len(data.x_val):,} validation, {test} test images "
        f"of {'x'.join(map(str, data.input_shape))}, {data.num_classes} classes"
    )


def _model(cfg: Config, run_dir: Path, data: Dataset, record: ResumeRecord | None):
    """A new model (its summary written), or a resumed run's model and its best weights."""
    best_weights = None
    if record is None:
        model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.data)
        for name in adapt_model(model, data.x_train):
            say(f"{name}: set from {min(len(data.x_train), ADAPT_IMAGES):,} training images")
        set_trainable(model, cfg.train.stages()[0].unfreeze)
        lines: list[str] = []
        model.summary(print_fn=lambda text, **_: lines.append(text))
        atomic_write(runs.RunDir(run_dir).summary, "\n".join(lines) + "\n")
    else:
        # Weights, optimizer state (and so the learning-rate schedule's step) of the last
        # complete epoch; early stopping's best weights are those of model.keras.
        model = runs.load_model_file(record.model_path(run_dir))
        if runs.RunDir(run_dir).best_model.is_file():
            best_weights = runs.load_run_model(run_dir).get_weights()
        say(f"continuing after epoch {record.epoch}/{cfg.train.total_epochs}")
    data.check_labels(output_classes(model))
    say(f"model {model.name}, {model.count_params():,} parameters")
    return model, best_weights


class Trained(NamedTuple):
    """How a run trained, as metrics.json records it beside the scores."""

    device: str
    placement: Placement
    resumed: bool
    clock: Stopwatch


def _finish(cfg: Config, run_dir: Path, fitting: Fitting, trained: Trained) -> None:
    """Score the best model, write metrics.json and the reports, and mark the run completed."""
    data, model, record = fitting.data, fitting.model, fitting.checkpoint.record
    device, placement, resumed, clock = trained
    if record.best_epoch is None:
        raise CnnlabError(
            f"{run_dir}: no epoch produced a finite {cfg.train.monitor}, so no best model was "
            "saved; lower train.learning_rate"
        )
    epochs_run, seconds = len(record.history), record.train_seconds
    # Score the checkpoint itself: what evaluate and predict will load.
    best = runs.load_run_model(run_dir)
    extra = {
        "epochs_run": epochs_run,
        "best_epoch": record.best_epoch,
        "monitor": cfg.train.monitor,
        "train_seconds": round(seconds, 3),
        "phases": record.phases,
        "images_per_second": round(len(data.x_train) * epochs_run / seconds, 1),
        "params": int(best.count_params()),
        "device": device,
        "backend": keras.backend.backend(),
        "precision": keras.mixed_precision.global_policy().name,
        "distribute": placement.describe(cfg.train.batch_size),
        "jit_compile": bool(model.jit_compile),
        "resumed": resumed,
    }
    budget = record.callbacks.get("time_budget")
    if budget is not None:
        extra["time_budget"] = {**budget, "epochs_run": epochs_run}
    sample = None if cfg.train.score_train == "full" else TRAIN_SCORE_SAMPLE
    metrics = score_run(
        run_dir, best, data, runs.METRICS_FILE, splits=("train", "val", "test"), extra=extra,
        complete=True, tta=cfg.model.tta, train_sample=sample, timings=clock.seconds,
    )  # fmt: skip
    # Where the time went, the reports included: written into metrics.json and the report.
    metrics["timings"] = clock.timings()
    write_json(runs.RunDir(run_dir).metrics, metrics)
    reports.write_html_report(run_dir)
    summary = ", ".join(
        "{} {} {:.4f}".format(split, *headline(metrics[split])).replace("_", " ")
        for split in ("train", "val", "test")
        if metrics[split] is not None
    )
    say(
        f"best epoch {metrics['best_epoch']}/{epochs_run}: {summary} "
        f"({seconds:.0f} s, {metrics['images_per_second']:,.0f} images/s)"
    )
