"""cnnlab against a PyTorch peer of the same recipe (bench/peer_torch.py) on the same images:
steady-state training images/s of each, side by side, and their validation accuracy per epoch.

    python bench/peer_speed.py CONFIG --set data.root=ROOT [--epochs 3] [--repeats 2]
        [--precision float32 --precision auto] [--modes eager compiled] [--skip 1]

CONFIG is configs/cifar10_airbench94.yaml or configs/cifar10_airbench94_muon.yaml. For each
precision (float32 and what `precision: auto` picks on this machine, by default) and each of
--repeats rounds, three trainings of --epochs run one after another, each in its own process:

- cnnlab: `cnnlab.training.train` (what `cnnlab train CONFIG --set ...` runs) with
  train.epochs and train.precision set, and model.tta none (scoring is not timed);
- peer, eager / peer, compiled: bench/peer_torch.py, airbench's method in PyTorch, on the
  images cnnlab's loader splits from the same folder (see its docstring), as it is and
  `torch.compile`d.

The rounds alternate their order (even rounds backwards), so that the machine's swings fall on
all alike. A training's speed is that of its epochs after the first --skip (tracing, compiling
and warm-up happen in the first): the images trained over the seconds spent training them,
validation left out; the medians over the rounds are printed, with process CPU ms per image
(which, unlike wall time, does not count time other work took the cores away), the ratio
cnnlab / the faster peer mode, and the fraction of this CPU's peak reached (bench/cpu_speed.py's
peak_flops: cores x GHz x FLOP per cycle, AVX-512 64 float32 FLOP and AMX-BF16 1,024 bfloat16
FLOP per cycle per core; a training image costs 3x the forward FLOPs of the model's Conv2D
and Dense layers, `cnnlab summary`'s FLOPs). Then each side's validation accuracy per epoch
(first round): the same images, the same number of epochs, each side's own method.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDES = {"cnnlab": None, "peer, eager": [], "peer, compiled": ["--compile"]}


def cnnlab_worker(config: Path, overrides: list[str], epochs: int, precision: str, out: Path):
    """Train with cnnlab's engine in this process; write each epoch's timing and metrics."""
    from cnnlab.api.backend import start_backend
    from cnnlab.config import load_config

    scratch = Path(tempfile.mkdtemp(prefix="peer-speed-"))
    cfg = load_config(
        config,
        [*overrides, f"train.epochs={epochs}", f"train.precision={precision}",
         f"output_dir={scratch}", "model.tta=none"],
    )  # fmt: skip
    start_backend(cfg.backend, cfg.deterministic)  # as `cnnlab train` starts it
    import keras

    from cnnlab.data import load_dataset
    from cnnlab.training.trainer import train

    images = len(load_dataset(cfg.data, cfg.seed).x_train)  # cached: the run reads it again

    class EpochTimer(keras.callbacks.Callback):
        """Each epoch's training time: from its start to its validation's start."""

        def __init__(self):
            super().__init__()
            self.records, self.trained = [], None

        def on_epoch_begin(self, epoch, logs=None):
            self.started, self.cpu, self.trained = time.perf_counter(), time.process_time(), None

        def on_test_begin(self, logs=None):
            if self.trained is None:  # the epoch's validation begins: its training is done
                wall = time.perf_counter() - self.started
                self.trained = (wall, time.process_time() - self.cpu)

        def on_epoch_end(self, epoch, logs=None):
            wall, cpu = self.trained or (time.perf_counter() - self.started, 0.0)
            record = {
                "epoch": epoch + 1, "train_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                "images": images, "loss": float(logs["loss"]),
                "val_accuracy": float(logs["val_accuracy"]),
            }  # fmt: skip
            self.records.append(record)
            print(json.dumps(record), flush=True)

    timer = EpochTimer()
    try:
        train(cfg, callbacks=[timer])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the run directory: only the timings matter
    out.write_text(json.dumps({"precision": precision, "epochs": timer.records}, indent=1))


def run_side(side: str, args, precision: str, log_dir: Path, round_: int) -> dict:
    """One training of `side` in its own process; its record."""
    out = log_dir / f"{side.replace(', ', '-')}-{precision}-{round_}.json"
    sets = [arg for value in args.overrides for arg in ("--set", value)]
    common = [str(args.config), *sets, "--epochs", str(args.epochs), "--precision", precision]
    if SIDES[side] is None:
        command = [sys.executable, __file__, "--worker", *common, "--json", str(out)]
    else:
        command = [sys.executable, str(ROOT / "bench" / "peer_torch.py"), *common,
                   *SIDES[side], "--json", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.threads:  # PyTorch's OpenMP and TensorFlow's thread pools alike
        for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            env[name] = str(args.threads)
    with open(out.with_suffix(".log"), "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed ({done.returncode}); see {out.with_suffix('.log')}")
    return json.loads(out.read_text())


def steady(record: dict, skip: int) -> tuple[float, float]:
    """images/s and CPU ms per image over the epochs after the first `skip`."""
    epochs = record["epochs"][skip:]
    images = sum(e["images"] for e in epochs)
    return images / sum(e["train_seconds"] for e in epochs), (
        1e3 * sum(e["cpu_seconds"] for e in epochs) / images
    )


def training_flops(config: Path, overrides: list[str]) -> float:
    """FLOPs of one training image: 3x the forward FLOPs of the config's model."""
    from cnnlab.commands.check import count_flops, summarize
    from cnnlab.config import load_config

    model, _ = summarize(load_config(config, overrides, need_data=False))
    return 3.0 * count_flops(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip", type=int, default=1, help="epochs left out of the speed")
    parser.add_argument("--precision", action="append", help="float32, auto, mixed_bfloat16")
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"],
                        choices=["eager", "compiled"], help="the peer's modes")  # fmt: skip
    parser.add_argument("--threads", type=int, help="threads of each side (default: all cores)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        cnnlab_worker(args.config, args.overrides, args.epochs, args.precision[0], args.json)
        return
    from bench.cpu_speed import peak_flops
    from cnnlab.utils.environment import resolve_precision

    auto, why = resolve_precision("auto")
    precisions = [auto if p == "auto" else p for p in args.precision or ["float32", "auto"]]
    peaks, how = peak_flops()
    cores = os.cpu_count() or 1
    if args.threads and args.threads < cores:  # the peak of the cores the sides may use
        peaks = {k: v * args.threads / cores for k, v in peaks.items()}
        how += f"; {args.threads} of them used"
    flops = training_flops(args.config, args.overrides)
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
         if line.startswith("model name")), "?",
    )  # fmt: skip
    print(f"{cpu}; peak: {how}; auto is {auto} ({why}); {args.config.stem}: "
          f"{flops / 1e9:.3f} GFLOP per training image", flush=True)  # fmt: skip
    sides = ["cnnlab", *(f"peer, {mode}" for mode in args.modes)]
    log_dir = Path(tempfile.mkdtemp(prefix="peer-speed-"))
    print(f"logs in {log_dir}", flush=True)
    for precision in dict.fromkeys(precisions):
        results: dict[str, list[dict]] = {side: [] for side in sides}
        for round_ in range(args.repeats):
            for side in sides if round_ % 2 == 0 else sides[::-1]:
                record = run_side(side, args, precision, log_dir, round_)
                results[side].append(record)
                rate, cpu_ms = steady(record, args.skip)
                print(f"  {precision}, round {round_ + 1}, {side}: {rate:.1f} images/s, "
                      f"{cpu_ms:.2f} CPU ms/image", flush=True)  # fmt: skip
        print(f"{args.config.stem}, {precision}, epochs {args.skip + 1}-{args.epochs} of "
              f"{args.epochs}, medians of {args.repeats}:")  # fmt: skip
        rates = {}
        for side in sides:
            measured = [steady(r, args.skip) for r in results[side]]
            rate = statistics.median(m[0] for m in measured)
            cpu_ms = statistics.median(m[1] for m in measured)
            rates[side] = (rate, cpu_ms)
            share = rate * flops / peaks[precision]
            low, high = min(m[0] for m in measured), max(m[0] for m in measured)
            print(f"  {side:15s} {rate:7.1f} images/s ({low:.0f}-{high:.0f}), {cpu_ms:6.2f} CPU "
                  f"ms/image, {rate * flops / 1e9:6.1f} GFLOP/s = {share:5.1%} of peak",
                  flush=True)  # fmt: skip
        peers = [s for s in sides if s != "cnnlab"]
        if peers:
            best = max(peers, key=lambda s: rates[s][0])
            print(f"  cnnlab / {best}: {rates['cnnlab'][0] / rates[best][0]:.2f}x images/s, "
                  f"{rates[best][1] / rates['cnnlab'][1]:.2f}x less CPU per image")  # fmt: skip
        print("  validation accuracy per epoch (round 1):")
        for side in sides:
            epochs = results[side][0]["epochs"]
            accuracy = " ".join(f"{e['val_accuracy']:.3f}" for e in epochs)
            loss = " ".join(f"{e['loss']:.3f}" for e in epochs)
            print(f"    {side:15s} {accuracy}  (training loss {loss})", flush=True)


if __name__ == "__main__":
    main()
