"""report.html: one self-contained page per run (images embedded, no network needed to open
it), and a run as a notebook shows it."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from cnnlab import runs
from cnnlab.utils.atomic import atomic_write

CONFUSED_SHOWN = 10  # pairs report.html lists; most_confused.csv holds them all


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _table(rows: list[tuple[str, object]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "—" if value is None else str(value)


def _image(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p class='missing'>{html.escape(alt)}: not produced for this run.</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _metrics_sections(metrics: dict | None) -> list[tuple[str, str]]:
    if not metrics:
        missing = f"No {runs.METRICS_FILE}: training did not finish."
        return [("Metrics", f"<p class='missing'>{missing}</p>")]
    names = (
        "accuracy", "balanced_accuracy", "mean_average_precision", "micro_f1", "macro_f1",
        "subset_accuracy", "loss",
    )  # fmt: skip
    split_rows = [
        (f"{split} {name.replace('_', ' ').replace('f1', 'F1')}", (metrics[split] or {}).get(name))
        for split in ("train", "val", "test")
        for name in names
        # Older runs have no macro-F1; several labels per image, no accuracy.
        if (metrics[split] is None and name in ("accuracy", "loss"))
        or name in (metrics[split] or {})
    ]
    timings = [
        ("epochs run", metrics["epochs_run"]),
        ("best epoch", f"{metrics['best_epoch']} (by {metrics['monitor']})"),
        ("train seconds", f"{metrics['train_seconds']:,.1f}"),
        ("images per second", f"{metrics['images_per_second']:,.0f}"),
        ("parameters", metrics["params"]),
        ("device", metrics["device"]),
    ]
    stages = [
        (f"{stage} seconds", f"{seconds:,.1f}")
        for stage, seconds in metrics.get("timings", {}).items()
    ]
    return [("Metrics", _table(split_rows)), ("Timings", _table(timings + stages))]


def _health_section(run_dir: Path, health: dict) -> str:
    from cnnlab.data.health import describe, describe_sizes

    sizes = health.get("images", {})
    listed = [line for line in describe(health) if not line.startswith("images: ")]
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in listed)
    counts = [(split, ", ".join(f"{k} {v:,}" for k, v in c.items()))
              for split, c in health["classes"].items()]  # fmt: skip
    counts.append(("largest / smallest train class", health.get("imbalance_ratio")))
    counts += [
        (f"{split} images as stored", describe_sizes({split: found}).split(f"{split} ", 1)[1])
        for split, found in sizes.items()
    ]
    leaks = runs.RunDir(run_dir).leaks
    picture = _image(leaks, "copies across splits") if leaks.is_file() else ""
    return f"<ul>{lines}</ul>{_table(counts)}{picture}"


def _confused_section(path: Path) -> str:
    import pandas as pd

    pairs = pd.read_csv(path, dtype={"actual": str, "predicted": str})
    if pairs.empty:
        return "<p>No image was confused with another class.</p>"
    rest = len(pairs) - CONFUSED_SHOWN
    more = f" ({rest:,} more pairs in {runs.MOST_CONFUSED})" if rest > 0 else ""
    intro = (
        f"<p>Actual class, the class predicted instead, and how many images, on the confusion "
        f"matrix's images{html.escape(more)}.</p>"
    )
    return intro + pairs.head(CONFUSED_SHOWN).to_html(index=False)


def notebook_html(run_dir: Path) -> str:
    """A run as a notebook shows it: its state, metrics, timings and learning curves."""
    state = runs.read_state(run_dir)
    files = runs.RunDir(run_dir)
    metrics = json.loads(_read(files.metrics) or "null")
    sections = _metrics_sections(metrics)
    if files.curves.is_file():
        sections.append(("Learning curves", _image(files.curves, "learning curves")))
    reason = html.escape(": " + state["reason"]) if state.get("reason") else ""
    body = "".join(f"<h5>{title}</h5>{content}" for title, content in sections)
    return f"<p>{html.escape(str(run_dir))}: <b>{html.escape(state['state'])}</b>{reason}</p>{body}"


def write_html_report(run_dir: Path) -> Path:
    """report.html: config, environment, model summary, metrics, timings and every plot."""
    import pandas as pd

    files = runs.RunDir(run_dir)
    metrics = json.loads(_read(files.metrics) or "null")
    environment = json.loads(_read(files.environment) or "{}")
    state = runs.read_state(run_dir)
    sections = _metrics_sections(metrics)
    sections.append(("Learning curves", _image(files.curves, "learning curves")))
    multi_label = files.thresholds.is_file()
    if not multi_label:  # several labels per image: per-class results at each threshold
        sections.append(("Confusion matrix", _image(files.confusion, "confusion matrix")))
    if files.most_confused.is_file():
        sections.append(("Most confused classes", _confused_section(files.most_confused)))
    if files.per_class.is_file():
        frame = pd.read_csv(files.per_class)
        title = "Per-class results" + (" at each class's threshold" if multi_label else "")
        sections.append((title, frame.to_html(index=False, float_format="%.4f")))
    sections.append(("Most confident mistakes", _image(files.misclassified, "mistakes")))
    health = json.loads(_read(files.health) or "null")
    if health is not None:
        sections.append(("Data health", _health_section(run_dir, health)))
    if files.train_batch.is_file():
        sections.append(
            ("The first training batch, augmented", _image(files.train_batch, "train batch"))
        )
    for title, path in (("Model summary", files.summary), ("Config", files.config)):
        text = _read(path)
        if text is not None:
            sections.append((title, f"<pre>{html.escape(text)}</pre>"))
    sections.append(("Environment", _table([(k, v) for k, v in environment.items()])))

    body = "\n".join(f"<section><h2>{t}</h2>\n{content}</section>" for t, content in sections)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(run_dir.name)} — cnnlab run report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }}
img {{ max-width: 100%; }}
.missing {{ color: #a33; }}
</style></head><body>
<h1>{html.escape(run_dir.name)}</h1>
<p>State: <strong>{html.escape(state["state"])}</strong>{
        html.escape(": " + state["reason"]) if state.get("reason") else ""
    }</p>
{body}
</body></html>
"""
    atomic_write(files.report, page)
    return files.report
