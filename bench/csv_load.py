"""Kaggle CSV load time: parsing and checking (no cache) vs. the content-keyed cache.

    cnnlab data mnist-to-kaggle data/mnist.npz data/kaggle   # once
    python bench/csv_load.py [data/kaggle/train.csv] [--repeats 5]

Prints the median and range of each, in seconds, and the command that reproduces them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default="data/kaggle/train.csv", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.csv.is_file():
        sys.exit(f"{args.csv}: not found; make it with `cnnlab data mnist-to-kaggle`")

    from cnnlab.data.kaggle_csv import read_digits_csv

    def load():
        return read_digits_csv(args.csv, require_label=True)

    with tempfile.TemporaryDirectory() as cache:
        os.environ["CNNLAB_CACHE_DIR"] = ""  # no cache: every call parses and checks
        x, _ = load()
        uncached = timed(load, args.repeats)
        os.environ["CNNLAB_CACHE_DIR"] = cache
        load()  # fill the cache
        cached = timed(load, args.repeats)

    print(f"file: {args.csv} ({args.csv.stat().st_size / 1e6:.0f} MB, {len(x):,} rows)")
    for label, times in (("parse+check (no cache)", uncached), ("cached", cached)):
        print(
            f"{label:>24}: median {statistics.median(times):.3f} s "
            f"(min {min(times):.3f}, max {max(times):.3f}, n={len(times)})"
        )
    print(f"reproduce: python bench/csv_load.py {args.csv} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
