"""Decoding an image folder: the first run (every file decoded) against a cached run, with the
peak memory of each, and `cnnlab check` end to end (TensorFlow start-up included) both ways.

    python bench/image_cache.py ROOT [--size 32] [--repeats 3]

ROOT is an `image_dir` root, e.g. the CIFAR-10 JPEG folders
(`tar -xzf ../shared/data/cifar10-train-jpg.tar.gz -C /tmp/cifar10`, then ROOT=/tmp/cifar10).
Each measurement is a fresh process with an empty (cold) or filled (cached) cache folder:
wall time of `load_dataset` and the process's peak resident memory (ru_maxrss). Medians of
--repeats; the cold runs each start from a new, empty cache.
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

LOAD = """
import json, resource, sys, time
from cnnlab.config.data import ImageDirData
from cnnlab.data import load_dataset
cfg = ImageDirData(loader="image_dir", root=sys.argv[1], image_size=(int(sys.argv[2]),) * 2)
start = time.perf_counter()
data = load_dataset(cfg, seed=0)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
images = len(data.x_train) + len(data.x_val) + (0 if data.x_test is None else len(data.x_test))
print(json.dumps({"seconds": seconds, "peak_mib": peak, "images": images,
                  "array_mib": data.nbytes / 2**20}))
"""


def load(root: str, size: int, cache: str) -> dict:
    env = {**os.environ, "CNNLAB_CACHE_DIR": cache}
    out = subprocess.run(
        [sys.executable, "-c", LOAD, root, str(size)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_seconds(root: str, size: int, cache: str, tmp: str) -> float:
    config = Path(tmp) / "bench.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [{size}, {size}]}}\n"
        f"model: {{builder: small_cnn}}\noutput_dir: {tmp}/out\n"
    )
    env = {**os.environ, "CNNLAB_CACHE_DIR": cache}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cnnlab", "check", str(config)],
        env=env, capture_output=True, check=True,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list] = {"cold": [], "cached": [], "check cold": [], "check cached": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            cache = f"{tmp}/cache{i}"
            rows["cold"].append(load(args.root, args.size, cache))
            rows["cached"].append(load(args.root, args.size, cache))
            print(f"repeat {i + 1}: cold {rows['cold'][-1]}, cached {rows['cached'][-1]}")
            cache = f"{tmp}/check{i}"
            rows["check cold"].append(check_seconds(args.root, args.size, cache, tmp))
            rows["check cached"].append(check_seconds(args.root, args.size, cache, tmp))
            print(
                f"  cnnlab check: {rows['check cold'][-1]:.1f} s, {rows['check cached'][-1]:.1f} s"
            )
    first = rows["cold"][0]
    print(
        f"\n{first['images']:,} images of {args.size}x{args.size} "
        f"({first['array_mib']:,.0f} MiB as uint8), medians of {args.repeats}:"
    )
    for kind in ("cold", "cached"):
        seconds = statistics.median(r["seconds"] for r in rows[kind])
        peak = statistics.median(r["peak_mib"] for r in rows[kind])
        rate = first["images"] / seconds
        print(
            f"  load_dataset {kind:>6}: {seconds:6.2f} s ({rate:,.0f} images/s), "
            f"peak {peak:,.0f} MiB"
        )
    for kind in ("check cold", "check cached"):
        print(
            f"  cnnlab {kind:>12}: {statistics.median(rows[kind]):6.2f} s (process start to exit)"
        )


if __name__ == "__main__":
    main()
