"""One table over many runs: what was trained, how well, how fast, and which runs did not
finish (shown as such, never skipped)."""

from __future__ import annotations

import json
from pathlib import Path

from cnnlab import runs
from cnnlab.config import read_yaml_mapping
from cnnlab.utils.errors import CnnlabError, RunDirError

COLUMNS = [
    "run", "state", "dataset", "builder", "params", "epochs", "best_val_accuracy",
    "test_accuracy", "test_macro_f1", "test_map", "most_confused", "train_seconds",
    "images_per_second",
]  # fmt: skip


# Shorter headers for the terminal; CSV and Markdown keep the column names above.
HEADERS = [
    "run", "state", "dataset", "builder", "params", "epochs", "best val acc", "test acc",
    "test F1", "test mAP", "most confused", "train s", "images/s",
]  # fmt: skip


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories among `paths`: each is a run, or a folder whose subfolders are runs."""
    found: list[Path] = []
    for path in paths:
        if runs.RunDir(path).config.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if runs.RunDir(p).config.is_file()))
        else:
            raise RunDirError(f"{path}: no such run directory or folder of runs")
    return found


def run_row(run_dir: Path) -> dict:
    """One row of the table; missing pieces are None, and `state` says why."""
    row: dict = dict.fromkeys(COLUMNS)
    row["run"] = run_dir.name
    state = runs.read_state(run_dir)
    row["state"] = state["state"] + (f": {state['reason']}" if state["state"] == "failed" else "")
    files = runs.RunDir(run_dir)
    try:
        # The YAML, not load_config: a run whose data has moved is still worth listing.
        config, _ = read_yaml_mapping(files.config, "config", "data:, model:")
        row["dataset"] = config["data"]["loader"]
        row["builder"] = config["model"]["builder"]
    except (CnnlabError, KeyError, TypeError):
        row["state"] += f" (unreadable {runs.CONFIG_FILE})"
    history = files.history
    if history.is_file():
        import pandas as pd

        try:
            frame = pd.read_csv(history)
            row["epochs"] = len(frame)
            if "val_accuracy" in frame and len(frame):
                row["best_val_accuracy"] = float(frame["val_accuracy"].max())
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            pass
    row["most_confused"] = _top_confused(files.most_confused)
    try:
        metrics = json.loads(files.metrics.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return row
    row.update(
        params=metrics.get("params"),
        epochs=metrics.get("epochs_run"),
        test_accuracy=(metrics.get("test") or {}).get("accuracy"),
        test_macro_f1=(metrics.get("test") or {}).get("macro_f1"),
        # Several labels per image: mean average precision (no accuracy).
        test_map=(metrics.get("test") or {}).get("mean_average_precision"),
        train_seconds=metrics.get("train_seconds"),
        images_per_second=metrics.get("images_per_second"),
    )
    return row


def _top_confused(path: Path) -> str | None:
    """The pair most_confused.csv lists first, as "cat->dog 12"; "none" when no image was
    confused, None without the file (or with a damaged one)."""
    import csv

    try:
        with path.open(newline="", encoding="utf-8") as f:
            first = next(csv.DictReader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if first is None:
        return "none"
    try:
        return f"{first['actual']}->{first['predicted']} {int(first['count'])}"
    except (KeyError, TypeError, ValueError):
        return None


def compare(paths: list[Path], sort: str = "test_accuracy", ascending: bool = False):
    """A pandas DataFrame with COLUMNS, one row per run, sorted (missing values last)."""
    import pandas as pd

    if sort not in COLUMNS:
        raise RunDirError(f"--sort {sort}: not a column; choose one of: {', '.join(COLUMNS)}")
    found = find_runs(paths)
    if not found:
        raise RunDirError(f"no run directories in {', '.join(map(str, paths))}")
    frame = pd.DataFrame([run_row(p) for p in found], columns=COLUMNS)
    return frame.sort_values(sort, ascending=ascending, na_position="last", kind="stable")


def _cell(value) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    if isinstance(value, float):
        if value <= 1:
            return f"{value:.4f}"  # accuracies
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def to_markdown(frame) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for record in frame.to_dict("records"):
        lines.append("| " + " | ".join(_cell(record[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def print_table(frame) -> None:
    from rich.table import Table

    from cnnlab.utils import console

    table = Table(*HEADERS)
    for record in frame.to_dict("records"):
        style = None if record["state"] == "completed" else "yellow"
        table.add_row(*(_cell(record[c]) for c in COLUMNS), style=style)
    console.print_table(table)
