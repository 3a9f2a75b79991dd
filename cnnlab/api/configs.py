"""Configs from Python: load one (a file, a dict or a Config, with overrides) and study it
before training: check, summary, lr_find and tune. The `cnnlab` commands of the same names call
these; `train` is beside Run in cnnlab.api.run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from cnnlab.api.backend import start_backend
from cnnlab.utils.console import say
from cnnlab.utils.errors import CnnlabError

if TYPE_CHECKING:
    import keras

    from cnnlab.config import Config

ConfigSource = Union[str, Path, Mapping[str, Any], "Config"]
Overrides = Mapping[str, Any] | Sequence[str] | None


def load(
    config: ConfigSource,
    overrides: Overrides = None,
    need_data: bool = True,
    model: str | None = None,
) -> Config:
    """A validated config from a YAML file, a folder of photos or a mapping, with `overrides`.

    Args:
        config: a YAML file; a folder of photos (class folders, or split folders of class
            folders: the config is made from it, see cnnlab.api.folders, and its choices are
            said); the config as a dict; or a validated Config (returned as it is when there
            are no overrides).
        overrides: {"train.epochs": 3, ...}, or "train.epochs=3" strings as `--set` takes.
        need_data: whether the data files it names must exist.
        model: with a folder: the builder or keras.applications backbone to train.

    Raises:
        ConfigError: one line per problem, naming the file and line (or override) and the key.
    """
    from cnnlab.api.folders import folder_config, is_folder_config
    from cnnlab.config import Config, dump_config, load_config, override_items

    if model is not None and not is_folder_config(config):
        raise CnnlabError(
            f"--model {model} is for a folder of photos; a config names its model under "
            "model.builder (change it with --set model.builder=NAME)"
        )
    if is_folder_config(config):
        config = folder_config(config, model)
        for line in config.pop("_why"):
            say(line)
    if isinstance(config, Config):
        if not overrides:
            return config
        import yaml

        config = yaml.safe_load(dump_config(config))
    return load_config(config, override_items(overrides), need_data=need_data)


def init(
    folder: str | Path, output: str | Path, model: str | None = None, overwrite: bool = False
) -> Path:
    """Write the config `cnnlab train FOLDER` would use, commented, to edit before training.

    Returns:
        `output`, written.
    """
    from cnnlab.api.folders import folder_yaml
    from cnnlab.utils.atomic import atomic_write

    out = Path(output)
    if out.exists() and not overwrite:
        raise CnnlabError(f"{out}: already exists; pass --overwrite to replace it")
    atomic_write(out, folder_yaml(folder, model))
    return out


def _items(overrides: Overrides) -> list[str]:
    from cnnlab.config import override_items

    return override_items(overrides)


def check(
    config: ConfigSource, overrides: Overrides = None, preview: str | Path | None = None
) -> list[str]:
    """Preflight: validate the config, load its data and build its model, as train would.

    Args:
        preview: also draw the first training batch, augmented, into this PNG (never replaced).

    Returns:
        What was found, a line each (classes, shapes, warnings).
    """
    cfg = load(config, overrides)
    if preview is not None and Path(preview).exists():
        raise CnnlabError(f"preview {preview}: exists; give another file name")
    start_backend(cfg.backend, cfg.deterministic)
    from cnnlab.commands.check import preflight

    return list(preflight(cfg, Path(preview) if preview is not None else None))


def summary(config: ConfigSource, overrides: Overrides = None) -> tuple[keras.Model, dict]:
    """The config's model, built without training or data, and its size.

    Returns:
        The model and {"total", "trainable", "non_trainable" parameters, "flops" per image,
        "remark" (a note on the input the model was built for, or None)}.
    """
    cfg = load(config, overrides, need_data=False)
    start_backend(cfg.backend)
    from cnnlab.commands.check import count_flops, parameter_counts, summarize

    model, remark = summarize(cfg)
    return model, {**parameter_counts(model), "flops": count_flops(model), "remark": remark}


def lr_find(
    config: str | Path,
    overrides: Overrides = None,
    *,
    model: str | None = None,
    steps: int = 100,
    low: float = 1e-7,
    high: float = 1.0,
    output: str | Path | None = None,
) -> dict:
    """Train a fresh model while the learning rate rises exponentially from `low` to `high`
    over `steps` batches; plot the smoothed loss and suggest a rate.

    Returns:
        {"folder", "suggested_learning_rate" (or None), "reason", ...}, as lr_find.json.
    """
    cfg = load(config, overrides, model=model)
    start_backend(cfg.backend, cfg.deterministic)
    from cnnlab.commands.lr_find import find_rate

    return find_rate(cfg, Path(config), steps, low, high, Path(output) if output else None)


def tune(
    config: str | Path,
    space: str | Path,
    *,
    trials: int = 10,
    storage: str | None = None,
    study: str | None = None,
    overrides: Overrides = None,
) -> dict:
    """Search hyperparameters with Optuna; each trial is a run in OUTPUT_DIR/<study>/.

    Returns:
        {"study", "storage", "folder", "best": {"number", "value", "params", "config", "run"}
        or None while no trial has completed}.
    """
    items = _items(overrides)
    base = load(config, items)
    start_backend(base.backend, base.deterministic)
    from cnnlab.commands.tune import tune as run_study

    return run_study(Path(config), Path(space), trials, storage, study, items)
