"""The JAX backend, in processes where TensorFlow cannot be imported: data_parallel over two
devices, and over two processes on 127.0.0.1 killed and resumed, gives the one-process
weights; a .keras model scores and predicts the same on either backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras  # noqa: F401  (this process runs Keras on TensorFlow; the JAX runs are processes of their own)
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnlab.training.cluster import Cluster, join
from cnnlab.utils.errors import CnnlabError

from .helpers import CONFIGS, ROOT, free_port, only_run, probability_atol

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
# 1,350 training and 150 validation images in batches of 150, all split evenly over two
# replicas (few steps: every step of two processes is a collective); four epochs, long enough
# for a kill to land inside the third. Without dropout the only randomness is the seed's, so
# runs can be compared weight for weight.
SMALL_JAX = [
    *JAX, "--set", "data.max_samples=1500", "--set", "train.epochs=4",
    "--set", "train.batch_size=150", "--set", "model.dropout=0.0", "--set", "deterministic=true",
]  # fmt: skip
PARALLEL = ["--set", "train.distribute=data_parallel"]


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


def weights(run_dir) -> list[np.ndarray]:
    from cnnlab.runs import load_run_model

    return load_run_model(run_dir).get_weights()


def max_difference(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted one-process JAX run."""
    out = tmp_path_factory.mktemp("whole")
    result = run_jax(*train_args(out))
    assert "training on CPU (" in result.stdout and "with jax" in result.stdout
    return only_run(out)


def start_processes(*args, scratch, outs=None) -> list[subprocess.Popen]:
    """`cnnlab ARGS` as processes 0 and 1 of a cluster on a free 127.0.0.1 port, each with its
    own output_dir when `outs` are given; their temporary folders go into `scratch`."""
    cluster = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    commands = [[*CNNLAB_JAX, *map(str, args), *cluster, "--process-id", str(i)] for i in range(2)]
    if outs:
        commands = [
            [*cmd, "--set", f"output_dir={out}"] for cmd, out in zip(commands, outs, strict=True)
        ]
    env = {**os.environ, "TMPDIR": str(scratch)}
    return [
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for cmd in commands
    ]


