"""Hyperparameter search on an Optuna study: every trial is an ordinary cnnlab run.

The search space is a YAML file of config keys and distributions:

    train.learning_rate: {log_uniform: [1e-4, 1e-2]}
    train.batch_size: {choice: [64, 128]}
    model.dropout: {uniform: [0.0, 0.5]}
    train.epochs: {int: [3, 8]}

The study lives in an RDB: by default a SQLite file in the study folder; any process given
the same `--storage` URL and study name (PostgreSQL or MySQL for several hosts) joins it.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import keras

from cnnlab import runs
from cnnlab.config import Config, ConfigError, dump_config, load_config, read_yaml_mapping
from cnnlab.config.training import maximizes
from cnnlab.inference import headline
from cnnlab.tracking import Tracker
from cnnlab.utils.atomic import atomic_write
from cnnlab.utils.errors import CnnlabError, first_line

DISTRIBUTIONS = ("log_uniform", "uniform", "int", "choice")
STUDY_DB = "study.db"
BEST_CONFIG = "best.yaml"
TRIALS_CSV = "trials.csv"


def load_space(path: Path, config: Path, overrides: list[str]) -> dict[str, dict[str, Any]]:
    """Read and check a search space: every key must be a config key every value fits.

    Returns:
        {dotted key: {kind: [arguments]}}.

    Raises:
        ConfigError: naming the space file's line and the key.
    """
    data, lines = read_yaml_mapping(path, "search space", "train.learning_rate: {...}")
    if not data:
        raise ConfigError(
            f"{path}: empty search space; name config keys, e.g. "
            "train.learning_rate: {log_uniform: [1e-4, 1e-2]}"
        )
    space = {}
    for key, spec in data.items():
        where = f"{lines.get((key,), path)}: {key}"
        kind, args = _check_spec(spec, where)
        # Each end of a range, and every choice, must make a valid config.
        for value in args:
            try:
                load_config(config, [*overrides, f"{key}={_yaml(value)}"])
            except ConfigError as e:
                raise ConfigError(
                    f"{where}: {value!r} does not fit {config}: {first_line(e)}"
                ) from None
        space[str(key)] = {kind: args}
    return space


def _check_spec(spec: Any, where: str) -> tuple[str, list]:
    if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS):
        raise ConfigError(
            f"{where}: expected one of {{{', '.join(f'{d}: ...' for d in DISTRIBUTIONS)}}}; "
            f"got {spec!r}"
        )
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: choice needs a non-empty list, e.g. [0.25, 0.5]")
        return kind, args
    numbers = (int,) if kind == "int" else (int, float)
    if not (
        isinstance(args, list)
        and len(args) == 2
        and all(isinstance(a, numbers) and not isinstance(a, bool) for a in args)
        and args[0] < args[1]
    ):
        what = "integers" if kind == "int" else "numbers"
        raise ConfigError(f"{where}: {kind} needs [low, high] {what} with low < high; got {args!r}")
    if kind == "log_uniform" and args[0] <= 0:
        raise ConfigError(f"{where}: log_uniform needs a low bound above 0; got {args[0]!r}")
    return kind, args


def _yaml(value: Any) -> str:
    return json.dumps(value)  # JSON is YAML: lists, numbers and strings read back unchanged


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One value per key, drawn by the study's sampler."""
    params = {}
    for key, spec in space.items():
        ((kind, args),) = spec.items()
        if kind == "log_uniform":
            params[key] = trial.suggest_float(key, args[0], args[1], log=True)
        elif kind == "uniform":
            params[key] = trial.suggest_float(key, args[0], args[1])
        elif kind == "int":
            params[key] = trial.suggest_int(key, args[0], args[1])
        else:
            # Optuna stores plain values; a list or mapping choice goes in as its YAML text.
            params[key] = trial.suggest_categorical(key, [_encode(v) for v in args])
    return params


def _encode(value: Any) -> Any:
    return _yaml(value) if isinstance(value, list | dict) else value


def trial_overrides(params: dict[str, Any], space: dict[str, dict[str, Any]]) -> list[str]:
    """`key=value` overrides that give a trial's parameters to load_config."""
    out = []
    for key, value in params.items():
        encoded = "choice" in space[key] and any(
            isinstance(v, list | dict) for v in space[key]["choice"]
        )
        out.append(f"{key}={value if encoded and isinstance(value, str) else _yaml(value)}")
    return out


class ReportToTrial(keras.callbacks.Callback):
    """Reports the monitored value after every epoch; stops the run when the pruner says so.

    `stop_run` tells cnnlab.training.trainer to skip the later phases of a pruned trial as well.
    """

    def __init__(self, trial, monitor: str):
        super().__init__()
        self.trial, self.monitor, self.pruned, self.epochs = trial, monitor, False, 0

    @property
    def stop_run(self) -> bool:
        return self.pruned

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=epoch)
        self.epochs = epoch + 1
        if self.trial.should_prune():
            self.pruned = True
            self.model.stop_training = True


