"""cnnlab's own Keras layers, registered so that saved models load wherever cnnlab is
installed (its losses: cnnlab.models.losses)."""

from __future__ import annotations

import math

import keras
from keras import ops


def affine_matrix(angle, scale, shift_x, shift_y, height: int, width: int):
    """Transform rows (a0, a1, a2, b0, b1, b2, 0, 0) for keras.ops.image.affine_transform.

    The forward map rotates by `angle` radians (a positive angle turns the image clockwise as
    seen on screen, where rows go down) and scales by `scale` about the image centre, then
    shifts by (`shift_x`, `shift_y`) pixels; the rows give, for each output pixel, where to read
    the input (the inverse map). Arguments are tensors of shape (batch,) or numbers.
    """
    cos, sin = ops.cos(angle) / scale, ops.sin(angle) / scale
    cx, cy = (width - 1) / 2, (height - 1) / 2
    ox, oy = cx + shift_x, cy + shift_y
    zero = ops.zeros_like(cos)
    return ops.stack(
        [cos, sin, cx - cos * ox - sin * oy, -sin, cos, cy + sin * ox - cos * oy, zero, zero],
        axis=-1,
    )


@keras.saving.register_keras_serializable(package="cnnlab")
class PartialDirac(keras.initializers.Initializer):
    """A conv kernel drawn uniformly in ±1/sqrt(fan in) (PyTorch's default), whose first
    in-channels filters are then replaced by identities: filter i passes channel i through
    (airbench's initialisation, torch.nn.init.dirac_ on those filters)."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        height, width, channels, filters = shape
        drawn = keras.initializers.VarianceScaling(
            1 / 3, mode="fan_in", distribution="uniform", seed=self.seed
        )(shape, dtype)
        kept = min(channels, filters)
        identity = ops.zeros(shape, dtype)
        centre = ops.one_hot(height // 2 * width + width // 2, height * width, dtype=dtype)
        eye = ops.pad(ops.eye(channels, kept, dtype=dtype), [[0, 0], [0, filters - kept]])
        identity = ops.reshape(centre, (height, width, 1, 1)) * eye
        mask = ops.concatenate([ops.zeros((kept,), dtype), ops.ones((filters - kept,), dtype)])
        return drawn * mask + identity

    def get_config(self):
        return {"seed": self.seed}


class _RandomTransform(keras.layers.Layer):
    """A random transform of each image of a batch by keras.ops.image.affine_transform, while
    training only; points from outside the image are filled by `fill_mode`."""

    def __init__(self, fill_mode: str = "reflect", seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.fill_mode, self.seed = fill_mode, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        # On TensorFlow the transform is ImageProjectiveTransformV3, which has no XLA kernel:
        # Keras' jit_compile "auto" then leaves the model uncompiled (as for its own
        # RandomRotation), and config validation refuses jit_compile: true with it.
        if keras.backend.backend() == "tensorflow":
            self.supports_jit = False

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cnnlab")
class RandomAffine(_RandomTransform):
    """Random rotation, zoom and shift of a batch in one resampling (training only).

    Keras' RandomRotation, RandomZoom and RandomTranslation each resample the image, and three
    bilinear resamplings blur it; this composes the three into one transform per image, as
    Keras' old ImageDataGenerator did, at a third of the cost.

    Args:
        rotation: up to ± this many degrees.
        zoom: scale by a factor in [1 - zoom, 1 + zoom].
        translation: shift by up to ± this fraction of the height and of the width.
        fill_mode: how points outside the input are filled: constant (0), nearest, reflect,
            mirror or wrap.
    """

    def __init__(
        self,
        rotation: float = 0.0,
        zoom: float = 0.0,
        translation: float = 0.0,
        fill_mode: str = "reflect",
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(fill_mode, seed, **kwargs)
        self.rotation, self.zoom, self.translation = rotation, zoom, translation

    def call(self, images, training=None):
        if not training:
            return images
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]

        def uniform(limit):
            return keras.random.uniform(
                (batch,), -limit, limit, dtype=self.compute_dtype, seed=self.seed_generator
            )

        transform = affine_matrix(
            uniform(math.radians(self.rotation)),
            1.0 + uniform(self.zoom),
            uniform(self.translation * width),
            uniform(self.translation * height),
            height,
            width,
        )
        return ops.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode=self.fill_mode
        )

    def get_config(self):
        return {
            **super().get_config(),
            "rotation": self.rotation,
            "zoom": self.zoom,
            "translation": self.translation,
        }


@keras.saving.register_keras_serializable(package="cnnlab")
class RandomShift(_RandomTransform):
    """Shift each image of a batch by whole pixels, up to ± `pixels` down and across, edges
    filled by `fill_mode` (training only): airbench's random crops of a padded image, with
    no resampling blur.
    """

    def __init__(self, pixels: int = 2, fill_mode: str = "reflect", seed=None, **kwargs):
        super().__init__(fill_mode, seed, **kwargs)
        self.pixels = pixels

    def call(self, images, training=None):
        if not training:
            return images
        batch = ops.shape(images)[0]
        shifts = keras.random.randint(
            (2, batch), -self.pixels, self.pixels + 1, seed=self.seed_generator
        )
        shifts = ops.cast(shifts, "float32")
        one, zero = ops.ones((batch,)), ops.zeros((batch,))
        # Each output pixel reads the input `shift` pixels back: a whole-pixel translation.
        transform = ops.stack([one, zero, -shifts[0], zero, one, -shifts[1], zero, zero], axis=-1)
        return ops.image.affine_transform(
            images, ops.cast(transform, images.dtype), interpolation="nearest",
            fill_mode=self.fill_mode,
        )  # fmt: skip

    def get_config(self):
        return {**super().get_config(), "pixels": self.pixels}


@keras.saving.register_keras_serializable(package="cnnlab")
class ImageNetPreprocess(keras.layers.Layer):
    """[0, 1]-scaled RGB images in the form an ImageNet base was trained on.

    `mode` is the base's `keras.applications.*.preprocess_input` mode: "caffe" (VGG16,
    ResNet50: RGB → BGR, minus the ImageNet channel means, 0-255 range), "tf" (-1 to 1) or
    "torch" (ImageNet mean and standard deviation). A layer rather than a Lambda so that a
    saved model loads in Keras' safe mode.
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "torch"):
            raise ValueError(f"mode must be caffe, tf or torch; received: mode={mode!r}")
        self.mode = mode

    def call(self, images):
        from keras.applications import imagenet_utils

        return imagenet_utils.preprocess_input(
            images * 255.0, data_format="channels_last", mode=self.mode
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="cnnlab")
class PatchWhitening(keras.layers.Layer):
    """airbench's first layer: a frozen convolution that whitens the image's k x k patches.

    `adapt(images)` sets its filters from training images before fit: with the patches'
    channels standardised, the eigenvectors of their covariance divided by the square root of
    (eigenvalue + `epsilon`), and the same filters negated (2 x k x k x channels filters in
    all), so that the first half of the outputs has about identity covariance on those
    patches. The filters are weights of the layer (a saved or exported model needs nothing
    else); they do not train, the bias does.
    """

    def __init__(self, kernel_size: int = 2, epsilon: float = 5e-4, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.epsilon = kernel_size, epsilon

    def build(self, input_shape):
        k, channels = self.kernel_size, input_shape[-1]
        self.filters = 2 * k * k * channels
        self.kernel = self.add_weight(
            shape=(k, k, channels, self.filters), initializer="zeros", trainable=False,
            name="kernel",
        )  # fmt: skip
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def call(self, images):
        x = ops.conv(images, ops.cast(self.kernel, images.dtype), padding="valid")
        return x + ops.cast(self.bias, images.dtype)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        k = self.kernel_size
        return batch, height and height - k + 1, width and width - k + 1, self.filters

    def adapt(self, images) -> None:
        """Set the filters (and the bias that centres them) from `images`, (N, H, W, C) as
        this layer receives them: training images only, never validation or test ones."""
        import numpy as np

        images = np.asarray(images, np.float64)
        if not self.built:
            self.build(images.shape)
        k, channels = self.kernel_size, images.shape[-1]
        mean = images.mean(axis=(0, 1, 2))
        std = images.std(axis=(0, 1, 2)) + 1e-8
        covariance = np.zeros((k * k * channels,) * 2)
        count = 0
        for start in range(0, len(images), 500):  # a few hundred MB of patches at a time
            standard = (images[start : start + 500] - mean) / std
            windows = np.lib.stride_tricks.sliding_window_view(standard, (k, k), axis=(1, 2))
            # (n, h, w, C, k, k) -> rows of (k, k, C), the layout of a conv kernel's filter
            patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * channels)
            covariance += patches.T @ patches
            count += len(patches)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance / count)
        order = np.argsort(eigenvalues)[::-1]  # the strongest direction first, as airbench
        whitening = eigenvectors[:, order].T / np.sqrt(eigenvalues[order] + self.epsilon)[:, None]
        filters = np.concatenate([whitening, -whitening])  # (filters, k*k*C)
        # On standardised patches z = (x - mean) / std: filter . z = (filter / std) . x - offset
        kernel = filters.reshape(-1, k, k, channels) / std
        offset = (kernel * mean).sum(axis=(1, 2, 3))
        self.kernel.assign(kernel.transpose(1, 2, 3, 0).astype("float32"))
        self.bias.assign((-offset).astype("float32"))

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "epsilon": self.epsilon}


