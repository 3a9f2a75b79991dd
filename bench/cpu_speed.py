"""Training speed on this CPU against its peak: images/s of each config's model in float32 and in
the precision `auto` picks, with cnnlab's fused BatchNorm/GELU and with Keras' own layers, and
fed by cnnlab's training batches or by one in-memory batch.

    python bench/cpu_speed.py [CONFIG ...] [--steps 4] [--repeats 5] [--set key=value ...]

CONFIGs default to configs/cifar10_airbench94.yaml and configs/catsdogs_best.yaml. For each
config and precision, four versions of its model train side by side, in turn, --repeats times
(the same weights; the median of each is printed, so that the machine's swings, which can
halve a run, fall on all alike):

- fused, loader: the model as cnnlab builds it, fed by cnnlab.data.pipeline.batches (shuffled
  gathers of uint8 images, alternating flips where the config has them), as `cnnlab train`;
- fused, in memory: the same model fitted on one batch held as a tensor, repeated;
- keras, loader / keras, in memory: cnnlab's BatchNorm and Gelu replaced by
  keras.layers.BatchNormalization and Activation("gelu");
- loader alone: the loader's batches drawn with no model, its own CPU time per image;
- predict: each model's predictions (cnnlab.inference.class_probabilities, one view) of the
  same images, as a run's scoring and `cnnlab predict` make them.

Images are random uint8 pixels (the speed does not depend on them). A training image costs 3x
the forward FLOPs of its Conv2D and Dense layers (`cnnlab summary`; the backward pass is two
products per forward one); the FLOP rate is that times images/s, printed with the fraction of
the peak this CPU's instruction set allows at the clock /proc/cpuinfo reports: 2 cores x (FMA
units x lanes x 2 FLOP) per cycle, AVX2 32 and AVX-512 64 float32 FLOP per cycle, AMX-BF16 1024
bfloat16 FLOP per cycle. Process CPU seconds per image are printed too: unlike wall time they
do not count time the machine took the cores away.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULTS = [Path("configs/cifar10_airbench94.yaml"), Path("configs/catsdogs_best.yaml")]


def peak_flops() -> tuple[dict[str, float], str]:
    """{precision: peak FLOP/s of all cores}, and how it was reckoned."""
    flags = set()
    mhz = []
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("cpu MHz"):
                mhz.append(float(line.split(":", 1)[1]))
    cores = os.cpu_count() or 1
    hz = (statistics.median(mhz) if mhz else 2000.0) * 1e6
    fp32 = 64 if "avx512f" in flags else 32 if "avx2" in flags else 16
    peaks = {"float32": cores * hz * fp32}
    isa = "AVX-512" if fp32 == 64 else "AVX2" if fp32 == 32 else "SSE"
    if "amx_bf16" in flags:
        peaks["mixed_bfloat16"] = cores * hz * 1024
        isa += " + AMX-BF16"
    elif "avx512_bf16" in flags:
        peaks["mixed_bfloat16"] = cores * hz * 128
        isa += " + AVX512_BF16"
    else:
        peaks["mixed_bfloat16"] = peaks["float32"]  # emulated: no faster than float32
    return peaks, f"{cores} cores x {hz / 1e9:.2f} GHz, {isa}"


def keras_layers(model):
    """`model` with cnnlab's fused BatchNorm and Gelu replaced by Keras' own, same weights."""
    import keras

    from cnnlab.models.layers import BatchNorm, Gelu

    def copy(layer):
        config = layer.get_config()
        if isinstance(layer, BatchNorm):
            return keras.layers.BatchNormalization.from_config(config)
        if isinstance(layer, Gelu):
            return keras.layers.Activation.from_config(config)
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=copy)
    clone.set_weights(model.get_weights())
    return clone


def measure(config: Path, precision: str, steps: int, repeats: int, overrides: list[str]):
    import keras
    import tensorflow as tf

    from bench.recipe_speed import random_data
    from cnnlab.commands.check import count_flops
    from cnnlab.data.pipeline import BatchPlan, batches, without_autotune
    from cnnlab.inference import class_probabilities
    from cnnlab.models import build_model
    from cnnlab.training.phases import compile_model
    from cnnlab.utils.environment import dtype_policy

    cfg, classes, x, y = random_data(config, overrides, steps)
    batch = cfg.train.batch_size
    flip = cfg.model.augmentation is not None and cfg.model.augmentation.flip == "alternating"
    results: dict[str, list[tuple[float, float]]] = {}
    predict: dict[str, list[tuple[float, float]]] = {}
    with dtype_policy(precision):
        keras.utils.set_random_seed(0)
        fused = build_model(cfg.model, cfg.data.input_shape, classes)
        models = {"fused": fused, "keras": keras_layers(fused)}
        feeds = {
            "loader": lambda: batches(
                x, y, batch, BatchPlan(seed=0, epochs=repeats + 1, alternate_flip=flip)
            ),
            "in memory": lambda: without_autotune(
                tf.data.Dataset.from_tensors(
                    (tf.constant(x[:batch]), tf.constant(y[:batch]))
                ).repeat()
            ),
        }
        runs = {}
        for name, model in models.items():
            compile_model(model, cfg.train, train_size=len(x))
            for feed, make in feeds.items():
                data = make()
                model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)  # trace
                runs[f"{name}, {feed}"] = (model, data)
        for _ in range(repeats):  # in turn, so that the machine's swings fall on all alike
            for key, (model, data) in runs.items():
                wall, cpu = time.perf_counter(), time.process_time()
                model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                results.setdefault(key, []).append((len(x) / wall, cpu / len(x)))
        for model in models.values():
            class_probabilities(model, x)  # trace
        for _ in range(repeats):
            for name, model in models.items():
                wall, cpu = time.perf_counter(), time.process_time()
                class_probabilities(model, x)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                predict.setdefault(name, []).append((len(x) / wall, cpu / len(x)))
        flops = 3 * count_flops(fused)
    # The loader alone: its batches drawn as fast as it gives them, no model.
    feed = iter(feeds["loader"]())
    next(feed)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps * repeats):
        next(feed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    loader = (steps * repeats * batch / wall, cpu / (steps * repeats * batch))
    return results, predict, flops, loader


def main() -> None:
    from cnnlab.utils.environment import resolve_precision

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", type=Path, default=DEFAULTS)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    peaks, how = peak_flops()
    auto, why = resolve_precision("auto")
    print(f"peak: {how}; float32 {peaks['float32'] / 1e9:,.0f} GFLOP/s, bfloat16 "
          f"{peaks['mixed_bfloat16'] / 1e9:,.0f} GFLOP/s; auto is {auto} ({why})")  # fmt: skip
    for config in args.configs:
        for precision in dict.fromkeys(["float32", auto]):
            results, predict, flops, loader = measure(
                config, precision, args.steps, args.repeats, args.overrides
            )
            print(f"{config.stem}, {precision}: {flops / 1e9:.2f} GFLOP per training image")
            base = statistics.median(r for r, _ in results["keras, loader"])
            for key, values in results.items():
                rate = statistics.median(r for r, _ in values)
                cpu = statistics.median(c for _, c in values)
                share = rate * flops / peaks[precision]
                print(
                    f"  {key:18s} {rate:7.1f} images/s ({min(r for r, _ in values):.0f}-"
                    f"{max(r for r, _ in values):.0f}), {rate / base:4.2f}x keras+loader, "
                    f"{rate * flops / 1e9:6.1f} GFLOP/s = {share:5.1%} of peak, "
                    f"{cpu * 1e3:.2f} CPU ms/image",
                    flush=True,
                )
            base = statistics.median(c for _, c in predict["keras"])
            for key, values in predict.items():
                cpu = statistics.median(c for _, c in values)
                print(
                    f"  predict, {key:9s} {statistics.median(r for r, _ in values):7.1f} images/s, "
                    f"{cpu * 1e3:.3f} CPU ms/image, {base / cpu:4.2f}x less CPU than keras",
                    flush=True,
                )
            fused = statistics.median(c for _, c in results["fused, loader"])
            print(f"  loader alone {loader[0]:,.0f} images/s, {loader[1] * 1e3:.3f} CPU ms/image "
                  f"({loader[1] / fused:.2%} of a fused, loader training image's)")  # fmt: skip


if __name__ == "__main__":
    main()
