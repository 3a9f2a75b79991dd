"""Time to accuracy: `cnnlab train` of a fixed-budget recipe, wall time and test accuracy.

    python bench/time_to_accuracy.py [--config configs/mnist_fast.yaml] [--seeds 1 2 3]
        [--set key=value ...] [--warm]

Each seed is one `cnnlab train` process timed from start to exit (Python and Keras start-up,
reading the data, training, scoring and the reports included), with an empty cache, so the
data is decoded (and on JAX the steps compiled) cold every time; with --warm the runs share
one cache, which the first fills. The default recipe's data are the Kaggle CSVs from
`cnnlab data mnist-to-kaggle data/mnist.npz data/kaggle` (made if missing): training writes a
submission for the unlabelled test.csv, which is scored against test_labels.csv, so the test
labels play no part in training or in picking the epoch. A recipe whose test images have
labels is scored by the run itself, and one without test images (cifar10_airbench94 on the
training JPEGs alone) on its held-out validation images. Prints each run and the medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KAGGLE = ROOT / "data" / "kaggle"
CNNLAB = [sys.executable, "-m", "cnnlab"]


def time_runs(
    config: str, seeds: list[int], output_dir: str, overrides: list[str], warm: bool = False
) -> list[dict]:
    """Train `config` once per seed; each run's wall time, accuracy (on the test set, or on the
    validation set of a recipe without test images), metrics, and whether its cache was
    "cold" (empty) or "warm". Each run has an empty cache of its own, or with `warm` all share
    one: the first run fills it (decoded data; on JAX the compiled steps) and the others are
    warm."""
    os.chdir(ROOT)
    loader = yaml.safe_load(Path(config).read_text())["data"]["loader"]
    if loader == "kaggle_csv" and not (KAGGLE / "train.csv").is_file():
        make = [*CNNLAB, "data", "mnist-to-kaggle", "data/mnist.npz", str(KAGGLE)]
        subprocess.run(make, check=True)
    out = Path(output_dir)
    results = []
    shared = tempfile.TemporaryDirectory() if warm else contextlib.nullcontext()
    with shared as shared_cache:
        for i, seed in enumerate(seeds):
            before = set(out.glob("*")) if out.is_dir() else set()
            with tempfile.TemporaryDirectory() as own_cache:
                env = {**os.environ, "CNNLAB_CACHE_DIR": shared_cache or own_cache}
                env.pop("JAX_COMPILATION_CACHE_DIR", None)  # JAX's goes in cnnlab's cache
                start = time.perf_counter()
                subprocess.run(
                    [*CNNLAB, "train", config, "--set", f"seed={seed}", "--set",
                     f"output_dir={out}", "--set", "train.verbose=0",
                     *(x for o in overrides for x in ("--set", o))],
                    check=True, env=env, stdout=subprocess.DEVNULL,
                )  # fmt: skip
                wall = time.perf_counter() - start
            results.append(_result(out, before, seed, wall, "warm" if warm and i else "cold"))
    return results


def _result(out: Path, before: set, seed: int, wall: float, cache: str) -> dict:
    """A finished run's wall time, accuracy and metrics, printed as one line."""
    (run,) = set(out.glob("*")) - before
    metrics = json.loads((run / "metrics.json").read_text())
    if (run / "submission.csv").is_file():
        score = [*CNNLAB, "data", "score", run / "submission.csv", KAGGLE / "test_labels.csv"]
        scored = subprocess.run(score, check=True, capture_output=True, text=True).stdout
        accuracy, split = float(scored.split("accuracy")[1].split()[0]), "test"
    else:
        split = "test" if metrics["test"] is not None else "val"
        accuracy = metrics[split]["accuracy"]
    print(
        f"seed {seed}: {split} accuracy {accuracy:.4f}, cnnlab train {wall:.1f} s wall "
        f"({metrics['train_seconds']:.1f} s fitting {metrics['epochs_run']} epochs, "
        f"{metrics['precision']}, {metrics.get('backend', 'tensorflow')}, {cache} cache)  [{run}]",
        flush=True,
    )
    return {
        "seed": seed, "wall": wall, "accuracy": accuracy, "split": split, "metrics": metrics,
        "cache": cache,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/mnist_fast.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--output-dir", default="outputs/bench-time-to-accuracy")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--warm", action="store_true", help="one cache for all the runs")
    args = parser.parse_args()
    results = time_runs(args.config, args.seeds, args.output_dir, args.overrides, args.warm)
    print(
        f"median of {len(results)}: {results[0]['split']} accuracy "
        f"{statistics.median(r['accuracy'] for r in results):.4f}, "
        f"wall {statistics.median(r['wall'] for r in results):.1f} s"
    )
    seeds = " ".join(map(str, args.seeds))
    extra = "".join(f" --set {o}" for o in args.overrides) + (" --warm" if args.warm else "")
    print(
        f"reproduce: python bench/time_to_accuracy.py --config {args.config} --seeds {seeds}{extra}"
    )


if __name__ == "__main__":
    main()
