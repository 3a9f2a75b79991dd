"""Time to accuracy: `cnnlab train` of a fixed-budget recipe, wall time and test accuracy.

    python bench/time_to_accuracy.py [--config configs/mnist_fast.yaml] [--seeds 1 2 3]

Each seed is one `cnnlab train` process timed from start to exit (Python and TensorFlow start-up,
reading the Kaggle CSV, training, scoring and the reports included), with an empty CSV cache,
so the CSV is parsed cold every time. The recipe's data must be the Kaggle CSVs from
`cnnlab data mnist-to-kaggle data/mnist.npz data/kaggle` (made if missing): training writes a
submission for the unlabelled test.csv, which is scored against test_labels.csv, so the test
labels play no part in training or in picking the epoch. Prints each run and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KAGGLE = ROOT / "data" / "kaggle"
CNNLAB = [sys.executable, "-m", "cnnlab"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/mnist_fast.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--output-dir", default="outputs/bench-time-to-accuracy")
    args = parser.parse_args()
    os.chdir(ROOT)
    if not (KAGGLE / "train.csv").is_file():
        make = [*CNNLAB, "data", "mnist-to-kaggle", "data/mnist.npz", str(KAGGLE)]
        subprocess.run(make, check=True)
    out = Path(args.output_dir)
    walls, accuracies = [], []
    for seed in args.seeds:
        before = set(out.glob("*")) if out.is_dir() else set()
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "CNNLAB_CACHE_DIR": cache}
            start = time.perf_counter()
            subprocess.run(
                [*CNNLAB, "train", args.config, "--set", f"seed={seed}",
                 "--set", f"output_dir={out}", "--set", "train.verbose=0"],
                check=True, env=env, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            wall = time.perf_counter() - start
        (run,) = set(out.glob("*")) - before
        score = [*CNNLAB, "data", "score", run / "submission.csv", KAGGLE / "test_labels.csv"]
        scored = subprocess.run(score, check=True, capture_output=True, text=True).stdout
        metrics = json.loads((run / "metrics.json").read_text())
        accuracy = float(scored.split("accuracy")[1].split()[0])
        walls.append(wall)
        accuracies.append(accuracy)
        print(
            f"seed {seed}: test accuracy {accuracy:.4f}, cnnlab train {wall:.1f} s wall "
            f"({metrics['train_seconds']:.0f} s fitting {metrics['epochs_run']} epochs, "
            f"{metrics['precision']})  [{run}]",
            flush=True,
        )
    print(
        f"median of {len(walls)}: test accuracy {statistics.median(accuracies):.4f}, "
        f"wall {statistics.median(walls):.1f} s"
    )
    seeds = " ".join(map(str, args.seeds))
    print(f"reproduce: python bench/time_to_accuracy.py --config {args.config} --seeds {seeds}")


if __name__ == "__main__":
    main()
