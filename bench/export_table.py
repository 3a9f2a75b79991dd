"""The export table of docs/inference.md from a run's export/export.json (`cnnlab export`).

Its figures came from: `cnnlab train configs/mnist_small_cnn.yaml --set
train.epochs=3`, then `cnnlab export RUN_DIR --format F` for F in savedmodel, tflite, onnx,
`tflite --quantize float16` and `tflite --quantize int8`, one after another on an otherwise idle
machine, then `python bench/export_table.py RUN_DIR`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(run_dir: Path) -> str:
    records = json.loads((run_dir / "export" / "export.json").read_text(encoding="utf-8"))
    lines = [
        "| file | format | size | latency, 1 image (Keras) | max prob. diff | top-1 agreement "
        "| accuracy (Keras) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in records.items():
        fmt = r["format"] + (f" {r['quantize']}" if r["quantize"] else "")
        latency = r["latency_ms"]
        lines.append(
            f"| `{name}` | {fmt} | {r['size_bytes'] / 1e6:.2f} MB | "
            f"{latency[r['format']]:.2f} ms ({latency['keras']:.2f} ms) | "
            f"{r['max_abs_diff']:.1e} | {r['top1_agreement']:.2%} | "
            f"{r['accuracy']:.4f} ({r['keras_accuracy']:.4f}) |"
        )
    checked = next(iter(records.values()))["checked_on"]
    lines.append("")
    lines.append(f"Checked on {checked['images']:,} {checked['split']} images.")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/export_table.py RUN_DIR")
    print(table(Path(sys.argv[1])))
