"""examples/quickstart.ipynb runs top to bottom in a Jupyter kernel, on tiny settings."""

from __future__ import annotations

import pytest

from .helpers import ROOT

NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


@pytest.mark.subprocess
def test_the_quickstart_notebook_runs(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (settings,) = [c for c in notebook.cells if "settings = {" in c.source]
    # The notebook's own settings train for minutes: a few hundred digits for one epoch here.
    settings.source = settings.source.replace('Path("..")', f"Path({str(ROOT)!r})").replace(
        '"train.epochs": 3', '"train.epochs": 1, "data.max_samples": 300, "train.verbose": 0'
    )
    assert "max_samples" in settings.source
    NotebookClient(notebook, timeout=240, resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = {i: cell.get("outputs", []) for i, cell in enumerate(notebook.cells)}
    errors = [o for cell in outputs.values() for o in cell if o.output_type == "error"]
    assert not errors, errors
    shown = [o.get("data", {}) for cell in outputs.values() for o in cell]
    # The run shows itself as HTML; the curves, the heatmap and the table are drawn.
    assert any("test accuracy" in d.get("text/html", "") for d in shown)
    assert sum("image/png" in d for d in shown) >= 2
    assert any("predicted" in d.get("text/html", "") for d in shown)
    assert (tmp_path / "digits" / "0.png").is_file()
    assert list((tmp_path / "outputs").glob("*/export/model.onnx"))
