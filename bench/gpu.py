"""The GPU path, on the JAX backend by default: what `precision: auto` picks, the deep CNN's
training images/s in float32 and in auto precision, and `cnnlab train`'s wall time and test
accuracy for mnist_fast and (given the CIFAR-10 JPEG folder) cifar10_airbench94 (its test
folder's accuracy, or without one its held-out 10%'s).

    python bench/gpu.py [--backend jax] [--cifar-root data/cifar10] [--seeds 1]
        [--steps 20] [--repeats 3] [--quick] [--json gpu.json]

Images/s come from bench/recipe_speed.py (the config's model fitted on random uint8 images
after a warm-up epoch, median of --repeats); the wall times from bench/time_to_accuracy.py
(one `cnnlab train` process per seed, start-up and scoring included). --quick shrinks every
run to one epoch to check the script itself on a CPU; its numbers mean
nothing.
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
# A Kaggle submission is scored against all 10,000 test labels: mnist_fast keeps its data.
QUICK = {
    "mnist_fast": ["train.epochs=1"],
    "cifar10_airbench94": ["train.epochs=1"],  # image folders take no max_samples
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="jax", choices=["jax", "tensorflow"])
    parser.add_argument("--cifar-root", type=Path, help="CIFAR-10 JPEGs in class folders")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend  # before Keras loads, here and in the runs

    from recipe_speed import images_per_second
    from time_to_accuracy import time_runs

    from cnnlab.utils.environment import describe_device, resolve_precision, start_backend_quietly

    start_backend_quietly(args.backend)
    import keras

    engine = sys.modules[args.backend]
    precision, why = resolve_precision("auto")
    record: dict = {
        "device": describe_device(),
        "backend": args.backend,
        "versions": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            args.backend: engine.__version__,
        },
        "precision_auto": {"policy": precision, "why": why},
    }
    print(f"{record['device']}; {record['versions']}; precision auto: {precision} ({why})")

    deep = ROOT / "configs" / "mnist_deep_cnn.yaml"
    steps, repeats = (2, 1) if args.quick else (args.steps, args.repeats)
    for name in ("float32", "auto"):
        rate, _, _ = images_per_second(deep, steps, repeats, [f"train.precision={name}"])
        record[f"deep_cnn_images_per_second_{name}"] = round(rate, 1)
        print(f"deep CNN, precision {name}: {rate:,.0f} images/s", flush=True)

    recipes = [("mnist_fast", [])]
    if args.cifar_root is not None:
        recipes.append(("cifar10_airbench94", [f"data.root={args.cifar_root.resolve()}"]))
    for name, overrides in recipes:
        overrides = [f"backend={args.backend}", *overrides, *(QUICK[name] if args.quick else [])]
        runs = time_runs(f"configs/{name}.yaml", args.seeds, f"outputs/bench-gpu/{name}", overrides)
        record[name] = {
            "wall_s": round(statistics.median(r["wall"] for r in runs), 1),
            "accuracy": statistics.median(r["accuracy"] for r in runs),
            "split": runs[0]["split"],
            "train_seconds": round(
                statistics.median(r["metrics"]["train_seconds"] for r in runs), 1
            ),
            "precision": runs[0]["metrics"]["precision"],
            "seeds": args.seeds,
        }

    print(f"\n{record['device']}, {args.backend} {engine.__version__}, Keras {keras.__version__}\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| precision auto | {precision} ({why}) |")
    for name in ("float32", "auto"):
        rate = record[f"deep_cnn_images_per_second_{name}"]
        print(f"| deep CNN training, {name} | {rate:,.0f} images/s |")
    for name, _ in recipes:
        r = record[name]
        print(
            f"| `cnnlab train configs/{name}.yaml` | {r['wall_s']} s wall "
            f"({r['train_seconds']} s fitting), {r['split']} accuracy {r['accuracy']:.4f} "
            f"({r['precision']}) |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
