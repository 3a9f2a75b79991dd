"""What the commands print of their results: predictions and exports."""

from __future__ import annotations

from pathlib import Path

from cnnlab.utils.console import echo, print_table


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def show_predictions(result) -> None:
    """The first rows of the predictions, counts per class, and what was left out."""
    from rich.table import Table

    frame, shown = result.frame, 20
    table = Table("path", "predicted", "probability")
    for row in frame.head(shown).itertuples(index=False):
        table.add_row(str(row.path), str(row.predicted), f"{row.probability:.4f}")
    print_table(table)
    if len(frame) > shown:
        echo(f"... and {len(frame) - shown:,} more")
    counts = frame["predicted"].value_counts()
    echo("predicted: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))
    echo(f"wrote {len(frame):,} predictions to {result.out}")
    if result.ignored:
        verb = "is" if result.ignored == 1 else "are"
        echo(f"note: ignored {_count(result.ignored, 'file')} that {verb} not an image")
    if result.skipped:
        echo(f"skipped {_count(len(result.skipped), 'unreadable file')}:", err=True)
        for path, reason in result.skipped[:shown]:
            echo(f"  {path}: {reason}", err=True)
        if len(result.skipped) > shown:
            echo(f"  ... and {len(result.skipped) - shown:,} more", err=True)


def show_export(record: dict, path: Path) -> None:
    fmt, checked = record["format"], record["checked_on"]
    latency = record["latency_ms"]
    saved = ""
    if record["precision"] != "float32":
        saved = (
            f" (to the saved {record['precision']} model: {record['max_abs_diff_to_saved']:.2g}, "
            f"top-1 {record['top1_agreement_to_saved']:.2%})"
        )
    accuracy = "no labels, so no accuracy"
    if record["accuracy"] is not None:
        metric = record.get("metric", "accuracy").replace("_", " ")
        accuracy = f"{metric} {record['accuracy']:.4f} (Keras model {record['keras_accuracy']:.4f})"
    echo(
        f"{checked['images']:,} {checked['split']} images: max probability difference "
        f"{record['max_abs_diff']:.2g}, top-1 agreement {record['top1_agreement']:.2%}{saved}, "
        f"{accuracy}"
    )
    echo(
        f"size {record['size_bytes'] / 1e6:,.2f} MB; one image takes {latency[fmt]:.2f} ms "
        f"(Keras {latency['keras']:.2f} ms)"
    )
    echo(f"wrote {path}")
