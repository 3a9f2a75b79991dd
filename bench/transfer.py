"""VGG16 on a photo folder: decoding speed of image_dir, and cached features vs. a live base.

    python bench/transfer.py [--images 400] [--epochs 3] [--repeats 3]

Writes a cats-vs-dogs-like folder of JPEG photos (500x375, MNIST digits tinted and enlarged,
train/validation/test) to a temporary folder, then:
1. times `load_dataset` on it (every file decoded, converted, resized to 150x150);
2. runs `cnnlab train configs/catsdogs_vgg16_features.yaml` on it with random VGG16 weights
   (speed does not depend on the weights), once with `cache_features: true` and once with
   `false`, for the same epochs, and reports the seconds of the whole command and of fitting.
Medians over repeats, the two variants alternating; prints the commands it ran.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.images import write_split_folders  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="training images (all classes)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from cnnlab.config.data import ImageDirData
    from cnnlab.data import load_dataset

    with np.load(ROOT / "data" / "mnist.npz") as z:
        mnist = {k: z[k] for k in z.files}
    per_class = args.images // 2
    with tempfile.TemporaryDirectory() as tmp:
        root = write_split_folders(
            Path(tmp) / "photos", mnist, counts=(per_class, per_class // 2, per_class // 2),
            size=500,
        )  # fmt: skip
        files = sum(1 for p in root.rglob("*") if p.is_file())
        cfg = ImageDirData(loader="image_dir", root=str(root), image_size=(150, 150))
        loads = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            load_dataset(cfg, seed=0)
            loads.append(time.perf_counter() - start)
        print(
            f"image_dir: {files} files decoded and resized in {statistics.median(loads):.2f} s "
            f"(median of {args.repeats}; {files / statistics.median(loads):,.0f} images/s)"
        )
        results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for repeat in range(args.repeats):
            for cached in (True, False):
                out = Path(tmp) / f"out-{cached}-{repeat}"
                cmd = [
                    sys.executable, "-m", "cnnlab", "train",
                    str(ROOT / "configs" / "catsdogs_vgg16_features.yaml"),
                    "--set", f"data.root={root}", "--set", "model.weights=none",
                    "--set", f"model.cache_features={str(cached).lower()}",
                    "--set", f"train.epochs={args.epochs}", "--set", "train.early_stopping=null",
                    "--set", "train.verbose=0", "--set", f"output_dir={out}",
                ]  # fmt: skip
                start = time.perf_counter()
                subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
                wall = time.perf_counter() - start
                (run_dir,) = out.iterdir()
                fit = json.loads((run_dir / "metrics.json").read_text())["train_seconds"]
                results[cached].append((wall, fit))
                print(f"  cache_features={cached}: {wall:.1f} s wall, {fit:.1f} s fitting")
        print(" ".join(cmd[2:]).replace("cache_features=false", "cache_features=<true|false>"))
        med = {k: [statistics.median(x) for x in zip(*v, strict=True)] for k, v in results.items()}
        print(
            f"{args.images} train images, {args.epochs} epochs, medians of {args.repeats}: "
            f"cached {med[True][0]:.1f} s wall ({med[True][1]:.1f} s fitting), live base "
            f"{med[False][0]:.1f} s wall ({med[False][1]:.1f} s fitting): "
            f"{med[False][0] / med[True][0]:.1f}x faster whole, "
            f"{med[False][1] / med[True][1]:.0f}x faster fitting"
        )


if __name__ == "__main__":
    main()
