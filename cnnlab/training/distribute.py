"""Training on several devices: tf.distribute's MirroredStrategy on TensorFlow,
keras.distribution's DataParallel on JAX (several devices, processes and hosts).

`train.batch_size` is the global batch: each step splits it across the replicas, and the
learning rate is used as given (not scaled by the number of replicas).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras

from cnnlab.utils.errors import CnnlabError


@dataclass
class Placement:
    """Where a run trains and how it splits the work. `strategy` is TensorFlow's, `distribution`
    Keras' (JAX); neither: one device."""

    name: str
    replicas: int
    devices: list[str]
    strategy: Any = None
    distribution: Any = None
    processes: int = 1
    process_id: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def shard(self) -> tuple[int, int]:
        """(this process, processes): which part of every batch this process feeds."""
        return self.process_id, self.processes

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build and fit the model inside: variables are placed (replicated) on every replica."""
        if self.strategy is not None:
            with self.strategy.scope():
                yield
            return
        if self.distribution is None:
            yield
            return
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(self.distribution)
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)

    def check_batch_size(self, batch_size: int) -> None:
        """data_parallel gives every replica an equal part of each batch (MirroredStrategy
        splits an uneven batch itself)."""
        if self.distribution is not None and batch_size % self.replicas:
            raise CnnlabError(
                f"train.batch_size {batch_size} does not split evenly across {self.replicas} "
                f"replicas; use a multiple of {self.replicas}"
            )

    def even_split(self, name: str, x, y):
        """(x, y) cut to a multiple of the replica count when data_parallel splits batches
        (every replica takes an equal part of each batch, the last one included); what was
        left out is counted in `dropped`."""
        if self.distribution is None or len(x) % self.replicas == 0:
            return x, y
        keep = len(x) - len(x) % self.replicas
        self.dropped[name] = len(x) - keep
        return x[:keep], y[:keep]

    def describe(self, batch_size: int) -> dict:
        """The batch-size arithmetic, as reported in metrics.json."""
        return {
            "strategy": self.name,
            "replicas": self.replicas,
            "processes": self.processes,
            "devices": self.devices,
            "global_batch_size": batch_size,
            "per_replica_batch_size": batch_size / self.replicas,
            "per_process_batch_size": batch_size / self.processes,
            "images_left_out": self.dropped,
        }


def make_placement(choice: str, processes: int = 1, process_id: int = 0) -> Placement:
    """The placement for `train.distribute` on the backend Keras runs on.

    TensorFlow. auto: MirroredStrategy when more than one GPU is visible, else none. mirrored:
    all visible GPUs, or all logical CPU devices when there is no GPU (one, unless a program
    configured more with tf.config.set_logical_device_configuration). There is no
    multi-worker choice: Keras 3's fit() fails under MultiWorkerMirroredStrategy on TensorFlow
    (keras-team/keras#20585: it reduces the first batch and the per-step metrics across
    workers with calls that strategy rejects).

    JAX. auto: DataParallel when there are several devices (every process's) or processes,
    else none. data_parallel: DataParallel over every device of every process.
    """
    if keras.backend.backend() == "jax":
        return _jax_placement(choice, processes, process_id)
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if choice == "none" or (choice == "auto" and len(gpus) < 2):
        return Placement("none", 1, [gpus[0].name if gpus else "CPU"])
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return Placement("mirrored", strategy.num_replicas_in_sync, devices, strategy=strategy)


def _jax_placement(choice: str, processes: int, process_id: int) -> Placement:
    devices = keras.distribution.list_devices()
    if choice == "none" or (choice == "auto" and len(devices) == 1):
        if processes > 1:
            raise CnnlabError(
                f"{processes} processes were started, but train.distribute is {choice} on "
                f"{len(devices)} device; set train.distribute: data_parallel"
            )
        return Placement("none", 1, [str(devices[0])])
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    return Placement(
        "data_parallel",
        len(devices),
        [str(d) for d in devices],
        distribution=distribution,
        processes=processes,
        process_id=process_id,
    )
