"""TensorFlow's CPU kernels, oneDNN against Eigen: training and prediction speed of each config's
model, side by side.

    python bench/cpu_kernels.py [CONFIG ...] [--steps 3] [--repeats 3] [--set key=value ...]

TensorFlow picks its kernel library when it starts (TF_ENABLE_ONEDNN_OPTS; cnnlab sets it to 1
on x86-64, where TensorFlow's own default is oneDNN only on CPUs with VNNI, bfloat16 or AMX), so
each measurement is a fresh process: for each config, --repeats rounds of one Eigen and one
oneDNN process, in turn, so that the machine's swings fall on both alike. A process builds the
config's model in the precision `auto` picks, fits it on --steps batches of random uint8 images
(after one untimed fit that traces it), then predicts the same images with
cnnlab.inference.class_probabilities. Printed: the medians of images/s and of process CPU ms
per image (which, unlike wall time, does not count time the machine took the cores away), and
the median of the per-round ratios Eigen / oneDNN of CPU ms per image.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULTS = [
    Path("configs/cifar10_airbench94.yaml"),
    Path("configs/catsdogs_best.yaml"),
    Path("configs/mnist_best.yaml"),
]
SETTINGS = {"Eigen": "0", "oneDNN": "1"}


def child(config: Path, steps: int, overrides: list[str]) -> dict:
    """One process's figures: {kernels, precision, train: (images/s, CPU ms), predict: ...}."""
    import keras

    from bench.recipe_speed import random_data
    from cnnlab.data.pipeline import BatchPlan, batches
    from cnnlab.inference import class_probabilities
    from cnnlab.models import build_model
    from cnnlab.training.phases import compile_model
    from cnnlab.utils.environment import (
        dtype_policy,
        resolve_precision,
        start_backend_quietly,
        tensorflow_cpu_kernels,
    )

    start_backend_quietly("tensorflow")
    cfg, classes, x, y = random_data(config, overrides, steps)
    precision, _ = resolve_precision(cfg.train.precision)

    def timed(work) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return len(x) / wall, cpu / len(x) * 1e3

    with dtype_policy(precision):
        keras.utils.set_random_seed(0)
        model = build_model(cfg.model, cfg.data.input_shape, classes)
        compile_model(model, cfg.train, train_size=len(x))

        def fit():  # fed as `cnnlab train` feeds it
            data = batches(x, y, cfg.train.batch_size, BatchPlan(seed=0))
            model.fit(data, steps_per_epoch=steps, verbose=0)

        fit()  # build and trace
        train = timed(fit)
        class_probabilities(model, x[: cfg.train.batch_size])  # trace
        predict = timed(lambda: class_probabilities(model, x))
    return {
        "kernels": tensorflow_cpu_kernels(),
        "precision": precision,
        "train": train,
        "predict": predict,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", type=Path, default=DEFAULTS)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.configs[0], args.steps, args.overrides)))
        return
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "?")
    print(f"CPU: {model}, {os.cpu_count()} cores", flush=True)
    for config in args.configs:
        runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
        for _ in range(args.repeats):
            for name, value in SETTINGS.items():
                command = [sys.executable, __file__, str(config), "--child",
                           "--steps", str(args.steps)]  # fmt: skip
                for override in args.overrides:
                    command += ["--set", override]
                env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": value}
                out = subprocess.run(command, env=env, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"{config} with {name}: {out.stderr.strip().splitlines()[-1]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                if result["kernels"] != name:
                    sys.exit(f"asked for {name} kernels, TensorFlow ran {result['kernels']}")
                runs[name].append(result)
        print(f"{config.stem}, {runs['oneDNN'][0]['precision']}:", flush=True)
        for part in ("train", "predict"):
            for name, results in runs.items():
                rate = statistics.median(r[part][0] for r in results)
                cpu = statistics.median(r[part][1] for r in results)
                print(f"  {part:7s} {name:6s} {rate:8.1f} images/s, {cpu:7.3f} CPU ms/image")
            ratio = statistics.median(
                e[part][1] / o[part][1] for e, o in zip(runs["Eigen"], runs["oneDNN"], strict=True)
            )
            print(f"  {part:7s} Eigen / oneDNN CPU time: {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
