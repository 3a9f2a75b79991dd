"""A run directory's life: create it, record its state, open it (without its data), find its
data, load its models and class names, and check that it can be resumed."""

from __future__ import annotations

import json
import os
import shlex
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnlab.config import Config, dump_config, flat_config, load_config
from cnnlab.runs.files import (
    BEST_MODEL,
    CLASSES_FILE,
    CONFIG_FILE,
    STATE_FILE,
    RunDir,
)
from cnnlab.utils.atomic import atomic_write, write_json
from cnnlab.utils.errors import CnnlabError, ConfigError, RunDirError


def new_run_dir(cfg: Config, now: datetime | None = None) -> Path:
    """Create `<output_dir>/<name>-<timestamp>` (with a -2, -3... suffix if taken) and return it.

    The folder is created exclusively, so two runs started in the same second never share one.
    """
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    root = Path(cfg.output_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"output_dir {root}: cannot create it: {e.strerror}") from None
    for n in range(1, 1000):
        run_dir = root / (f"{cfg.name}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        atomic_write(RunDir(run_dir).config, dump_config(cfg))
        return run_dir
    raise RunDirError(f"output_dir {root}: too many runs named {cfg.name}-{stamp}")


def open_run(run_dir: str | Path, need_data: bool = False) -> tuple[Path, Config]:
    """Check that `run_dir` is a cnnlab run and return it with its resolved config.

    A run directory works wherever it lies: the data its config names is only looked for
    with `need_data` (training goes on); `locate_data` finds it for scoring.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    config = RunDir(run_dir).config
    if not config.is_file():
        raise RunDirError(f"{run_dir}: not a cnnlab run directory (no {CONFIG_FILE})")
    cfg = load_config(config, need_data=need_data)
    if (run_dir / CLASSES_FILE).is_file():
        _class_names_in(run_dir / CLASSES_FILE)
    return run_dir, cfg


def locate_data(
    run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), command: str = "evaluate"
) -> Config:
    """The run's config with its data where `overrides` (data.KEY=VALUE) say it now is,
    checked to be there.

    Args:
        run_dir: a directory made by `cnnlab train`.
        overrides: `--set` items under `data.` (the run's model and training stay as they were).
        command: the cnnlab command the advice in an error names.

    Raises:
        ConfigError: an override outside `data.`, one that changes the images the model takes,
            or a data path that is not there (named, with the --set that points elsewhere).
    """
    run_dir, saved = open_run(run_dir)
    for item in overrides:
        if not item.partition("=")[0].strip().startswith("data."):
            raise ConfigError(
                f"--set {item}: a run's data may be pointed elsewhere (--set data.KEY=VALUE); "
                "its model and training stay as they were"
            )
    cfg = load_config(run_dir / CONFIG_FILE, overrides, need_data=False) if overrides else saved
    if cfg.data.input_shape != saved.data.input_shape:
        shapes = ["x".join(map(str, c.data.input_shape)) for c in (cfg, saved)]
        raise ConfigError(
            f"--set {' '.join(overrides)}: the data would give {shapes[0]} images; the run's "
            f"model takes {shapes[1]}"
        )
    gone = missing_data(cfg.data)
    if gone:
        given = {item.partition("=")[0].strip(): item for item in overrides}
        source = given.get(f"data.{gone[0][0]}")
        where = "; ".join(f"data.{key} {path}" for key, path in gone)
        fix = " ".join(f"--set data.{key}=NEW_PATH" for key, _ in gone)
        csv = " (or score a labelled CSV: --csv FILE)" if hasattr(cfg.data, "raw_shape") else ""
        raise ConfigError(
            f"{f'--set {source}' if source else run_dir / CONFIG_FILE}: {where}: not found (moved "
            f"or deleted?); point the run at its data: cnnlab {command} "
            f"{shlex.quote(str(run_dir))} {fix}{csv}"
        )
    return cfg


def missing_data(data_cfg) -> list[tuple[str, Path]]:
    """(key, path) of each file or folder a data config names that is not there."""
    return [(key, path) for key, path in data_cfg if isinstance(path, Path) and not path.exists()]


def model_file(run_dir: Path) -> Path:
    """The best model of a run, or a clear error when training never saved one."""
    path = RunDir(run_dir).best_model
    if path.is_dir():
        raise RunDirError(f"{path}: is a folder (a SavedModel?), not a .keras model file")
    if not path.is_file():
        raise RunDirError(
            f"{run_dir}: no {BEST_MODEL} (training stopped before its first epoch ended?)"
        )
    return path


def load_run_model(run_dir: Path):
    """Load a run's best model (see load_model_file)."""
    return load_model_file(model_file(run_dir))


def load_model_file(path: Path):
    """Load a .keras file, reporting a damaged file as damaged rather than as missing.

    A .keras file is a zip archive: one cut short (a full disk, a copy stopped half way) has no
    central directory, and one with flipped bytes fails its members' checksums; Keras itself
    reports both as "File not found".
    """
    import zipfile

    import keras

    import cnnlab.models.layers  # noqa: F401  (registers cnnlab's layers with Keras)
    import cnnlab.models.losses  # noqa: F401  (and its losses)
    import cnnlab.models.optimizers  # noqa: F401  (and its optimizers and schedules)

    damaged = f"{path}: damaged: not a complete .keras file"
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        raise RunDirError(f"{damaged} ({e}); it was cut short or overwritten") from None
    except OSError as e:
        raise RunDirError(f"{path}: cannot read: {e.strerror or e}") from None
    if broken is not None:
        raise RunDirError(f"{damaged} (member {broken} fails its checksum)")
    try:
        return keras.models.load_model(path)
    except Exception as e:  # Keras raises ValueError, OSError or TypeError for bad contents
        raise RunDirError(f"{path}: cannot load the model ({type(e).__name__}: {e})") from None


def write_thresholds(run_dir: Path, names: list[str], thresholds) -> None:
    """Record a several-labels run's per-class thresholds: a class is predicted when its
    probability is at least its threshold."""
    values = {name: float(t) for name, t in zip(names, thresholds, strict=True)}
    write_json(RunDir(run_dir).thresholds, values)


def read_thresholds(run_dir: Path, names: list[str]):
    """A several-labels run's thresholds in the order of `names` (a float array), or None for
    a run with one label per image (no THRESHOLDS_FILE)."""
    import numpy as np

    path = RunDir(run_dir).thresholds
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path}: cannot read the thresholds: {e}") from None
    if not isinstance(values, dict) or sorted(values) != sorted(names):
        raise RunDirError(f"{path}: expected a threshold for each class of the run: {names}")
    found = np.array([values[name] for name in names], np.float64)
    if not np.all((found >= 0) & (found <= 1)):
        raise RunDirError(f"{path}: every threshold must lie between 0 and 1")
    return found


def write_class_names(run_dir: Path, names: list[str]) -> None:
    """Record the class names in output order, for predictions that name classes."""
    write_json(RunDir(run_dir).classes, list(names))


def read_class_names(run_dir: Path, count: int) -> list[str]:
    """The run's `count` class names (as its model tells apart); runs from before CLASSES_FILE
    existed get '0', '1', ..."""
    path = RunDir(run_dir).classes
    if not path.is_file():
        return [str(i) for i in range(count)]
    names = _class_names_in(path)
    if len(names) != count:
        raise RunDirError(
            f"{path}: {len(names)} class names; the model has {count} outputs, one per class"
        )
    return names


def _class_names_in(path: Path) -> list[str]:
    """A CLASSES_FILE's names, checked: a list of different, non-empty strings."""
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path}: cannot read the class names: {e}") from None
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise RunDirError(f"{path}: expected a list of class names, each a non-empty string")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise RunDirError(f"{path}: the class name {name!r} is given twice")
        seen.add(name)
    return names