# On TensorFlow, Keras 3's BatchNormalization and GELU train through chains of small
# element-wise ops (moments, normalisation, erf, exp, products and their gradients), each a
# pass over the activations, and with bfloat16 Eigen runs them unvectorised: on a 2-core CPU
# they took half of airbench's training step. The two layers below train through fused
# kernels instead (TensorFlow's fused batch norm, whose oneDNN kernel does forward and
# gradient in one pass each; GELU's forward and gradient each one XLA-compiled loop). Outside
# training, and on other backends, they are Keras' own layers unchanged, so evaluation,
# prediction and export see exactly what Keras computes.


@keras.saving.register_keras_serializable(package="cnnlab")
class BatchNorm(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization, trained on TensorFlow through its fused kernel
    (FusedBatchNormV3). Same arguments, weights, statistics and outputs: the moving variance
    is updated with the batch's own (biased) variance, as Keras does."""

    def call(self, inputs, training=None, mask=None):
        fused = (
            training and self.trainable and keras.backend.backend() == "tensorflow"
            and mask is None and not (self.renorm or self.synchronized)
            and len(inputs.shape) == 4 and self.axis in (-1, 3)
        )  # fmt: skip
        if not fused:
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # The kernel takes bfloat16 activations as they are and works in float32 inside, so
        # the statistics are float32 whatever the policy (as Keras' are) with no casts of the
        # whole tensor either way.
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        x = inputs if dtype in ("float32", "bfloat16") else ops.cast(inputs, "float32")
        ones = ops.ones(x.shape[-1:], "float32")
        scale = ops.cast(self.gamma, "float32") if self.scale else ones
        offset = ops.cast(self.beta, "float32") if self.center else ones * 0.0
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, scale, offset, epsilon=self.epsilon, is_training=True
        )
        # The kernel returns the unbiased variance (n / (n - 1)); Keras keeps the biased one.
        n = ops.cast(ops.prod(ops.shape(x)[:-1]), "float32")
        variance = variance * (n - 1.0) / n
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return ops.cast(y, self.compute_dtype)