def finish(procs) -> list[str]:
    """Each process's output, once all have ended; every one must succeed."""
    try:
        logs = [proc.communicate(timeout=240) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    failed = [
        f"process {i} exit {proc.returncode}:\n{stdout[-2000:]}{stderr[-3000:]}"
        for i, (proc, (stdout, stderr)) in enumerate(zip(procs, logs, strict=True))
        if proc.returncode != 0
    ]
    assert not failed, "\n".join(failed)
    return [stdout for stdout, _ in logs]


def kill_in_third_epoch(procs, out) -> dict:
    """SIGKILL every process once process 0's run has recorded its second epoch."""
    deadline, record = time.monotonic() + 240, None
    try:
        while time.monotonic() < deadline and record is None:
            assert all(proc.poll() is None for proc in procs), "a process ended early"
            for found in out.glob("*/.resume/progress.json"):
                if json.loads(found.read_text())["epoch"] >= 2:
                    record = json.loads(found.read_text())
            time.sleep(0.01)
    finally:
        # All at once: a process still alive after its peer's death would fail its next
        # collective and clean up, as a killed one cannot.
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait()
    assert record is not None and record["epoch"] in (2, 3), record
    return record


@pytest.mark.subprocess
def test_two_processes_killed_and_resumed_end_with_the_one_process_weights(whole, tmp_path):
    outs = [tmp_path / f"process{i}" for i in range(2)]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    procs = start_processes("train", CONFIG, *SMALL_JAX, *PARALLEL, scratch=scratch, outs=outs)
    record = kill_in_third_epoch(procs, outs[0])
    run_dir = only_run(outs[0])
    assert not (run_dir / "metrics.json").exists()

    # --resume to every process: process 0 continues its run, the others read it.
    # The killed process 1 could not delete its temporary folder.
    (killed,) = scratch.glob("cnnlab-process1-*")
    logs = finish(start_processes("train", "--resume", run_dir, scratch=scratch))
    assert f"continuing after epoch {record['epoch']}/4" in logs[0]
    assert "data_parallel over 2 replicas, 2 processes" in logs[0]
    assert "cnnlab:" not in logs[1] and "Epoch" not in logs[1]  # process 1 is silent ...
    assert not outs[1].exists()  # ... and writes nothing there
    assert list(scratch.iterdir()) == [killed]  # the resumed one deleted its own

    a = json.loads((run_dir / "metrics.json").read_text())
    b = json.loads((whole / "metrics.json").read_text())
    assert a["resumed"] and a["epochs_run"] == b["epochs_run"] == 4
    assert (a["backend"], b["backend"]) == ("jax", "jax")
    placed = a["distribute"]
    assert (placed["strategy"], placed["replicas"], placed["processes"]) == ("data_parallel", 2, 2)
    assert placed["per_process_batch_size"] == 75 and placed["images_left_out"] == {}
    # The same global batches in the same order, across the kill: the one-process weights.
    assert max_difference(weights(run_dir), weights(whole)) < 1e-5
    assert np.allclose(
        pd.read_csv(run_dir / "history.csv")["loss"], pd.read_csv(whole / "history.csv")["loss"],
        atol=1e-5,
    )  # fmt: skip
    environment = json.loads((run_dir / "environment.json").read_text())
    assert environment["keras_backend"] == "jax" and environment["jax"]
    assert "tensorflow" not in environment


@pytest.mark.subprocess
def test_data_parallel_over_two_devices_matches_one_device(whole, tmp_path):
    result = run_jax(*train_args(tmp_path, *PARALLEL), env={"JAX_NUM_CPU_DEVICES": "2"})
    assert "data_parallel over 2 replicas (" in result.stdout
    assert "batch_size 150 is the global batch, 75 per replica" in result.stdout
    assert "left out" not in result.stdout
    run_dir = only_run(tmp_path)
    assert max_difference(weights(run_dir), weights(whole)) < 1e-5
    placed = json.loads((run_dir / "metrics.json").read_text())["distribute"]
    assert (placed["replicas"], placed["processes"]) == (2, 1)


@pytest.mark.subprocess
@pytest.mark.precision
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
    scored = json.loads(on_tf.stdout)["test"]
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
    # Both backends compute in the run's precision, with their own kernels: in bfloat16
    # (precision auto on a bfloat16 CPU) they round differently.
    assert np.allclose(a[classes], b[classes], atol=probability_atol(tf_run))


@pytest.mark.subprocess
def test_a_second_run_loads_its_compiled_steps_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")  # cnnlab's own cache folder, as by default
    cache = tmp_path / "cache" / "jax"
    # Every step kept, however quick its compile (on GPUs compiling takes tens of seconds).
    env = {
        "CNNLAB_CACHE_DIR": str(tmp_path / "cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    run_jax(*train_args(tmp_path / "one", "--set", "train.epochs=1"), env=env)
    compiled = sorted(p.name for p in cache.iterdir())
    assert any(name.startswith("jit_train_step-") for name in compiled), compiled
    # The same model and data again: every step comes from the cache, nothing new is compiled.
    run_jax(*train_args(tmp_path / "two", "--set", "train.epochs=1"), env=env)
    assert sorted(p.name for p in cache.iterdir()) == compiled
    # CNNLAB_CACHE_DIR set empty turns it off with the other caches.
    run_jax(
        *train_args(tmp_path / "three", "--set", "train.epochs=1"),
        env={**env, "CNNLAB_CACHE_DIR": ""},
    )
    assert sorted(p.name for p in cache.iterdir()) == compiled and not (ROOT / "jax").exists()


def test_a_process_that_cannot_reach_the_coordinator_fails_in_bounded_time():
    port = free_port()  # nobody listens there
    with pytest.raises(CnnlabError, match=rf"process 1: could not reach the coordinator "
                       rf"127.0.0.1:{port} within 1 s"):  # fmt: skip
        join(Cluster(f"127.0.0.1:{port}", 2, 1), timeout_s=1)
    with pytest.raises(CnnlabError, match=r"process\(es\) 1, 2 of 3 did not arrive within 1 s"):
        join(Cluster(f"127.0.0.1:{port}", 3, 0), timeout_s=1)
