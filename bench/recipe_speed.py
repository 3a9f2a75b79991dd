"""Training speed of shipped recipes on this machine, and what it means for their wall time.

    python bench/recipe_speed.py configs/cifar10_airbench94.yaml [more configs] [--steps 8]
        [--repeats 3] [--train-images 42750] [--set key=value ...]

For each config: its model (from the config's builder, input shape and class count, with its
augmentation), compiled as `cnnlab train` compiles it, fitted on random uint8 images for
--steps batches after one warm-up epoch; the median images/s over --repeats is printed with
the time one epoch of --train-images would take and the config's epochs at that rate. The
class count comes from the data config (10 when an image folder is absent: give its root with
--set data.root=...).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import cnnlab  # noqa: F401  (before Keras: its TensorFlow settings, oneDNN's kernels among them)


def random_data(config: Path, overrides: list[str], steps: int):
    """The config, its class count, and `steps` batches of random uint8 images and labels of
    its input shape and batch size (10 classes when an image folder is absent)."""
    from cnnlab.config import load_config
    from cnnlab.data import count_classes

    cfg = load_config(config, overrides, need_data=False)
    classes = count_classes(cfg.data) or 10
    batch = cfg.train.batch_size
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, *cfg.data.input_shape), dtype=np.uint8)
    return cfg, classes, x, rng.integers(0, classes, batch * steps)


def images_per_second(
    config: Path, steps: int, repeats: int, overrides: list[str]
) -> tuple[float, int, int]:
    import keras

    from cnnlab.data.pipeline import BatchPlan, batches
    from cnnlab.models import build_model
    from cnnlab.training.phases import compile_model
    from cnnlab.utils.environment import dtype_policy, resolve_precision

    cfg, classes, x, y = random_data(config, overrides, steps)
    batch = cfg.train.batch_size
    precision, _ = resolve_precision(cfg.train.precision)
    rates = []
    with dtype_policy(precision):
        keras.utils.set_random_seed(0)
        model = build_model(cfg.model, cfg.data.input_shape, classes)
        compile_model(model, cfg.train, train_size=len(x))

        def fit():  # fed as `cnnlab train` feeds it
            model.fit(batches(x, y, batch, BatchPlan(seed=0)), steps_per_epoch=steps, verbose=0)

        fit()  # build and trace
        for _ in range(repeats):
            start = time.perf_counter()
            fit()
            rates.append(len(x) / (time.perf_counter() - start))
    return statistics.median(rates), cfg.train.total_epochs, model.count_params()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=42_750)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    for config in args.configs:
        rate, epochs, params = images_per_second(config, args.steps, args.repeats, args.overrides)
        epoch_s = args.train_images / rate
        print(
            f"{config.stem}: {params:,} parameters, {rate:,.0f} images/s training; an epoch of "
            f"{args.train_images:,} images {epoch_s / 60:.1f} min, {epochs} epochs "
            f"{epochs * epoch_s / 60:.0f} min (validation and scoring not included)",
            flush=True,
        )


if __name__ == "__main__":
    main()
