"""Several devices: MirroredStrategy over two logical CPU devices (in a process of its own), the
batches data_parallel splits, and what each placement records. The JAX runs are in
test_backends."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cnnlab.config import load_config

from .helpers import CONFIGS, ROOT

# Logical devices must be configured before TensorFlow starts its runtime: a fresh process.
TWO_CPUS = textwrap.dedent(
    """
    import sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from cnnlab.cli import app

    app(sys.argv[1:])
    """
)


@pytest.mark.subprocess
def test_mirrored_over_two_cpu_devices_trains_and_saves(tmp_path):
    out = tmp_path / "out"
    args = [
        "train", str(CONFIGS / "mnist_mlp.yaml"),
        "--set", "train.distribute=mirrored", "--set", "train.batch_size=64",
        "--set", "train.epochs=2", "--set", "train.verbose=0",
        "--set", "data.max_samples=1000", "--set", "model.units=[128]",
        "--set", f"output_dir={out}",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", TWO_CPUS, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mirrored over 2 replicas" in result.stdout
    assert "batch_size 64 is the global batch, 32 per replica" in result.stdout
    (run_dir,) = out.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["distribute"] == {
        "strategy": "mirrored",
        "replicas": 2,
        "devices": ["/device:CPU:0", "/device:CPU:1"],
        "global_batch_size": 64,
        "per_replica_batch_size": 32.0,
        "processes": 1,
        "per_process_batch_size": 64.0,
        "images_left_out": {},
    }
    assert metrics["epochs_run"] == 2
    assert metrics["test"]["accuracy"] > 0.6  # it learns (chance: 0.1)
    # The saved model loads in this ordinary (one-device) process and gives the same scores.
    from cnnlab.data import load_dataset
    from cnnlab.runs import load_run_model

    cfg = load_config(run_dir / "config.yaml")
    data = load_dataset(cfg.data, cfg.seed)
    model = load_run_model(run_dir)
    accuracy = (model.predict(data.x_test, verbose=0).argmax(axis=1) == data.y_test).mean()
    assert np.isclose(accuracy, metrics["test"]["accuracy"], atol=1e-6)


def test_one_device_by_default_on_a_cpu(tmp_path, cli, quick):
    out = tmp_path / "out"
    result = cli("train", CONFIGS / "mnist_mlp.yaml", *quick(out, samples=300, epochs=1))
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    placed = json.loads((run_dir / "metrics.json").read_text())["distribute"]
    assert (placed["strategy"], placed["replicas"]) == ("none", 1)


def test_tf_config_gets_a_warning_not_a_silent_single_worker_run(tmp_path, cli, quick, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {}}')
    result = cli("train", CONFIGS / "mnist_mlp.yaml", *quick(tmp_path / "out", 200, 1))
    assert result.exit_code == 0, result.output
    assert "warning: TF_CONFIG is set, but cnnlab does not train across TensorFlow" in result.output
    assert "use backend: jax with train.distribute: data_parallel" in result.output


def test_array_batches_reshuffle_per_epoch_and_their_shards_make_the_global_batch():
    from cnnlab.data.pipeline import ArrayBatches, BatchPlan

    x, y = np.arange(10)[:, None], np.arange(10)
    whole = ArrayBatches(x, y, 4, BatchPlan(seed=3))
    halves = [ArrayBatches(x, y, 4, BatchPlan(seed=3, shard=(i, 2))) for i in range(2)]
    assert len(whole) == 3  # 4 + 4 + 2
    for i in range(3):
        assert np.array_equal(np.concatenate([h[i][1] for h in halves]), whole[i][1])
        assert [len(h[i][1]) for h in halves] == [len(whole[i][1]) // 2] * 2
    first = np.concatenate([whole[i][1] for i in range(3)])
    assert sorted(first) == list(range(10)) and not np.array_equal(first, y)
    whole.on_epoch_end()
    second = np.concatenate([whole[i][1] for i in range(3)])
    assert sorted(second) == list(range(10)) and not np.array_equal(second, first)
    # A run resumed at epoch 1 sees epoch 1's order, not epoch 0's again.
    resumed = ArrayBatches(x, y, 4, BatchPlan(seed=3, first_epoch=1))
    assert np.array_equal(np.concatenate([resumed[i][1] for i in range(3)]), second)
    assert np.array_equal(ArrayBatches(x, y, 4)[0][1], [0, 1, 2, 3])  # validation: in order


def test_data_parallel_needs_batches_that_split_evenly():
    from cnnlab.training.distribute import Placement
    from cnnlab.utils.errors import CnnlabError

    placement = Placement("data_parallel", 4, ["cpu:0"] * 4, distribution=object())
    x, y = placement.even_split("train", np.zeros((10, 2)), np.arange(10))
    assert (len(x), len(y), placement.dropped) == (8, 8, {"train": 2})
    assert len(placement.even_split("val", np.zeros((8, 2)), np.arange(8))[0]) == 8
    assert placement.describe(64)["images_left_out"] == {"train": 2}
    with pytest.raises(CnnlabError, match="batch_size 6 does not split evenly across 4 replicas"):
        placement.check_batch_size(6)
    placement.check_batch_size(64)
