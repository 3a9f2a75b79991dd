"""How closely two computations of one run agree, per training precision.

For each precision (float32, mixed_bfloat16) a small MNIST convnet is trained, and its class
probabilities on test digits are compared:
  - the ONNX export against the float32 copy it was checked on, and against model.keras as
    saved (which computes in the run's precision);
  - the saved model on JAX (another process) against the same model on TensorFlow;
  - a run stopped after its first epoch and resumed against the same run trained whole.
Each line gives the largest probability difference and the top-1 agreement.

    python bench/precision_agreement.py [--samples 2000] [--images 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "mnist_small_cnn.yaml"


def overrides(out: Path, precision: str, samples: int) -> list[str]:
    return [
        f"output_dir={out}", f"train.precision={precision}", f"data.max_samples={samples}",
        "train.epochs=2", "train.verbose=0", "model.dropout=0.0", "train.monitor=val_loss",
    ]  # fmt: skip


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def compared(a: np.ndarray, b: np.ndarray) -> dict:
    return {
        "max_abs_diff": float(np.abs(a - b).max()),
        "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
    }


def last_probabilities(run_dir: Path, x: np.ndarray) -> np.ndarray:
    from cnnlab.inference import class_probabilities
    from cnnlab.runs import LAST_MODEL, load_model_file

    return class_probabilities(load_model_file(run_dir / LAST_MODEL), x)


def resumed_run(out: Path, precision: str, samples: int) -> Path:
    """The run stopped as its second epoch begins (as Ctrl-C would), then resumed."""
    import keras

    from cnnlab.config import load_config
    from cnnlab.training.trainer import train

    class StopAtSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    cfg = load_config(CONFIG, overrides(out, precision, samples))
    try:
        train(cfg, callbacks=[StopAtSecondEpoch()])
    except KeyboardInterrupt:
        pass
    run_dir = only_run(out)
    train(cfg, resume=run_dir)
    return run_dir


def on_jax(run_dir: Path, digits: Path, tmp: Path) -> np.ndarray:
    """The run's predictions for the digit PNGs, made by `cnnlab predict` on JAX."""
    csv = tmp / f"{run_dir.name}-jax.csv"
    subprocess.run(
        [sys.executable, "-m", "cnnlab", "predict", str(run_dir), str(digits), "-o", str(csv),
         "--backend", "jax"],
        check=True, stdout=subprocess.DEVNULL, env={**os.environ, "KERAS_BACKEND": "jax"},
    )  # fmt: skip
    import pandas as pd

    frame = pd.read_csv(csv).sort_values("path")
    return frame[[str(c) for c in range(10)]].to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="training images")
    parser.add_argument("--images", type=int, default=500, help="test digits compared")
    args = parser.parse_args()

    from typer.testing import CliRunner

    from cnnlab.cli import app
    from cnnlab.inference import class_probabilities
    from cnnlab.runs import load_run_model

    def cli(*words):
        result = CliRunner().invoke(app, [str(w) for w in words])
        assert result.exit_code == 0, result.output
        return result

    with np.load(ROOT / "data" / "mnist.npz") as z:
        x = z["x_test"][-args.images :][..., None]
    results = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        digits = tmp / "digits"
        digits.mkdir()
        for i, image in enumerate(x[..., 0]):
            Image.fromarray(image).save(digits / f"{i:04d}.png")
        for precision in ("float32", "mixed_bfloat16"):
            whole_out, resumed_out = tmp / f"whole-{precision}", tmp / f"resumed-{precision}"
            sets = [a for o in overrides(whole_out, precision, args.samples) for a in ("--set", o)]
            cli("train", CONFIG, *sets)
            whole = only_run(whole_out)
            cli("export", whole, "--format", "onnx", "--samples", args.images)
            record = json.loads((whole / "export" / "export.json").read_text())["model.onnx"]
            saved = class_probabilities(load_run_model(whole), x)
            resumed = resumed_run(resumed_out, precision, args.samples)
            results[precision] = {
                "export vs its float32 copy": {
                    "max_abs_diff": record["max_abs_diff"],
                    "top1_agreement": record["top1_agreement"],
                },
                "export vs the saved model": {
                    "max_abs_diff": record["max_abs_diff_to_saved"],
                    "top1_agreement": record["top1_agreement_to_saved"],
                },
                "JAX vs TensorFlow": compared(on_jax(whole, digits, tmp), saved),
                "resumed vs whole run": compared(
                    last_probabilities(resumed, x), last_probabilities(whole, x)
                ),
            }
    print(f"# {platform.processor() or platform.machine()}, {args.images} test digits")
    for precision, rows in results.items():
        for what, figures in rows.items():
            print(
                f"{precision:15s} {what:28s} max diff {figures['max_abs_diff']:.1e}, "
                f"top-1 agreement {figures['top1_agreement']:.2%}"
            )
    print(f"# python bench/precision_agreement.py --samples {args.samples} --images {args.images}")


if __name__ == "__main__":
    main()
