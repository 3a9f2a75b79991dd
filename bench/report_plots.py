"""What drawing a run's pictures costs at the end of every run: the learning curves, the
confusion matrix and the grid of the most confident mistakes, each timed on its own.

    python bench/report_plots.py [--images 300] [--repeats 5]

Uses the first --images MNIST test digits with made-up class probabilities (a few in ten
right, so the mistakes grid is full) and a ten-epoch history. Prints the median of --repeats
for each picture, after one untimed warm-up round (matplotlib's first import and font cache).
Run it at two commits to compare a change to the drawing code.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cnnlab import reports

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with np.load(ROOT / "data" / "mnist.npz") as z:
        x, y = z["x_test"][: args.images, ..., None], z["y_test"][: args.images]
    rng = np.random.default_rng(0)
    probs = rng.random((len(y), 10))
    probs /= probs.sum(axis=1, keepdims=True)
    names = [str(i) for i in range(10)]
    out = Path(tempfile.mkdtemp())
    epochs = np.arange(10)
    history = pd.DataFrame({
        "epoch": epochs, "loss": 1 / (epochs + 1), "accuracy": 1 - 0.5 / (epochs + 1),
        "val_loss": 1.1 / (epochs + 1), "val_accuracy": 1 - 0.6 / (epochs + 1),
    })  # fmt: skip
    history.to_csv(out / "history.csv", index=False)
    pictures = {
        "curves": lambda: reports.plot_curves(out / "history.csv", out / "curves.png", 7),
        "confusion matrix": lambda: reports.write_class_report(
            y, probs.argmax(axis=1), names, out, "test"
        ),
        "mistakes grid": lambda: reports.plot_misclassified(
            x, y, probs, names, out / "misclassified.png", "test"
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in pictures}
    for round_ in range(args.repeats + 1):
        for name, draw in pictures.items():
            start = time.perf_counter()
            draw()
            if round_:  # round 0 warms up
                times[name].append(time.perf_counter() - start)
    for name, seconds in times.items():
        print(f"{name:17s} median {statistics.median(seconds):.2f} s of {len(seconds)}")
    print(f"pictures in {out}")


if __name__ == "__main__":
    main()
