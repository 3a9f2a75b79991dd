"""Training on several devices with tf.distribute: which strategy a config asks for.

`train.batch_size` is the global batch: each step splits it across the replicas, and the
learning rate is used as given (not scaled by the number of replicas).
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass
class Placement:
    """The strategy a run trains under (None: the default, one device) and how it splits work."""

    strategy: tf.distribute.Strategy | None
    name: str
    replicas: int
    devices: list[str]

    def describe(self, batch_size: int) -> dict:
        """The batch-size arithmetic, as reported in metrics.json."""
        return {
            "strategy": self.name,
            "replicas": self.replicas,
            "devices": self.devices,
            "global_batch_size": batch_size,
            "per_replica_batch_size": batch_size / self.replicas,
        }


def make_placement(choice: str) -> Placement:
    """The strategy for `train.distribute`.

    auto: MirroredStrategy when more than one GPU is visible, else none. mirrored: all visible
    GPUs, or all logical CPU devices when there is no GPU (one, unless a program configured
    more with tf.config.set_logical_device_configuration).

    There is no multi-worker choice: Keras 3's fit() fails under MultiWorkerMirroredStrategy
    on TensorFlow (keras-team/keras#20585: it reduces the first batch and the per-step metrics
    across workers with calls that strategy rejects).
    """
    gpus = tf.config.list_logical_devices("GPU")
    if choice == "none" or (choice == "auto" and len(gpus) < 2):
        return Placement(None, "none", 1, [gpus[0].name if gpus else "CPU"])
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return Placement(strategy, "mirrored", strategy.num_replicas_in_sync, devices)