_SQRT_HALF, _INV_SQRT_2PI = 0.7071067811865476, 0.3989422804014327
_gelu_kernels: dict = {}


def _xla_gelu():
    """GELU (exact, erf) with its gradient, each one XLA-compiled float32 loop, on TensorFlow."""
    if "gelu" in _gelu_kernels:
        return _gelu_kernels["gelu"]
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def forward(x):
        v = tf.cast(x, tf.float32)
        return tf.cast(0.5 * v * (1.0 + tf.math.erf(v * _SQRT_HALF)), x.dtype)

    @tf.function(jit_compile=True)
    def backward(x, dy):
        v = tf.cast(x, tf.float32)
        slope = 0.5 * (1.0 + tf.math.erf(v * _SQRT_HALF)) + v * tf.exp(-0.5 * v * v) * _INV_SQRT_2PI
        return tf.cast(tf.cast(dy, tf.float32) * slope, x.dtype)

    @tf.custom_gradient
    def gelu(x):
        return forward(x), lambda dy: backward(x, dy)

    _gelu_kernels["gelu"] = gelu
    return gelu


@keras.saving.register_keras_serializable(package="cnnlab")
class Gelu(keras.layers.Activation):
    """keras.layers.Activation("gelu") (exact GELU, with erf), run on TensorFlow as one fused
    XLA loop forward and one backward, in float32 whatever the policy: in training and in
    prediction alike (Keras' chain of element-wise ops made prediction over twice as slow).
    Exports replace it with Keras' own GELU (cnnlab.commands.export.convert.portable_model)."""

    def __init__(self, **kwargs):
        kwargs.pop("activation", None)
        super().__init__("gelu", **kwargs)

    def call(self, inputs, training=None):
        if keras.backend.backend() == "tensorflow":
            return _xla_gelu()(inputs)
        return super().call(inputs)
