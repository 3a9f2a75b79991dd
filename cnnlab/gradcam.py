"""Grad-CAM (Selvaraju et al. 2017): where a model looks for a class.

The model is split at a feature map (`feature_layer`: the last one after the last
convolution, or one named; a pretrained base such as VGG16's counts as one layer: its output
map): the gradient of the class's score (its probability) with respect to that map, averaged
over its positions, weighs its channels; the weighted sum, through ReLU, scaled to [0, 1] and
resized to the image, is the heatmap. The gradient comes from TensorFlow or JAX, whichever
backend the model runs on, behind the one function `gradcam`. `cnnlab explain` draws it for
image files, the report's mistakes grid over its images (`overlay`).

Drawn, a map is stretched from its lowest value to its highest (a weak model's map that is
nearly the same everywhere would otherwise colour the whole picture alike), upsampled smoothly
to the picture, and laid over it in a perceptual colour scale whose opacity grows with the
value: where the map is cold the photo shows as it is.
"""

from __future__ import annotations

import keras
import numpy as np

from cnnlab.utils.errors import CnnlabError

COLOURS = "inferno"  # perceptual: dark to yellow, readable in grey too
OPACITY = 0.6  # of the map where it peaks; it falls to 0 with the value
FLAT = 0.05  # a map whose values span less than this share of its peak shows nothing


def feature_layer(model: keras.Model, name: str | None = None) -> keras.Layer:
    """The layer whose output map Grad-CAM weighs: `name`, or the last one with a 4-D output
    after a convolution (a nested base model counts as one layer).

    Raises:
        CnnlabError: no such layer, or a model without convolutions.
    """
    spatial = [
        layer for layer in model.layers
        if len(getattr(layer.output, "shape", ())) == 4 and _convolves(layer)
    ]  # fmt: skip
    if name is not None:
        found = [layer for layer in model.layers if layer.name == name]
        if not found or len(found[0].output.shape) != 4:
            names = ", ".join(layer.name for layer in spatial) or "none"
            raise CnnlabError(
                f"--layer {name}: not a layer of {model.name} with a feature map; those are: "
                f"{names}"
            )
        return found[0]
    if not spatial:
        raise CnnlabError(
            f"model {model.name} has no convolution layer: Grad-CAM needs a feature map "
            "(an MLP has none)"
        )
    # The last map after the last convolution: its activation, BatchNorm or pooling follow it.
    last_conv = max(i for i, layer in enumerate(model.layers) if _convolves(layer))
    after = [layer for layer in spatial if model.layers.index(layer) >= last_conv]
    return after[-1] if after else spatial[-1]


def _convolves(layer: keras.Layer) -> bool:
    if isinstance(layer, keras.Model):
        return any(_convolves(inner) for inner in layer.layers)
    return isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)


def gradcam(
    model: keras.Model, images: np.ndarray, classes: np.ndarray, layer: keras.Layer
) -> np.ndarray:
    """(N, H, W) heatmaps in [0, 1] for `images` (uint8, as the model takes them) and the
    class index of each in `classes`."""
    tensor = _map_tensor(model, layer)
    features = keras.Model(model.inputs[0], tensor)
    head = keras.Model(tensor, model.outputs[0])
    maps = keras.ops.convert_to_numpy(keras.ops.cast(features(images, training=False), "float32"))
    grads = _gradients(head, maps, classes)
    weights = grads.mean(axis=(1, 2), keepdims=True)  # (N, 1, 1, C)
    cams = np.maximum((weights * maps).sum(axis=-1), 0)
    peak = cams.max(axis=(1, 2), keepdims=True)
    cams = np.where(peak > 0, cams / np.maximum(peak, 1e-12), 0.0)
    height, width = images.shape[1:3]
    resized = keras.ops.image.resize(cams[..., None], (height, width), interpolation="bicubic")
    return np.clip(keras.ops.convert_to_numpy(resized)[..., 0], 0, 1)


def _map_tensor(model: keras.Model, layer: keras.Layer):
    """`layer`'s output in `model`'s graph. A nested model's `.output` is its own graph's
    tensor; in the outer graph it is what the next layer takes."""
    if not isinstance(layer, keras.Model):
        return layer.output
    after = model.layers[model.layers.index(layer) + 1]
    return after.input


def _score(probs, classes: np.ndarray):
    """Each image's probability of its class; a one-unit sigmoid head's P(0) is 1 - P(1)."""
    probs = keras.ops.cast(probs, "float32")
    if probs.shape[-1] == 1:
        p = probs[:, 0]
        return keras.ops.where(keras.ops.convert_to_tensor(classes == 1), p, 1 - p)
    return keras.ops.take_along_axis(probs, keras.ops.convert_to_tensor(classes[:, None]), 1)[:, 0]


def _gradients(head: keras.Model, maps: np.ndarray, classes: np.ndarray) -> np.ndarray:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.convert_to_tensor(maps)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            total = tf.reduce_sum(_score(head(inputs, training=False), classes))
        return tape.gradient(total, inputs).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def total(x):
            return jnp.sum(_score(head(x, training=False), classes))

        return np.asarray(jax.grad(total)(jnp.asarray(maps)))
    raise CnnlabError(f"Grad-CAM runs on tensorflow or jax, not {backend}")


def spread(heat: np.ndarray) -> tuple[float, float]:
    """A map's lowest and highest value, as shares of its highest (1.0, 1.0 for a map that is
    0 everywhere: there is nothing to tell apart)."""
    high = float(heat.max())
    if high <= 0:
        return 1.0, 1.0
    return float(heat.min()) / high, 1.0


def is_flat(heat: np.ndarray) -> bool:
    """True for a map that tells no region from another (its values span less than FLAT)."""
    low, high = spread(heat)
    return high - low < FLAT


def stretch(heat: np.ndarray) -> np.ndarray:
    """A map scaled from its lowest value (0) to its highest (1); a flat one is all 0."""
    heat = np.asarray(heat, np.float32)
    if is_flat(heat):
        return np.zeros_like(heat)
    low, high = heat.min(), heat.max()
    return (heat - low) / (high - low)


def enlarge(image: np.ndarray, at_least: int, at_most: int) -> np.ndarray:
    """A small image repeated pixel by pixel (whole times, nothing invented) until its height
    is at least `at_least`, its long side kept within `at_most`; larger images as they are."""
    height, width = image.shape[:2]
    factor = max(1, min(-(-at_least // height), at_most // max(height, width)))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float = OPACITY) -> np.ndarray:
    """The heatmap over the image, uint8 RGB of the image's size: the map stretched
    (`stretch`), upsampled smoothly (bicubic) when the image is larger, in COLOURS, opaque
    as its value times `opacity`; where it is 0 the image's pixels are unchanged."""
    import matplotlib
    from PIL import Image

    height, width = image.shape[:2]
    value = stretch(heat)
    if value.shape != (height, width):
        resized = Image.fromarray(value).resize((width, height), Image.Resampling.BICUBIC)
        value = np.clip(np.asarray(resized), 0, 1)
    colours = matplotlib.colormaps[COLOURS](value)[..., :3] * 255
    alpha = opacity * value[..., None]
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    return np.clip(np.round((1 - alpha) * rgb + alpha * colours), 0, 255).astype(np.uint8)
