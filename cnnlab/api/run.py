"""A trained run as a Python object: what it is (config, state, metrics, history, classes) and
what can be asked of it next (evaluate, predict, explain, export, resume)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

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
        from cnnlab.api.train import train

        resumed = train(resume=self.path)
        assert isinstance(resumed, Run)
        return resumed

    def _repr_html_(self) -> str:
        from cnnlab.reports import notebook_html

        return f"<h4>{html.escape(self.path.name)}</h4>" + notebook_html(self.path)


def load_run(path: str | Path) -> Run:
    """The run directory at `path` (the same as `Run(path)`)."""
    return Run(path)
