"""train_batch.png: the first training batch after augmentation, written by train and by
`check --preview`, shown in the report."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnnlab.config import AugmentationConfig
from cnnlab.data.pipeline import BatchPlan, batches, first_batch, image_batches, predict
from cnnlab.models.common import augment, has_augmentation, image_input

from .helpers import invoke, invoke_ok, only_run
from .images import write_class_folders


def test_the_first_batch_is_the_one_fit_gets():
    x = np.arange(20 * 4 * 4 * 1, dtype=np.uint8).reshape(20, 4, 4, 1)
    y = np.arange(20) % 2
    images, labels = first_batch(x, y, 8, seed=5, alternate_flip=True)
    fed = next(iter(batches(x, y, 8, BatchPlan(seed=5, epochs=1, alternate_flip=True))))
    np.testing.assert_array_equal(images, np.asarray(fed[0]))
    np.testing.assert_array_equal(labels, np.asarray(fed[1]))


def test_pipelines_run_without_autotuning_and_predict_as_keras_does():
    # With tf.data's autotuning, deleting an iterator can wait up to a minute for its next
    # round (see cnnlab.data.pipeline), so no pipeline here may have it on.
    import keras

    x = np.random.default_rng(1).integers(0, 255, (20, 6, 6, 1), dtype=np.uint8)
    y = np.arange(20) % 3
    for data in (
        batches(x, y, 8, BatchPlan(seed=5, epochs=2)),
        batches(x, y, 8),
        image_batches(x, 8),
    ):
        assert data.options().autotune.enabled is False
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    mirrored = x[:, :, ::-1]  # a view, as test-time augmentation passes them
    np.testing.assert_allclose(
        predict(model, mirrored, 8), model.predict(mirrored, batch_size=8, verbose=0), rtol=1e-6
    )


def test_augment_runs_the_models_augmentation_layers():
    import keras

    images = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    inputs, x = image_input((16, 16, 3), AugmentationConfig(shift=3, fill_mode="reflect"))
    shifted = keras.Model(inputs, x)
    assert has_augmentation(shifted)
    assert not np.array_equal(augment(shifted, images), images)
    inputs, x = image_input((16, 16, 3))
    plain = keras.Model(inputs, x)
    assert not has_augmentation(plain)
    np.testing.assert_array_equal(augment(plain, images), images)


def test_train_and_check_draw_the_augmented_batch(tmp_path, mnist_arrays, monkeypatch):
    root = write_class_folders(tmp_path / "photos", mnist_arrays, 12)
    config = tmp_path / "photos.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [24, 24]}}\n"
        "model: {builder: small_cnn, filters: [8],\n"
        "        augmentation: {rotation: 20, flip: horizontal}}\n"
        "train: {epochs: 1, batch_size: 8, verbose: 0}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    result = invoke_ok("train", config)
    run = only_run(tmp_path / "out")
    assert f"wrote {run / 'train_batch.png'}" in result.output
    with Image.open(run / "train_batch.png") as png:
        assert png.width > 600 and png.height > 100
    assert "The first training batch, augmented" in (run / "report.html").read_text()

    monkeypatch.chdir(tmp_path)
    result = invoke_ok("check", config, "--preview")
    assert "wrote train_batch.png" in result.output and (tmp_path / "train_batch.png").is_file()
    again = invoke("check", config, "--preview")
    assert again.exit_code != 0 and "exists" in again.output
    plain = invoke_ok("check", config, "--preview", "--preview-file", "plain.png", "--set",
                      "model.augmentation=null")  # fmt: skip
    assert "augments nothing" in plain.output and not (tmp_path / "plain.png").exists()
