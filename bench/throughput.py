"""Training throughput: cnnlab's code path vs. the plain Keras script a user would write.

    python bench/throughput.py [--repeats 3] [--epochs 2] [--batch-size 64]

Both train the Kaggle deep CNN (936,426 parameters) on the same 54,000 MNIST images with 6,000
held out for validation, Adam, float32, one fresh process each, alternating cnnlab / plain. The
figure is the last epoch's training images per second of epoch wall time (validation included
in both), so one-off start-up work (graph tracing, the first epoch) is left out. Prints each
run, the medians and the ratio cnnlab / plain.
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
from cnnlab.train import train
cfg = load_config("configs/mnist_deep_cnn.yaml", [
    f"output_dir={{tempfile.mkdtemp()}}", "train.epochs={epochs}", "train.batch_size={batch}",
    "train.verbose=0", "train.lr_schedule=constant",
])
run = train(cfg)
seconds = pd.read_csv(run / "history.csv")["epoch_seconds"].iloc[-1]
print(json.dumps({{"images_per_second": 54000 / seconds}}))
"""

PLAIN = """
import json, time
import numpy as np, keras
from keras import layers
keras.utils.set_random_seed(42)
with np.load("data/mnist.npz") as z:
    x, y = z["x_train"][..., None].astype("float32") / 255.0, z["y_train"]
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
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): self.last = time.perf_counter() - self.t
timer = Timer()
model.fit(x, y, batch_size={batch}, epochs={epochs}, validation_split=0.1, verbose=0,
          callbacks=[timer])
print(json.dumps({{"images_per_second": 54000 / timer.last}}))
"""


def run(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    fill = {"epochs": args.epochs, "batch": args.batch_size}
    results: dict[str, list[float]] = {"cnnlab": [], "plain": []}
    for i in range(args.repeats):
        for name, code in (("cnnlab", CNNLAB), ("plain", PLAIN)):
            results[name].append(run(code.format(**fill)))
            print(f"repeat {i + 1} {name:>6}: {results[name][-1]:,.0f} images/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"median cnnlab {med['cnnlab']:,.0f} images/s, plain Keras {med['plain']:,.0f} images/s, "
        f"ratio {med['cnnlab'] / med['plain']:.3f}"
    )
    print(
        f"reproduce: python bench/throughput.py --repeats {args.repeats} --epochs {args.epochs} "
        f"--batch-size {args.batch_size}"
    )


if __name__ == "__main__":
    main()
