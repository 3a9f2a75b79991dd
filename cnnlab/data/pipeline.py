"""In-memory arrays as tf.data batches for fit: shuffled by index, gathered a batch at a time."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None
) -> tf.data.Dataset:
    """(images, labels) batches of `batch_size`, reshuffled every epoch when `shuffle_seed` is set.

    The pixels stay uint8 (a quarter of float32's memory and copying); the model scales them.
    Shuffling permutes indices, not images, and each batch is one vectorised gather, so an epoch
    costs no per-image Python or tf.data work. The next batches are gathered while the current
    one trains (prefetch).
    """
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
