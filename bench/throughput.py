"""Training throughput: cnnlab's code path vs. the plain Keras script a user would write.

    python bench/throughput.py [--repeats 3] [--epochs 3] [--batch-size 64] [--images 60000]

All train the Kaggle deep CNN (936,426 parameters) on the first --images MNIST training images,
90% for training and 10% held out for validation, Adam, one fresh process each, in turn: the
plain script (float32), cnnlab with `train.precision: float32`, cnnlab with `train.precision:
auto` (bfloat16 on CPUs with AVX512_BF16/AMX). A run's figure is the median over its epochs
after the first of training images per second of epoch wall time (validation included in both),
so one-off start-up work (graph tracing, the first epoch) is left out. Prints each run, the
medians over repeats and the ratios to the plain script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CNNLAB = """
import json, tempfile
import pandas as pd
from cnnlab.config import load_config
from cnnlab.training.trainer import train
cfg = load_config("configs/mnist_deep_cnn.yaml", [
    f"output_dir={{tempfile.mkdtemp()}}", "train.epochs={epochs}", "train.batch_size={batch}",
    "train.verbose=0", "train.lr_schedule=constant", "train.precision={precision}",
    "data.max_samples={images}",
])
run = train(cfg)
seconds = pd.read_csv(run / "history.csv")["epoch_seconds"].iloc[1:].median()
print(json.dumps({{"images_per_second": {images} * 0.9 / seconds}}))
"""

PLAIN = """
import json, time
import numpy as np, keras
from keras import layers
keras.utils.set_random_seed(42)
with np.load("data/mnist.npz") as z:
    x = z["x_train"][:{images}, ..., None].astype("float32") / 255.0
    y = z["y_train"][:{images}]
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    layers.Conv2D(32, 3, padding="same", activation="relu"),
    layers.Conv2D(32, 3, padding="same", activation="relu"),
    layers.MaxPooling2D(2, padding="same"),
    layers.Dropout(0.25),
    layers.Conv2D(64, 3, padding="same", activation="relu"),
    layers.Conv2D(64, 3, padding="same", activation="relu"),
    layers.MaxPooling2D(2, padding="same"),
    layers.Flatten(),
    layers.Dense(256, activation="relu"),
    layers.Dense(256, activation="relu"),
    layers.Dropout(0.5),
    layers.Dense(10, activation="softmax"),
])
assert model.count_params() == 936426
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
class Timer(keras.callbacks.Callback):
    seconds = []
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): self.seconds.append(time.perf_counter() - self.t)
timer = Timer()
model.fit(x, y, batch_size={batch}, epochs={epochs}, validation_split=0.1, verbose=0,
          callbacks=[timer])
print(json.dumps({{"images_per_second": {images} * 0.9 / np.median(timer.seconds[1:])}}))
"""


def run(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]


VARIANTS = {
    "plain": (PLAIN, {}),
    "cnnlab float32": (CNNLAB, {"precision": "float32"}),
    "cnnlab auto": (CNNLAB, {"precision": "auto"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=60000, help="first N training images")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")
    fill = {"epochs": args.epochs, "batch": args.batch_size, "images": args.images}
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for i in range(args.repeats):
        for name, (code, extra) in VARIANTS.items():
            results[name].append(run(code.format(**fill, **extra)))
            print(f"repeat {i + 1} {name:>14}: {results[name][-1]:,.0f} images/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    for name in VARIANTS:
        # Each repeat's runs follow one another, so its ratio shares the machine's state then.
        paired = statistics.median(
            a / b for a, b in zip(results[name], results["plain"], strict=True)
        )
        print(
            f"median {name:>14}: {med[name]:,.0f} images/s, {med[name] / med['plain']:.3f} x "
            f"plain's median; median of per-repeat ratios {paired:.3f}"
        )
    print(
        f"reproduce: python bench/throughput.py --repeats {args.repeats} --epochs {args.epochs} "
        f"--batch-size {args.batch_size} --images {args.images}"
    )


if __name__ == "__main__":
    main()
