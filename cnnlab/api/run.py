"""Training from Python (`train`), and a run as a Python object: what it is (config, state,
metrics, history, classes) and what can be asked of it next (evaluate, predict, explain,
export, resume)."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.api.backend import start_backend
from cnnlab.utils.errors import CnnlabError

if TYPE_CHECKING:
    import pandas as pd

    from cnnlab.api.configs import ConfigSource, Overrides
    from cnnlab.api.infer import Images
    from cnnlab.config import Config


class Run:
    """A run directory made by `cnnlab train` (or `cnnlab.train`).

    Everything is read from the folder when asked, so a run that is still training shows its
    progress so far. In a notebook, a run shows its metrics and learning curves.

    Args:
        path: the run directory.

    Raises:
        RunDirError: not a run directory.
    """

    def __init__(self, path: str | Path):
        from cnnlab.runs import open_run

        self.path, self._config = open_run(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.path.resolve() == self.path.resolve()

    def __hash__(self) -> int:
        return hash(self.path.resolve())

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def config(self) -> Config:
        """The resolved config the run trained with (after overrides)."""
        return self._config

    @property
    def state(self) -> dict[str, Any]:
        """{"state": running / completed / failed / interrupted, "reason", "updated", ...}."""
        from cnnlab.runs import read_state

        return read_state(self.path)

    @property
    def metrics(self) -> dict[str, Any]:
        """metrics.json: train/val/test scores, epochs, timings, parameters; {} until the run
        has finished."""
        from cnnlab.runs import METRICS_FILE

        path = self.path / METRICS_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    @property
    def history(self) -> pd.DataFrame:
        """Per-epoch metrics (history.csv): loss, accuracy, val_loss, ..., epoch_seconds."""
        import pandas as pd

        from cnnlab.runs import HISTORY_FILE

        path = self.path / HISTORY_FILE
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the model's outputs."""
        from cnnlab.runs import CLASSES_FILE
        from cnnlab.utils.errors import RunDirError

        path = self.path / CLASSES_FILE
        try:
            return [str(name) for name in json.loads(path.read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError) as e:
            raise RunDirError(f"{path}: cannot read the class names: {e}") from None

    def evaluate(self, csv: str | Path | None = None) -> dict:
        """Score the best model on the run's validation and test data (or a labelled
        Kaggle-format CSV) and write evaluation.json; see `cnnlab.evaluate`."""
        from cnnlab.api.infer import evaluate

        return evaluate([self], csv)

    def predict(
        self, images: Images, output: str | Path | None = None, overwrite: bool = False
    ) -> pd.DataFrame:
        """Class probabilities for images, decoded as the run's training images were and
        predicted with its test-time augmentation; see `cnnlab.predict`."""
        from cnnlab.api.infer import predict

        return predict([self], images, output, overwrite)

    def submission(
        self,
        test_dir: str | Path,
        sample_submission: str | Path,
        output: str | Path | None = None,
        label_map: Mapping[str, Any] | str | None = None,
        clip: bool = False,
        overwrite: bool = False,
    ):
        """A submission in a competition's own format for a folder of test images: its sample
        submission's rows and columns, filled; see `cnnlab.submission`."""
        from cnnlab.api.infer import submission

        return submission([self], test_dir, sample_submission, output, label_map, clip, overwrite)

    def explain(
        self,
        images: str | Path | list[str | Path],
        output: str | Path | None = None,
        class_name: str | None = None,
        layer: str | None = None,
        overwrite: bool = False,
    ) -> dict:
        """Grad-CAM heatmaps of image files; see `cnnlab.explain`."""
        from cnnlab.api.infer import explain

        return explain(self, images, output, class_name, layer, overwrite)

    def export(
        self,
        format: str,
        output: str | Path | None = None,
        quantize: str | None = None,
        samples: int = 1000,
        overwrite: bool = False,
    ) -> dict:
        """The best model as savedmodel, tflite or onnx, checked against it; see
        `cnnlab.export`."""
        from cnnlab.api.infer import export

        return export(self, format, output, quantize, samples, overwrite)

    def resume(self) -> Run:
        """Continue this interrupted run from its last complete epoch."""
        resumed = train(resume=self.path)
        assert isinstance(resumed, Run)
        return resumed

    def _repr_html_(self) -> str:
        from cnnlab.reports import notebook_html

        return f"<h4>{html.escape(self.path.name)}</h4>" + notebook_html(self.path)


def train(
    config: ConfigSource | None = None,
    overrides: Overrides = None,
    *,
    seeds: Sequence[int] | None = None,
    resume: str | Path | Run | None = None,
    model: str | None = None,
    ask: Callable[[str], bool] | None = None,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    connect_timeout: float = 120,
) -> Run | list[Run] | None:
    """Train a model as `config` describes into a new run directory, or continue one.

    Args:
        config: a YAML file, a dict (see the configuration reference), or a folder of photos
            (a config is made from it: cnnlab.api.folders).
        overrides: {"train.epochs": 3, ...} (or "key=value" strings), as `--set` does.
        seeds: train one run per seed, one after another (the members of an ensemble).
        resume: an interrupted run to continue from its last complete epoch; a config given
            too must be the one it started with.
        model: with a folder of photos: the builder or keras.applications backbone to train.
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
    from cnnlab.api.configs import load
    from cnnlab.api.folders import is_folder_config
    from cnnlab.config import override_items
    from cnnlab.training.cluster import check_backend, cluster_from, join, leave

    if config is None and resume is None:
        raise CnnlabError("give a config, or an interrupted run to resume")
    if seeds is not None and resume is not None:
        raise CnnlabError("seeds start new runs; they cannot be combined with resume")
    resume = Path(resume.path if isinstance(resume, Run) else resume) if resume else None
    if seeds and is_folder_config(config):
        config = load(config, model=model)  # the folder's config once, then a run per seed
        model = None
    configs = [load(config, [*override_items(overrides), f"seed={s}"]) for s in seeds or []]
    cfg = load(config, overrides, model=model) if config is not None and not configs else None
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


def load_run(path: str | Path) -> Run:
    """The run directory at `path` (the same as `Run(path)`)."""
    return Run(path)