def write_bad_files(run_dir: Path, problems: list[tuple[str, str]]) -> Path:
    """The input files a loader could not use, as BAD_FILES (path, problem) in the run dir."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["path", "problem"])
    writer.writerows(problems)
    path = RunDir(run_dir).bad_files
    atomic_write(path, out.getvalue())
    return path


def write_state(run_dir: Path, state: str, reason: str | None = None) -> None:
    """Record where a run stands; `running` also records who runs it, to spot killed runs."""
    record: dict[str, Any] = {"state": state}
    if reason:
        record["reason"] = reason
    if state == "running":
        record.update(pid=os.getpid(), host=socket.gethostname())
    record["updated"] = datetime.now().astimezone().isoformat(timespec="seconds")
    write_json(RunDir(run_dir).state, record)


def read_state(run_dir: Path) -> dict[str, Any]:
    """The recorded state; a `running` run whose process is gone on this host is `interrupted`."""
    try:
        record = json.loads(RunDir(run_dir).state.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        done = RunDir(run_dir).metrics.is_file()
        return {"state": "completed" if done else "interrupted", "reason": f"no {STATE_FILE}"}
    if record.get("state") == "running" and record.get("host") == socket.gethostname():
        try:
            os.kill(int(record["pid"]), 0)
        except ProcessLookupError:
            return {**record, "state": "interrupted", "reason": "its process is gone (killed?)"}
        except (PermissionError, KeyError, ValueError, TypeError):
            pass  # alive under another user, or an old record: leave it as it says
    return record


# ---------------------------------------------------------------------------------------------
# Resuming.


def config_differences(old: Config, new: Config) -> list[str]:
    """'key: old -> new' for every setting that differs between two configs."""
    a, b = flat_config(old), flat_config(new)
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


def resumable(run_dir: Path) -> bool:
    return RunDir(run_dir).progress.is_file()


def prepare_resume(run_dir: str | Path, cfg: Config | None = None) -> tuple[Path, Config]:
    """Check that `run_dir` can be continued (with `cfg`, when given) and return its config.

    Raises:
        RunDirError: the run is complete, still running, has no complete epoch, or `cfg`
            differs from the config it was started with (the differences are listed).
    """
    run_dir, saved = open_run(run_dir, need_data=True)
    state = read_state(run_dir)
    if state["state"] == "completed":
        raise RunDirError(f"{run_dir}: already completed; start a new run instead")
    if state["state"] == "running":
        where = f" (pid {state.get('pid')} on {state.get('host')})" if state.get("pid") else ""
        raise RunDirError(f"{run_dir}: still running{where}")
    if not resumable(run_dir):
        raise RunDirError(f"{run_dir}: no complete epoch to continue from; start a new run")
    if cfg is not None:
        differences = config_differences(saved, cfg)
        if differences:
            raise RunDirError(
                f"{run_dir}: cannot resume with a different config ({'; '.join(differences)}); "
                "the run and its backup are unchanged"
            )
    return run_dir, saved


def find_resumable(cfg: Config) -> Path | None:
    """The newest interrupted run of this very config under its output_dir, if any."""
    root = Path(cfg.output_dir)
    if not root.is_dir():
        return None
    for run_dir in sorted(root.glob(f"{cfg.name}-*"), reverse=True):
        if not resumable(run_dir) or read_state(run_dir)["state"] != "interrupted":
            continue
        try:
            if not config_differences(load_config(RunDir(run_dir).config), cfg):
                return run_dir
        except CnnlabError:
            continue
    return None