def tune(
    config: Path,
    space_file: Path,
    trials: int,
    storage: str | None = None,
    study_name: str | None = None,
    overrides: list[str] | None = None,
    pruner=None,
) -> dict[str, Any]:
    """Run `trials` trials of a study (more processes may work on the same study at once).

    Args:
        config: the base experiment YAML; each trial overrides the space's keys.
        space_file: the search space (see the module docstring).
        trials: how many trials this process runs.
        storage: an Optuna RDB URL; default sqlite in `<output_dir>/<study>/study.db`.
        study_name: default `<config name>-tune`.
        overrides: `--set` values applied to every trial.
        pruner: an optuna pruner; default MedianPruner (after 2 finished trials and 1 epoch).

    Returns:
        {"study", "storage", "folder", "best": {"value", "params", "run", "config"} or None}.
    """
    try:
        import optuna
    except ImportError:
        raise CnnlabError("cnnlab tune needs Optuna: pip install 'cnnlab[tune]'") from None

    overrides = list(overrides or [])
    base = load_config(config, overrides)
    space = load_space(space_file, config, overrides)
    name, folder = _study_folder(base, study_name)
    url = storage or f"sqlite:///{folder / STUDY_DB}"
    # Several local processes share a SQLite file: wait for its lock rather than fail.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    maximize = maximizes(base.train.monitor)
    study = _open_study(
        optuna,
        name,
        url,
        engine,
        direction="maximize" if maximize else "minimize",
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    # With tracking, the study is an MLflow run and each trial a child run of it.
    parent = Tracker.open(base, folder, name=name)
    objective = _objective(
        optuna,
        config,
        overrides,
        space,
        name,
        folder,
        maximizes(base.train.monitor),
        parent.run_id if parent else None,
    )
    study.optimize(objective, n_trials=trials, catch=(CnnlabError,))
    _write_trials(study, folder / TRIALS_CSV)
    best = _write_best(study, optuna, config, overrides, space, folder, base)
    if parent:
        if best is not None:
            params = {f"best.{key}": value for key, value in best["params"].items()}
            parent.log_values({f"best_{base.train.monitor}": best["value"]}, params)
        parent.finish(None)
    return {"study": name, "storage": url, "folder": str(folder), "best": best}


def _study_folder(base: Config, study_name: str | None) -> tuple[str, Path]:
    """The study's name (default `<config name>-tune`) and its folder of trial runs."""
    name = study_name or f"{base.name}-tune"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(
            f"--study {name!r}: use letters, digits, '_', '.' and '-' (it names a folder)"
        )
    folder = Path(base.output_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    return name, folder


def _objective(
    optuna, config, overrides, space, name: str, folder: Path, maximize: bool, parent: str | None
):
    """One trial: a normal run of the config with the trial's values, scored on validation."""

    def objective(trial) -> float:
        from cnnlab.training.trainer import train

        params = suggest(trial, space)
        cfg = load_config(
            config,
            [*overrides, *trial_overrides(params, space), f"name={name}-t{trial.number:04d}",
             f"output_dir={folder}"],
        )  # fmt: skip
        reporter = ReportToTrial(trial, cfg.train.monitor)
        run_dir = train(cfg, callbacks=[reporter], parent_tracking_run=parent)
        trial.set_user_attr("run", str(run_dir))
        if reporter.pruned:
            raise optuna.TrialPruned(f"stopped after epoch {reporter.epochs}")
        metrics = json.loads(runs.RunDir(run_dir).metrics.read_text(encoding="utf-8"))
        # Maximised: accuracy, or mean average precision with several labels per image.
        return headline(metrics["val"])[1] if maximize else metrics["val"]["loss"]

    return objective


def _write_best(study, optuna, config, overrides, space, folder: Path, base: Config):
    """best.yaml, the best finished trial's full config, and what to say of it (None: no trial
    has finished)."""
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return None
    best = study.best_trial
    best_cfg = load_config(
        config, [*overrides, *trial_overrides(best.params, space), f"name={folder.name}-best"]
    )
    out = folder / BEST_CONFIG
    atomic_write(out, _best_header(folder.name, best, base) + dump_config(best_cfg))
    return {
        "value": best.value,
        "number": best.number,
        "params": best.params,
        "run": best.user_attrs.get("run"),
        "config": str(out),
    }


def _open_study(optuna, name: str, url: str, engine: dict, **kwargs):
    """Create or join the study. Processes starting together race to create a new database's
    tables (one of them gets an integrity or "already exists" error); the loser retries."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    def create():
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine)
        return optuna.create_study(study_name=name, storage=storage, load_if_exists=True, **kwargs)

    for attempt in range(4):
        try:
            return create()
        except (IntegrityError, OperationalError):
            time.sleep(0.5 * (attempt + 1))
    return create()


def _best_header(name: str, best, base: Config) -> str:
    return (
        f"# Best trial of study {name}: #{best.number}, {base.train.monitor} {best.value:.6g}\n"
        f"# run: {best.user_attrs.get('run')}\n"
    )


def _write_trials(study, path: Path) -> None:
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs"))
    atomic_write(path, frame.to_csv(index=False))
