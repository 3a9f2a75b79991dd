"""The image_dir loader on real images: MNIST written out as PNG class folders, trained with
the same builder and recipe as the mnist loader on the same images.

    python bench/image_dir_mnist.py [--train 10000] [--test 10000] [--epochs 3]

Writes the first N training and M test digits as `train/<digit>/<i>.png` and
`test/<digit>/<i>.png` in a temporary folder, then runs
`cnnlab train configs/mnist_small_cnn.yaml` twice: from the npz (`data.max_samples`) and from
the folder (`loader: image_dir`, grayscale 28x28). Prints both test accuracies and the
decoding time of the folder. With --train equal to --test the two runs see the same images
(the npz run needs that: max_samples cuts both splits); otherwise only the folder run is made.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with np.load(ROOT / "data" / "mnist.npz") as z:
        splits = {
            "train": (z["x_train"][: args.train], z["y_train"][: args.train]),
            "test": (z["x_test"][: args.test], z["y_test"][: args.test]),
        }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "digits"
        for split, (x, y) in splits.items():
            for digit in range(10):
                (root / split / str(digit)).mkdir(parents=True)
            for i, (image, label) in enumerate(zip(x, y, strict=True)):
                Image.fromarray(image).save(root / split / str(label) / f"{i:05d}.png")
        common = ["--set", f"train.epochs={args.epochs}", "--set", "train.verbose=0"]
        variants = {
            "mnist loader (npz)": ["--set", f"data.max_samples={max(args.train, args.test)}"]
            if args.train == args.test
            else None,
            "image_dir (PNG folders)": [
                "--set", f"data={{loader: image_dir, root: {root}, image_size: [28, 28], "
                "color_mode: grayscale, validation_split: 0.1}",
            ],
        }  # fmt: skip
        if variants["mnist loader (npz)"] is None:
            # max_samples takes the first N of train and of test alike.
            del variants["mnist loader (npz)"]
        for label, extra in variants.items():
            out = Path(tmp) / label.split()[0]
            cmd = [sys.executable, "-m", "cnnlab", "train",
                   str(ROOT / "configs" / "mnist_small_cnn.yaml"), *common, *extra,
                   "--set", f"output_dir={out}"]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
            wall = time.perf_counter() - start
            (run_dir,) = out.iterdir()
            metrics = json.loads((run_dir / "metrics.json").read_text())
            print(
                f"{label}: test accuracy {metrics['test']['accuracy']:.4f} on "
                f"{args.test:,} images, {wall:.1f} s wall"
            )
        from cnnlab.config.data import ImageDirData
        from cnnlab.data import load_dataset

        cfg = ImageDirData(
            loader="image_dir", root=str(root), image_size=(28, 28), color_mode="grayscale"
        )
        start = time.perf_counter()
        data = load_dataset(cfg, seed=0)
        n = len(data.x_train) + len(data.x_val) + len(data.x_test)
        print(f"image_dir decoded {n:,} PNGs in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
