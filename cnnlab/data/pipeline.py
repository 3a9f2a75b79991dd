"""In-memory arrays as training batches for fit: shuffled by index, gathered a batch at a time;
and the one way a model predicts on an array of images (`predict`).

On TensorFlow the batches are a tf.data pipeline; on JAX a Keras PyDataset over the NumPy
arrays, so that TensorFlow is not needed (nor imported) there.

Every tf.data pipeline here runs without tf.data's autotuning (`without_autotune`). With it,
deleting an iterator waits for the autotuner's next round, and the rounds come at doubling
intervals from 10 ms up to a minute: fit or predict then returns only at the next round, idle
(`python bench/data_autotune.py` measures it; its figures are in docs/performance.md). The
pipelines are a gather and a prefetch of in-memory arrays, with nothing worth tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np


@dataclass(frozen=True, eq=False)
class BatchPlan:
    """How `batches` draws a run's batches: the order of each epoch, the flips and weights.

    Attributes:
        seed: reshuffle every epoch, epoch e's order drawn from (seed, e) on either backend;
            None: every image once, in order, each epoch (validation).
        first_epoch: the epoch fit starts at, so that a resumed run sees the batches the
            uninterrupted run would have.
        epochs: how many epochs fit runs from `first_epoch`. A shuffled tf.data pipeline
            holds all their orders, so fit must be given `steps_per_epoch` (see `steps`).
        alternate_flip: mirror images as `epoch_flips` says (airbench's alternating flip).
        balanced: draw each epoch's images so that every class is equally likely (see
            `epoch_order`).
        class_weights: one loss weight per class; the batches then carry sample weights.
        shard: (this process, processes) when several processes train one model
            (data_parallel): every process shuffles alike and takes its own contiguous part
            of each batch, so the batches put together are the one-process run's. Each
            batch's length must then divide by the number of processes.
    """

    seed: int | None = None
    first_epoch: int = 0
    epochs: int = 1
    alternate_flip: bool = False
    balanced: bool = False
    class_weights: np.ndarray | None = None
    shard: tuple[int, int] = (0, 1)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, plan: BatchPlan = BatchPlan()):
    """(images, labels) batches of `batch_size` as `plan` draws them; (images, labels, sample
    weights) with its `class_weights`.

    The pixels stay uint8 (a quarter of float32's memory and copying); the model scales them.
    Shuffling permutes indices, not images, and each batch is one vectorised gather, so an epoch
    costs no per-image Python work.
    """
    if keras.backend.backend() == "tensorflow":
        if plan.shard != (0, 1):
            raise ValueError("sharding across processes is done by data_parallel on JAX")
        return _tf_batches(x, y, batch_size, plan)
    return ArrayBatches(x, y, batch_size, plan)


def steps(images: int, batch_size: int) -> int:
    """Batches in an epoch of `images` (the last one may be short)."""
    return -(-images // batch_size)


def epoch_order(images: int, seed: int, epoch: int, labels: np.ndarray | None = None) -> np.ndarray:
    """The order of the training images in epoch `epoch` of a run seeded with `seed`.

    With `labels` (data.sampling: balanced), as many images drawn with repeats, each with a
    probability inverse to its class's count: every class equally likely in every batch.
    Several labels per image (0/1 rows): an image is drawn as often as its rarest class asks
    (the largest of its classes' inverse counts); images of no class count as a class.
    """
    rng = np.random.default_rng([seed, epoch])
    if labels is None:
        return rng.permutation(images)
    if labels.ndim == 2:
        counts = labels.sum(axis=0)
        p = (labels / np.maximum(counts, 1)).max(axis=1)
        none = p == 0
        p[none] = 1.0 / max(int(none.sum()), 1)
    else:
        counts = np.bincount(labels)
        p = 1.0 / counts[labels]
    return rng.choice(images, size=images, replace=True, p=p / p.sum())


def first_batch(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, alternate_flip: bool = False,
    balanced: bool = False,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The images and labels of a run's first training batch, as `batches` gives them (before
    the model's augmentation layers)."""
    order = epoch_order(len(x), seed, 0, y if balanced else None)[:batch_size]
    images = x[order].copy()
    if alternate_flip:
        flip = epoch_flips(len(x), seed, 0)[order]
        images[flip] = images[flip, :, ::-1]
    return images, y[order]


def sample_weights(labels: np.ndarray, class_weights: np.ndarray | None) -> np.ndarray | None:
    """Each image's loss weight: its class's weight (float32), or None without weights."""
    return None if class_weights is None else class_weights[labels].astype(np.float32)


def epoch_flips(images: int, seed: int, epoch: int) -> np.ndarray:
    """Which images are mirrored in epoch `epoch`: a seeded half in epoch 0, and each image
    mirrored or not in turn from then on, so that every image is seen both ways every two
    epochs (less repetition than a fresh coin per epoch)."""
    first = np.random.default_rng([seed, 2**31]).random(images) < 0.5
    return first ^ bool(epoch % 2)


def _tf_batches(x: np.ndarray, y: np.ndarray, batch_size: int, plan: BatchPlan):
    """The tf.data version: the next batches are gathered while the current one trains.

    Shuffled, it is one pass over every epoch's order in turn (each epoch's batched apart, so
    that its last batch may be short), which fit reads `steps` batches an epoch from.
    """
    import tensorflow as tf

    x_all, y_all = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    if plan.seed is None:  # validation: every image once, in order, each epoch
        orders = np.arange(len(x), dtype=np.int32)[None]
        flips = np.zeros_like(orders, dtype=bool)
    else:
        run = range(plan.first_epoch, plan.first_epoch + plan.epochs)
        labels = y if plan.balanced else None
        orders = np.stack([epoch_order(len(x), plan.seed, e, labels) for e in run])
        orders = orders.astype(np.int32)
        flips = np.stack([epoch_flips(len(x), plan.seed, e) for e in run]) & plan.alternate_flip
        flips = np.take_along_axis(flips, orders, axis=1)  # in each epoch's order
    order = tf.data.Dataset.from_tensor_slices((orders, flips)).flat_map(
        lambda epoch, flip: tf.data.Dataset.from_tensor_slices((epoch, flip)).batch(batch_size)
    )
    # flat_map hides the length, which Keras needs to tell an epoch's end from missing data.
    order = order.apply(
        tf.data.experimental.assert_cardinality(len(orders) * steps(len(x), batch_size))
    )

    weights = sample_weights(y, plan.class_weights)
    w_all = None if weights is None else tf.convert_to_tensor(weights)

    def gather(index, flip):
        images = tf.gather(x_all, index)
        if plan.alternate_flip:
            images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
        if w_all is None:
            return images, tf.gather(y_all, index)
        return images, tf.gather(y_all, index), tf.gather(w_all, index)

    gathered = order.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return without_autotune(gathered.prefetch(tf.data.AUTOTUNE))


def without_autotune(dataset):
    """`dataset` (tf.data) with autotuning off; its AUTOTUNE sizes take TensorFlow's defaults
    (parallel calls: the CPU cores; prefetch: a buffer that grows while the consumer waits)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def image_batches(x: np.ndarray, batch_size: int):
    """`x` in order, `batch_size` images a batch, as a tf.data pipeline without autotuning."""
    import tensorflow as tf

    return without_autotune(tf.data.Dataset.from_tensor_slices(x).batch(batch_size))


def predict(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """`model.predict` of `x`, `batch_size` images a pass: on TensorFlow fed by `image_batches`
    (Keras' own pipeline for an array is autotuned), on JAX by Keras from the array."""
    if keras.backend.backend() == "tensorflow":
        return model.predict(image_batches(x, batch_size), verbose=0)
    return model.predict(x, batch_size=batch_size, verbose=0)


class ArrayBatches(keras.utils.PyDataset):
    """Batches of NumPy arrays in a seeded order, a new order every epoch (epoch e uses the
    permutation drawn from (seed, e)); unshuffled without a seed (validation). `plan.epochs`
    plays no part: a PyDataset draws the next epoch's order when an epoch ends."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, batch_size: int, plan: BatchPlan = BatchPlan()
    ):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.seed, self.shard, self.epoch = plan.seed, plan.shard, plan.first_epoch
        self.alternate_flip = plan.alternate_flip and plan.seed is not None
        self.weights = sample_weights(y, plan.class_weights)
        self.balanced = plan.balanced
        self.order, self.flips = self._order()

    def _order(self) -> tuple[np.ndarray, np.ndarray | None]:
        """This epoch's order, and which images it mirrors (None: none)."""
        if self.seed is None:
            return np.arange(len(self.x)), None
        flips = epoch_flips(len(self.x), self.seed, self.epoch) if self.alternate_flip else None
        labels = self.y if self.balanced else None
        return epoch_order(len(self.x), self.seed, self.epoch, labels), flips

    def __len__(self) -> int:
        return steps(len(self.x), self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        index = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        process, processes = self.shard
        if processes > 1:
            part = len(index) // processes
            index = index[process * part : (process + 1) * part]
        images = self.x[index]
        if self.flips is not None:
            flip = self.flips[index]
            images[flip] = images[flip, :, ::-1]
        if self.weights is not None:
            return images, self.y[index], self.weights[index]
        return images, self.y[index]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order, self.flips = self._order()
