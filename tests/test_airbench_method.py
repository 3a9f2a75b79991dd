"""airbench's pieces as cnnlab has them: the whitening stem, whole-pixel shifts, alternating
flips and six-view test-time augmentation; each checked on its own, on tiny real data."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cnnlab.commands.export.convert import portable_model
from cnnlab.config.models import AirbenchModel
from cnnlab.data.pipeline import ArrayBatches, BatchPlan, batches, epoch_flips, epoch_order, steps
from cnnlab.inference import class_probabilities
from cnnlab.models import adapt_model, build_model
from cnnlab.models.layers import PatchWhitening, RandomShift


def photos(mnist_arrays, n: int = 64) -> np.ndarray:
    """Colour 32x32 images made of real digits (a channel each for three digits)."""
    digits = np.pad(mnist_arrays["x_train"][: 3 * n], ((0, 0), (2, 2), (2, 2)))
    return np.stack([digits[:n], digits[n : 2 * n], digits[2 * n :]], axis=-1)


def test_the_whitening_stem_gives_its_training_patches_identity_covariance(mnist_arrays):
    x = photos(mnist_arrays).astype("float32") / 255
    layer = PatchWhitening(2)
    layer.adapt(x)
    out = np.asarray(layer(x)).reshape(-1, layer.filters)
    half = out[:, : layer.filters // 2]  # the other half is its negation
    np.testing.assert_allclose(out[:, layer.filters // 2 :], -half, atol=1e-4)
    covariance = half.T @ half / len(half)
    # Identity, up to the epsilon that keeps the weakest directions from blowing up.
    assert np.abs(covariance - np.eye(12)).max() < 0.05
    assert layer.kernel.trainable is False and layer.bias.trainable is True


def test_a_new_airbench_model_is_whitened_from_the_training_images_alone(mnist_arrays, tmp_path):
    x = photos(mnist_arrays)
    cfg = AirbenchModel(builder="airbench", stem="whitening", filters=[8, 16])
    model = build_model(cfg, (32, 32, 3), 10)
    assert not np.any(model.get_layer("stem").kernel.numpy())  # nothing before adapt
    assert adapt_model(model, x[:32]) == ["stem"]
    kernel = model.get_layer("stem").kernel.numpy().copy()
    other = build_model(cfg, (32, 32, 3), 10)
    adapt_model(other, x[32:])
    assert not np.allclose(other.get_layer("stem").kernel.numpy(), kernel)  # from its data
    # The filters are weights: a saved model brings them along.
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.get_layer("stem").kernel.numpy(), kernel)


def test_a_shift_moves_whole_pixels_and_only_in_training():
    x = np.arange(4 * 6 * 6, dtype="float32").reshape(4, 6, 6, 1)
    layer = RandomShift(2, fill_mode="constant", seed=3)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    out = np.asarray(layer(x, training=True))
    for image, shifted in zip(x[..., 0], out[..., 0], strict=True):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(shifted, np.roll(image, (dy, dx), axis=(0, 1)) * window(dy, dx))
        ]
        assert len(found) == 1, shifted  # exactly one whole-pixel shift, no blur


def window(dy: int, dx: int, size: int = 6) -> np.ndarray:
    """1 where a (dy, dx) shift of a size x size image keeps pixels, 0 where it fills."""
    mask = np.zeros((size, size))
    mask[max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)] = 1
    return mask


def test_alternating_flips_mirror_each_image_every_other_epoch():
    flips = np.stack([epoch_flips(1000, 7, e) for e in range(4)])
    assert 400 < flips[0].sum() < 600  # a seeded half first
    np.testing.assert_array_equal(flips[1], ~flips[0])
    np.testing.assert_array_equal(flips[2], flips[0])


@pytest.mark.parametrize("backend_batches", ["tensorflow", "array"])
def test_the_training_batches_are_the_epochs_orders_with_their_flips(backend_batches):
    x = np.arange(10 * 2 * 3, dtype=np.uint8).reshape(10, 2, 3, 1)
    y = np.arange(10)
    if backend_batches == "tensorflow":
        made = batches(x, y, 4, BatchPlan(seed=5, first_epoch=1, epochs=2, alternate_flip=True))
        got = [(np.asarray(a), np.asarray(b)) for a, b in made]
    else:
        made = ArrayBatches(x, y, 4, BatchPlan(seed=5, first_epoch=1, alternate_flip=True))
        got = [made[i] for i in range(len(made))]
        made.on_epoch_end()
        got += [made[i] for i in range(len(made))]
    per_epoch = steps(10, 4)
    assert len(got) == 2 * per_epoch
    for n, epoch in enumerate((1, 2)):
        order, flip = epoch_order(10, 5, epoch), epoch_flips(10, 5, epoch)
        expected = x[order].copy()
        expected[flip[order]] = expected[flip[order]][:, :, ::-1]
        part = got[n * per_epoch : (n + 1) * per_epoch]
        np.testing.assert_array_equal(np.concatenate([a for a, _ in part]), expected)
        np.testing.assert_array_equal(np.concatenate([b for _, b in part]), y[order])


def test_six_view_tta_is_the_weighted_mean_of_its_views_everywhere(mnist_arrays):
    cfg = AirbenchModel(builder="airbench", filters=[8], tta="flip_and_shift")
    model = build_model(cfg, (32, 32, 3), 10)
    x = photos(mnist_arrays, 8)

    def plain(images):
        return class_probabilities(model, images)

    def mirrored(images):
        return (plain(images) + plain(images[:, :, ::-1])) / 2

    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    down_right, up_left = padded[:, :32, :32], padded[:, 2:, 2:]
    expected = mirrored(x) / 2 + mirrored(down_right) / 4 + mirrored(up_left) / 4
    got = class_probabilities(model, x, "flip_and_shift")
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # The exported graph computes the same views.
    exported = portable_model(model, "flip_and_shift").predict(x, verbose=0)
    np.testing.assert_allclose(exported, got, atol=1e-5)


def test_dirac_init_passes_the_first_channels_through():
    from cnnlab.models.layers import PartialDirac

    kernel = np.asarray(PartialDirac(seed=1)((3, 3, 4, 6)))
    x = np.random.default_rng(0).random((1, 5, 5, 4)).astype("float32")
    out = np.asarray(keras.ops.conv(x, kernel, padding="same"))
    np.testing.assert_allclose(out[..., :4], x, atol=1e-6)  # the first 4 filters: identities
    drawn = kernel[..., 4:]
    assert np.abs(drawn).max() <= 1 / np.sqrt(3 * 3 * 4) and drawn.std() > 0.05


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_the_fused_batch_norm_and_gelu_train_as_keras_layers_do(policy):
    """cnnlab's BatchNorm and Gelu (fused kernels on TensorFlow: BatchNorm's in training, Gelu's
    always) give Keras' outputs, gradients and moving statistics, in float32 and under bfloat16."""
    import tensorflow as tf

    from cnnlab.models.layers import BatchNorm, Gelu
    from cnnlab.utils.environment import dtype_policy

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (16, 5, 5, 8)), "float32")
    with dtype_policy(policy):
        shift = {"momentum": 0.6, "scale": False}
        pairs = [
            (keras.layers.BatchNormalization(**shift), BatchNorm(**shift)),
            (keras.layers.BatchNormalization(), BatchNorm()),
            (keras.layers.Activation("gelu"), Gelu()),
        ]
        for theirs, ours in pairs:
            theirs.build(x.shape)
            ours.build(x.shape)
            for a, b in zip(theirs.weights, ours.weights, strict=True):
                a.assign(a.numpy() + 0.5 * (a.name in ("beta", "gamma")))  # not the defaults
                b.assign(a.numpy())
            # Training, they run the fused kernels.
            graph = tf.function(lambda t, layer=ours: layer(t, training=True))
            ops_used = {op.type for op in graph.get_concrete_function(x).graph.get_operations()}
            if isinstance(ours, BatchNorm):
                assert "FusedBatchNormV3" in ops_used and "Mean" not in ops_used, ops_used
                (kernel,) = [
                    op for op in graph.get_concrete_function(x).graph.get_operations()
                    if op.type == "FusedBatchNormV3"
                ]  # fmt: skip
                assert kernel.get_attr("T") == ours.compute_dtype  # bfloat16 fed uncast
            else:  # a call of the compiled function, no erf of its own, predicting too
                predicting = tf.function(lambda t, layer=ours: layer(t, training=False))
                graph = predicting.get_concrete_function(x).graph
                ops_used |= {op.type for op in graph.get_operations()}
                assert "PartitionedCall" in ops_used and not {"Erf", "Erfc"} & ops_used
            for training in (True, False):
                outputs, grads = [], []
                for layer in (theirs, ours):
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        y = layer(x, training=training)
                        loss = tf.reduce_sum(tf.cast(y, "float32") * tf.range(8.0))
                    outputs.append(tf.cast(y, "float32").numpy())
                    grads.append(tape.gradient(loss, x).numpy())
                    assert y.dtype == layer.compute_dtype
                tol = 1e-4 if policy == "float32" else 2e-2
                np.testing.assert_allclose(outputs[1], outputs[0], rtol=tol, atol=tol)
                np.testing.assert_allclose(grads[1], grads[0], rtol=tol, atol=10 * tol)
            for a, b in zip(theirs.weights, ours.weights, strict=True):
                np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)
    # Saved, each is still what it was.
    assert isinstance(keras.layers.deserialize(keras.layers.serialize(Gelu())), Gelu)
    assert Gelu.from_config(Gelu().get_config()).activation is keras.activations.gelu
