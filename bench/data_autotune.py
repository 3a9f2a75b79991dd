"""What tf.data's autotuning costs cnnlab's fits and predictions: the same calls, side by side,
fed by pipelines with autotuning (as Keras builds one for an array, and as cnnlab's were) and
without it (as cnnlab's are now).

    python bench/data_autotune.py [CONFIG] [--steps 3] [--images 8192] [--repeats 8]

CONFIG (default configs/cifar10_airbench94.yaml) gives the model, batch size and input shape;
the images are random uint8 pixels. Each repeat runs, in turn:

- fit, autotuned / fit, cnnlab: one fit of --steps batches from cnnlab.data.pipeline.batches,
  with autotuning switched back on, and as cnnlab feeds it;
- predict, autotuned / predict, cnnlab: --images predicted by `model.predict(array)` (Keras'
  own pipeline) and by cnnlab.data.pipeline.predict.

Printed per kind of call: each call's wall seconds, the median, and how many calls took over
1.3x the median of the other version of the same call. An iterator that is deleted with
autotuning on waits for the autotuner's next round (rounds at 10 ms x (2^k - 1) after the
iterator's start, then every 60 s), so the autotuned calls' times cluster at 5.11 s, 10.23 s,
20.47 s, ... when the wait happens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cnnlab  # noqa: E402, F401  (before Keras: its TensorFlow settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", type=Path,
                        default=Path("configs/cifar10_airbench94.yaml"))  # fmt: skip
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from bench.recipe_speed import random_data
    from cnnlab.data.pipeline import BatchPlan, batches, predict
    from cnnlab.models import build_model
    from cnnlab.training.phases import compile_model
    from cnnlab.utils.environment import describe_device, dtype_policy, resolve_precision

    cfg, classes, x, y = random_data(args.config, [], args.steps)
    batch = cfg.train.batch_size
    images = np.resize(x, (args.images, *x.shape[1:]))
    precision, _ = resolve_precision(cfg.train.precision)
    autotuned = tf.data.Options()
    autotuned.autotune.enabled = True

    def feed(tuned: bool):
        data = batches(x, y, batch, BatchPlan(seed=0, epochs=1))
        return data.with_options(autotuned) if tuned else data

    calls = {
        "fit, autotuned": lambda: model.fit(feed(True), steps_per_epoch=args.steps, verbose=0),
        "fit, cnnlab": lambda: model.fit(feed(False), steps_per_epoch=args.steps, verbose=0),
        "predict, autotuned": lambda: model.predict(images, batch_size=512, verbose=0),
        "predict, cnnlab": lambda: predict(model, images, 512),
    }
    print(
        f"{args.config.stem}, {precision}, {describe_device()}: fit {args.steps} batches of "
        f"{batch}, predict {args.images:,} images; {args.repeats} repeats",
        flush=True,
    )
    with dtype_policy(precision):
        keras.utils.set_random_seed(0)
        model = build_model(cfg.model, cfg.data.input_shape, classes)
        compile_model(model, cfg.train, train_size=len(x))
        for call in calls.values():  # trace
            call()
        times: dict[str, list[float]] = {key: [] for key in calls}
        for _ in range(args.repeats):
            for key, call in calls.items():
                start = time.perf_counter()
                call()
                times[key].append(time.perf_counter() - start)
    for key, values in times.items():
        kind = key.split(",")[0]
        other = next(k for k in times if k.startswith(kind) and k != key)
        limit = 1.3 * statistics.median(times[other])
        slow = sum(t > limit for t in values)
        print(f"  {key:19s} median {statistics.median(values):6.2f} s, max {max(values):6.2f} s, "
              f"{slow}/{len(values)} over 1.3x the other's median: "
              + " ".join(f"{t:.2f}" for t in values), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
