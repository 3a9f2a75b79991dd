"""What many test modules share: paths, the CLI driver, quick overrides, small data files, and
the agreement a tolerance can ask of a run's precision. (conftest.py holds the fixtures.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from typer.testing import CliRunner

import cnnlab  # noqa: F401  (sets KERAS_BACKEND before any test imports keras)
from cnnlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
MNIST_NPZ = ROOT / "data" / "mnist.npz"
CONFIGS = ROOT / "configs"
SHARED = ROOT.parent / "shared" / "data"  # real data beside the checkout (slow tests)
SHIPPED_CONFIGS = sorted(CONFIGS.rglob("*.yaml"))

# The largest difference in class probabilities between two computations of one model that
# should agree (another runtime, another backend, a float32 copy), by the precision the run
# trained in. float32 differs by rounding only. A mixed_bfloat16 model computes its layers in
# bfloat16 (8 bits of mantissa, a relative step of 2**-8 = 0.4%), so two kernels, or the
# float32 copy an export makes, differ by up to about 3e-3 while top-1 agrees.
PROBABILITY_ATOL = {"float32": 1e-5, "mixed_bfloat16": 2e-2, "mixed_float16": 5e-3}


def invoke(*args):
    """`cnnlab ARGS` through the Typer app in this process."""
    return CliRunner().invoke(app, [str(a) for a in args])


def quick(out: Path, samples: int = 300, epochs: int = 2) -> list[str]:
    """--set overrides that shrink a shipped config to a seconds-long real run."""
    return [
        "--set", f"output_dir={out}",
        "--set", f"train.epochs={epochs}",
        "--set", "train.verbose=0",
        "--set", f"data.max_samples={samples}",
    ]  # fmt: skip


def train_runs(tmp: Path, root: Path, *extra: str, size: int = 32) -> list[Path]:
    """Tiny real runs (one epoch of a small CNN at size x size) on the class folders in
    `root`; `extra` arguments for `cnnlab train` (--seeds 1,2: two runs)."""
    config = tmp / "photos.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [{size}, {size}]}}\n"
        "model: {builder: small_cnn, filters: [8, 16]}\n"
        "train: {epochs: 1, batch_size: 8, verbose: 0}\n"
        f"output_dir: {tmp / 'out'}\n"
    )
    result = invoke("train", config, *extra)
    assert result.exit_code == 0, result.output
    return sorted(p.parent for p in (tmp / "out").glob("*/model.keras"))


def only_run(out: Path) -> Path:
    """The one run directory in `out`."""
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def run_precision(run_dir: Path) -> str:
    """The dtype policy a run trained under, as its metrics.json records it."""
    return json.loads((run_dir / "metrics.json").read_text())["precision"]


def probability_atol(run_dir: Path) -> float:
    """The tolerance for two computations of `run_dir`'s model (see PROBABILITY_ATOL)."""
    return PROBABILITY_ATOL[run_precision(run_dir)]


def unpack(archive: str, into: Path) -> Path:
    """Extract SHARED/`archive` into `into`; the test is skipped when it is not there."""
    import tarfile

    import pytest

    path = SHARED / archive
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    return into


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`cnnlab serve ARGS` in its own process, up once /health answers."""

    def __init__(self, tmp: Path, *args, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        command = [sys.executable, "-m", "cnnlab", "serve", *map(str, args)]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)], cwd=ROOT, stdout=log, stderr=log,
                env={**os.environ, **(env or {})},
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                requests.get(self.url + "/", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.3)
        raise AssertionError(f"the server did not answer in 120 s: {self.log.read_text()}")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return (
            int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            / 1024
        )

    def stop(self) -> str:
        self.process.terminate()
        self.process.wait(timeout=30)
        return self.log.read_text()


def digits_frame(x: np.ndarray, y: np.ndarray | None) -> pd.DataFrame:
    """A Kaggle Digit Recognizer table: label (optional) then pixel0..pixelN."""
    frame = pd.DataFrame(x.reshape(len(x), -1), columns=[f"pixel{i}" for i in range(784)])
    if y is not None:
        frame.insert(0, "label", y)
    return frame


def keras_probabilities(run: Path, x: np.ndarray) -> np.ndarray:
    """What the run's saved model says, computed here: a sigmoid unit becomes two columns."""
    import keras

    probs = keras.models.load_model(run / "model.keras").predict(x, verbose=0)
    return np.concatenate([1 - probs, probs], axis=1) if probs.shape[1] == 1 else probs


def exported(cli, run: Path, *args: str) -> dict:
    """`cnnlab export RUN ARGS`, which must succeed; the run's export.json."""
    result = cli("export", run, *args)
    assert result.exit_code == 0, result.output
    assert "top-1 agreement" in result.output and "wrote" in result.output
    return json.loads((run / "export" / "export.json").read_text())


def invoke_ok(*args):
    """`cnnlab ARGS`, which must succeed; its result."""
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result
