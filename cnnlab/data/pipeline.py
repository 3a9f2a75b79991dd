"""In-memory arrays as training batches for fit: shuffled by index, gathered a batch at a time.

On TensorFlow the batches are a tf.data pipeline; on JAX a Keras PyDataset over the NumPy
arrays, so that TensorFlow is not needed (nor imported) there.
"""

from __future__ import annotations

import keras
import numpy as np


def batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
    shard: tuple[int, int] = (0, 1),
    first_epoch: int = 0,
):
    """(images, labels) batches of `batch_size`, reshuffled every epoch when `shuffle_seed` is set.

    The pixels stay uint8 (a quarter of float32's memory and copying); the model scales them.
    Shuffling permutes indices, not images, and each batch is one vectorised gather, so an epoch
    costs no per-image Python work.

    Args:
        first_epoch: the epoch fit starts at. On JAX each epoch's order is drawn from (seed,
            epoch), so a resumed run sees the batches the uninterrupted run would have; a
            tf.data pipeline starts its sequence of orders from the seed again.
        shard: (this process, processes) when several processes train one model
            (data_parallel): every process shuffles alike and takes its own contiguous part
            of each batch, so the batches put together are the one-process run's. Each
            batch's length must then divide by the number of processes.
    """
    if keras.backend.backend() == "tensorflow":
        if shard != (0, 1):
            raise ValueError("sharding across processes is done by data_parallel on JAX")
        return _tf_batches(x, y, batch_size, shuffle_seed)
    return ArrayBatches(x, y, batch_size, shuffle_seed, shard, first_epoch)


def _tf_batches(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None):
    """The tf.data version: the next batches are gathered while the current one trains."""
    import tensorflow as tf

    x_all, y_all = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    order = tf.data.Dataset.range(len(x))
    if shuffle_seed is not None:
        order = order.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return (
        order.batch(batch_size)
        .map(
            lambda i: (tf.gather(x_all, i), tf.gather(y_all, i)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


class ArrayBatches(keras.utils.PyDataset):
    """Batches of NumPy arrays in a seeded order, a new order every epoch (epoch e uses the
    permutation drawn from (seed, e)); unshuffled without a seed (validation)."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        shuffle_seed: int | None = None,
        shard: tuple[int, int] = (0, 1),
        first_epoch: int = 0,
    ):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.seed, self.shard, self.epoch = shuffle_seed, shard, first_epoch
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if self.seed is None:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        index = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        process, processes = self.shard
        if processes > 1:
            part = len(index) // processes
            index = index[process * part : (process + 1) * part]
        return self.x[index], self.y[index]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
