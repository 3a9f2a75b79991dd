"""The GPU path, on the JAX backend by default: what `precision: auto` picks, the deep CNN's
training images/s in float32 and in auto precision, and `cnnlab train`'s wall time and accuracy
for mnist_fast and (given the CIFAR-10 JPEG folder) cifar10_airbench94 (its test folder's
accuracy, or without one its held-out 10%'s), or for the recipes named.

    python bench/gpu.py [--backend jax] [--cifar-root data/cifar10] [--recipes NAME ...]
        [--seeds 42 43] [--steps 20] [--repeats 3] [--quick] [--json gpu.json]

The wall times come from bench/time_to_accuracy.py: one `cnnlab train` process per seed
(start-up and scoring included), all of a recipe's runs sharing one empty cache, so the first
run is cold (decoding the data and, on JAX, compiling the steps) and the others warm (both
read back from the cache). Images/s come from bench/recipe_speed.py (the config's model
fitted on random uint8 images after a warm-up epoch, median of --repeats), measured after the
runs, so that this process holds no GPU memory while they train. --quick shrinks every run to
one epoch to check the script itself on a CPU; its numbers mean nothing.
Prints a Markdown table with the device and versions, and writes it as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ("cifar10_airbench94", "cifar10_airbench94_muon", "cifar10_airbench93")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="jax", choices=["jax", "tensorflow"])
    parser.add_argument("--cifar-root", type=Path, help="CIFAR-10 JPEGs in class folders")
    parser.add_argument("--recipes", nargs="+", help="config names (default: mnist_fast, "
                        "and cifar10_airbench94 with --cifar-root)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend  # before Keras loads, here and in the runs
    recipes = args.recipes or ["mnist_fast", *(["cifar10_airbench94"] if args.cifar_root else [])]
    if any(name in CIFAR for name in recipes) and args.cifar_root is None:
        parser.error("the CIFAR-10 recipes need --cifar-root")

    from recipe_speed import images_per_second
    from time_to_accuracy import time_runs

    record: dict = {"backend": args.backend, "recipes": {}}
    for name in recipes:
        overrides = [f"backend={args.backend}"]
        if name in CIFAR:
            overrides.append(f"data.root={args.cifar_root.resolve()}")
        if args.quick:
            overrides.append("train.epochs=1")
        config, out = f"configs/{name}.yaml", f"outputs/bench-gpu/{name}"
        runs = time_runs(config, args.seeds, out, overrides, warm=True)
        record["recipes"][name] = {
            cache: {
                "wall_s": round(statistics.median(r["wall"] for r in them), 1),
                "train_seconds": round(
                    statistics.median(r["metrics"]["train_seconds"] for r in them), 1
                ),
                "accuracy": statistics.median(r["accuracy"] for r in them),
                "seeds": [r["seed"] for r in them],
            }
            for cache in ("cold", "warm")
            if (them := [r for r in runs if r["cache"] == cache])
        } | {"split": runs[0]["split"], "precision": runs[0]["metrics"]["precision"]}

    from cnnlab.utils.environment import describe_device, resolve_precision, start_backend_quietly

    start_backend_quietly(args.backend)
    import keras

    engine = sys.modules[args.backend]
    precision, why = resolve_precision("auto")
    record |= {
        "device": describe_device(),
        "versions": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            args.backend: engine.__version__,
        },
        "precision_auto": {"policy": precision, "why": why},
    }
    deep = ROOT / "configs" / "mnist_deep_cnn.yaml"
    steps, repeats = (2, 1) if args.quick else (args.steps, args.repeats)
    for name in ("float32", "auto"):
        rate, _, _ = images_per_second(deep, steps, repeats, [f"train.precision={name}"])
        record[f"deep_cnn_images_per_second_{name}"] = round(rate, 1)
        print(f"deep CNN, precision {name}: {rate:,.0f} images/s", flush=True)

    print(f"\n{record['device']}, {args.backend} {engine.__version__}, Keras {keras.__version__}\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| precision auto | {precision} ({why}) |")
    for name in ("float32", "auto"):
        rate = record[f"deep_cnn_images_per_second_{name}"]
        print(f"| deep CNN training, {name} | {rate:,.0f} images/s |")
    for name, r in record["recipes"].items():
        for cache in ("cold", "warm"):
            if cache in r:
                c = r[cache]
                print(
                    f"| `cnnlab train configs/{name}.yaml`, {cache} cache | {c['wall_s']} s wall "
                    f"({c['train_seconds']} s fitting), {r['split']} accuracy "
                    f"{c['accuracy']:.4f} ({r['precision']}; seeds {c['seeds']}) |"
                )
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
