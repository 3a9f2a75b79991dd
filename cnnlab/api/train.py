"""Training and studying configs from Python: train (one run, several seeds, a resume), check,
summary, lr_find and tune. The `cnnlab` commands of the same names call these."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from cnnlab.api.backend import start_backend
from cnnlab.api.run import Run
from cnnlab.utils.errors import CnnlabError

if TYPE_CHECKING:
    import keras

    from cnnlab.config import Config

ConfigSource = Union[str, Path, Mapping[str, Any], "Config"]
Overrides = Mapping[str, Any] | Sequence[str] | None


def load(config: ConfigSource, overrides: Overrides = None, need_data: bool = True) -> Config:
    """A validated config from a YAML file or a mapping, with `overrides` applied.

    Args:
        config: a YAML file, the config as a dict, or a validated Config (returned as it is
            when there are no overrides).
        overrides: {"train.epochs": 3, ...}, or "train.epochs=3" strings as `--set` takes.
        need_data: whether the data files it names must exist.

    Raises:
        ConfigError: one line per problem, naming the file and line (or override) and the key.
    """
    from cnnlab.config import Config, dump_config, load_config, override_items

    if isinstance(config, Config):
        if not overrides:
            return config
        import yaml

        config = yaml.safe_load(dump_config(config))
    return load_config(config, override_items(overrides), need_data=need_data)


def train(
    config: ConfigSource | None = None,
    overrides: Overrides = None,
    *,
    seeds: Sequence[int] | None = None,
    resume: str | Path | Run | None = None,
    ask: Callable[[str], bool] | None = None,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    connect_timeout: float = 120,
) -> Run | list[Run] | None:
    """Train a model as `config` describes into a new run directory, or continue one.

    Args:
        config: a YAML file or a dict (see the configuration reference).
        overrides: {"train.epochs": 3, ...} (or "key=value" strings), as `--set` does.
        seeds: train one run per seed, one after another (the members of an ensemble).
        resume: an interrupted run to continue from its last complete epoch; a config given
            too must be the one it started with.
        ask: a yes/no question to the user; when given and an interrupted run of the same
            config exists, its answer decides whether to continue that run.
        coordinator: several processes training one model (data_parallel on JAX): process
            0's HOST:PORT, the same for every process.
        num_processes: how many processes train the model.
        process_id: this process, 0 to num_processes - 1; process 0 writes the run.
        connect_timeout: seconds to wait for every process to reach the coordinator.

    Returns:
        The run, a list of runs with `seeds`, or None in processes other than process 0
        (which write nothing).

    Raises:
        ConfigError, DataError, RunDirError: one-line messages, as the CLI prints them.
    """
    from cnnlab.training.cluster import check_backend, cluster_from, join, leave

    if config is None and resume is None:
        raise CnnlabError("give a config, or an interrupted run to resume")
    if seeds is not None and resume is not None:
        raise CnnlabError("seeds start new runs; they cannot be combined with resume")
    resume = Path(resume.path if isinstance(resume, Run) else resume) if resume else None
    configs = [load(config, [*_items(overrides), f"seed={s}"]) for s in seeds or []]
    cfg = load(config, overrides) if config is not None and not configs else None
    cluster = cluster_from(coordinator, num_processes, process_id)
    if configs or cfg is not None:
        first = configs[0] if configs else cfg
    else:
        from cnnlab.runs import open_run

        first = open_run(resume, need_data=True)[1]  # its config, backend included
    start_backend(first.backend, first.deterministic)
    check_backend(cluster, first.backend)
    from cnnlab.training.trainer import start_or_resume, train_seeds
    from cnnlab.training.trainer import train as run_training

    if resume is None:
        from cnnlab.models.transfer import check_weights

        check_weights(first.model, first.data.input_shape)  # before any run directory
    join(cluster, connect_timeout)
    if configs:
        done = train_seeds(configs, cluster)
    else:
        cfg, resume = start_or_resume(cfg, resume, ask, cluster)
        done = [run_training(cfg, resume, cluster=cluster)]
    leave(cluster)
    if not cluster.is_chief:
        return None
    return [Run(path) for path in done] if configs else Run(done[0])


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
    cfg = load(config, overrides)
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
