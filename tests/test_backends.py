"""The JAX backend, in processes where TensorFlow cannot be imported: a run trains, is killed
and resumed, predicts; data_parallel over two devices and over two processes on 127.0.0.1
gives the one-process weights; a .keras model scores the same on either backend."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras  # noqa: F401  (this process runs Keras on TensorFlow; the JAX runs are processes of their own)
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnlab.cluster import Cluster, join
from cnnlab.errors import CnnlabError

from .conftest import CONFIGS, ROOT
from .test_resume import kill_after_two_epochs

# cnnlab as on a machine without TensorFlow: importing it fails, and must never be tried.
NO_TENSORFLOW = textwrap.dedent(
    """
    import sys

    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorflow":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoTensorFlow())
    from cnnlab.cli import app

    try:
        app(sys.argv[1:])
    finally:
        assert "tensorflow" not in sys.modules
    """
)
CNNLAB_JAX = [sys.executable, "-c", NO_TENSORFLOW]
CONFIG = CONFIGS / "mnist_mlp.yaml"
JAX = ["--set", "backend=jax", "--set", "model.units=[32]", "--set", "train.verbose=0"]
# 900 training and 100 validation images in batches of 50: all split evenly over two replicas.
SMALL_JAX = [
    *JAX, "--set", "data.max_samples=1000", "--set", "train.epochs=2",
    "--set", "train.batch_size=50",
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _compile_once(tmp_path_factory):
    # The processes of this module compile the same steps: JAX's persistent cache keeps them.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax-cache"))
    yield
    del os.environ["JAX_COMPILATION_CACHE_DIR"]


def run_jax(*args, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*CNNLAB_JAX, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def train_args(out, *extra) -> list:
    return ["train", CONFIG, *SMALL_JAX, "--set", f"output_dir={out}", *extra]


def only_run(out):
    (run_dir,) = out.iterdir()
    return run_dir


def weights(run_dir) -> list[np.ndarray]:
    from cnnlab.runs import load_run_model

    return load_run_model(run_dir).get_weights()


def max_difference(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted one-process JAX run."""
    out = tmp_path_factory.mktemp("whole")
    result = run_jax(*train_args(out))
    assert "training on CPU (" in result.stdout and "with jax" in result.stdout
    return only_run(out)


@pytest.mark.subprocess
def test_jax_run_resumes_after_sigkill(tmp_path):
    out = tmp_path / "killed"
    # One phase of 4 epochs over 5,400 images: long enough for the kill to land in epoch 3.
    longer = ["--set", "data.max_samples=6000", "--set", "train.phases=null"]
    record = kill_after_two_epochs(
        CONFIG, out, *JAX, *longer, "--set", "train.epochs=4", cnnlab=CNNLAB_JAX, settle=0
    )
    run_dir = only_run(out)
    assert not (run_dir / "metrics.json").exists()
    result = run_jax("train", "--resume", run_dir)
    assert f"continuing after epoch {record['epoch']}/4" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed"] and metrics["epochs_run"] == 4 and metrics["backend"] == "jax"
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0, 1, 2, 3]
    assert metrics["test"]["accuracy"] > 0.8  # it learned (chance: 0.1)
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["keras_backend"] == "jax" and environment["jax"]
    assert "tensorflow" not in environment


@pytest.mark.subprocess
def test_data_parallel_over_two_devices_and_two_processes_matches_one_process(whole, tmp_path):
    parallel = ["--set", "train.distribute=data_parallel"]
    devices = run_jax(
        *train_args(tmp_path / "devices", *parallel), env={"JAX_NUM_CPU_DEVICES": "2"}
    )
    assert "data_parallel over 2 replicas (" in devices.stdout
    assert "batch_size 50 is the global batch, 25 per replica" in devices.stdout
    assert "left out" not in devices.stdout

    port = free_port()
    outs = [tmp_path / f"process{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                *CNNLAB_JAX,
                *map(str, train_args(outs[i], *parallel)),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        logs = [proc.communicate(timeout=240) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (stdout, stderr) in zip(procs, logs, strict=True):
        assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert "data_parallel over 2 replicas, 2 processes" in logs[0][0]
    assert "cnnlab:" not in logs[1][0] and "Epoch" not in logs[1][0]  # process 1 is silent ...
    assert not outs[1].exists()  # ... and writes nothing

    one = weights(whole)
    for run_dir in (only_run(tmp_path / "devices"), only_run(outs[0])):
        assert max_difference(weights(run_dir), one) < 1e-5
        placed = json.loads((run_dir / "metrics.json").read_text())["distribute"]
        assert placed["strategy"] == "data_parallel" and placed["replicas"] == 2
        assert placed["per_replica_batch_size"] == 25 and placed["images_left_out"] == {}
    assert (
        json.loads((outs[0] / only_run(outs[0]) / "metrics.json").read_text())["distribute"][
            "processes"
        ]
        == 2
    )


@pytest.mark.subprocess
def test_a_model_scores_the_same_on_either_backend(whole, tmp_path, cli, quick, mnist_arrays):
    # Trained on JAX: loaded on JAX unless told otherwise (this process runs TensorFlow).
    own = cli("evaluate", whole)
    assert own.exit_code == 1
    assert "already runs Keras on tensorflow; backend jax needs a new process" in own.output
    bad = cli("evaluate", whole, "--backend", "torch")
    assert bad.exit_code == 1 and "--backend: 'torch' is not one of tensorflow, jax" in bad.output
    # Scored here on TensorFlow.
    on_tf = cli("evaluate", whole, "--backend", "tensorflow")
    assert on_tf.exit_code == 0, on_tf.output
    scored = json.loads(on_tf.output)["test"]
    trained = json.loads((whole / "metrics.json").read_text())["test"]
    assert scored["accuracy"] == trained["accuracy"]
    assert scored["loss"] == pytest.approx(trained["loss"], abs=1e-5)

    # Trained on TensorFlow; its predictions for digit PNGs, made on JAX without TensorFlow
    # and made here on TensorFlow, agree.
    out = tmp_path / "tf"
    result = cli("train", CONFIG, *quick(out, samples=300, epochs=1), "--set", "model.units=[32]")
    assert result.exit_code == 0, result.output
    tf_run = only_run(out)
    digits = tmp_path / "digits"
    digits.mkdir()
    for i, image in enumerate(mnist_arrays["x_test"][:20]):
        Image.fromarray(image).save(digits / f"{i:02d}.png")
    on_jax, here = tmp_path / "jax.csv", tmp_path / "tf.csv"
    run_jax("predict", tf_run, digits, "-o", on_jax, "--backend", "jax")
    assert cli("predict", tf_run, digits, "-o", here).exit_code == 0
    a, b = pd.read_csv(on_jax), pd.read_csv(here)
    assert len(a) == 20 and a["predicted"].equals(b["predicted"])
    classes = [str(c) for c in range(10)]
    assert np.allclose(a[classes], b[classes], atol=1e-6)


def test_a_process_that_cannot_reach_the_coordinator_fails_in_bounded_time():
    port = free_port()  # nobody listens there
    with pytest.raises(CnnlabError, match=rf"process 1: could not reach the coordinator "
                       rf"127.0.0.1:{port} within 1 s"):  # fmt: skip
        join(Cluster(f"127.0.0.1:{port}", 2, 1), timeout_s=1)
    with pytest.raises(CnnlabError, match=r"process\(es\) 1, 2 of 3 did not arrive within 1 s"):
        join(Cluster(f"127.0.0.1:{port}", 3, 0), timeout_s=1)
