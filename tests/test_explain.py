"""`cnnlab explain`: Grad-CAM heatmaps for a run's predictions, the layer they come from, and
the one-line refusals."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from cnnlab.commands.explain import BAND, GAP
from cnnlab.config import load_config
from cnnlab.gradcam import (
    OPACITY,
    enlarge,
    feature_layer,
    gradcam,
    is_flat,
    overlay,
    spread,
    stretch,
)
from cnnlab.models import build_model
from cnnlab.utils.errors import CnnlabError

from .helpers import invoke, invoke_ok, only_run
from .images import write_class_folders


def test_the_heatmap_finds_what_decides_the_class():
    """Channel 0 is bright top-left, channel 1 bottom-right; class 1 scores channel 0 over
    channel 1, class 0 the reverse: each class's map lights its own corner."""
    inputs = keras.Input((16, 16, 2))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="look")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.get_layer("look").set_weights([np.eye(2).reshape(1, 1, 2, 2)])
    model.layers[-1].set_weights([np.array([[-5.0, 5.0], [5.0, -5.0]]), np.zeros(2)])
    image = np.zeros((1, 16, 16, 2), np.uint8)
    image[0, :8, :8, 0] = 250
    image[0, 8:, 8:, 1] = 250
    images = np.repeat(image, 2, axis=0)
    heat = gradcam(model, images, np.array([1, 0]), feature_layer(model))
    assert heat.shape == (2, 16, 16) and heat.max() == pytest.approx(1.0)
    assert heat[0, :6, :6].min() > 0.9 and heat[0, 10:, 10:].max() < 0.05  # class 1
    assert heat[1, 10:, 10:].min() > 0.9 and heat[1, :6, :6].max() < 0.05  # class 0


def test_the_feature_layer_is_the_last_map_or_the_base(tmp_path):
    cfg = load_config_text(
        tmp_path, "model: {builder: vgg16, weights: none, dense_units: [8]}", "cifar10"
    )
    vgg = build_model(cfg.model, (32, 32, 3), 2)
    assert feature_layer(vgg).name == "vgg16"  # the pretrained base: its output map
    heat = gradcam(vgg, np.zeros((1, 32, 32, 3), np.uint8) + 90, np.array([0]), feature_layer(vgg))
    assert heat.shape == (1, 32, 32) and np.isfinite(heat).all()
    cnn = build_model(
        load_config_text(tmp_path, "model: {builder: small_cnn}").model, (28, 28, 1), 10
    )
    assert isinstance(cnn.get_layer(feature_layer(cnn).name), keras.layers.Layer)
    mlp = build_model(load_config_text(tmp_path, "model: {builder: mlp}").model, (28, 28, 1), 10)
    with pytest.raises(CnnlabError, match="has no convolution layer"):
        feature_layer(mlp)
    with pytest.raises(CnnlabError, match="--layer nope: not a layer"):
        feature_layer(cnn, "nope")


def load_config_text(tmp_path, model_line: str, loader: str = "mnist"):
    path = tmp_path / "c.yaml"
    path.write_text(f"data: {{loader: {loader}}}\n{model_line}\n")
    return load_config(path, need_data=False)


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory, mnist_arrays):
    """A run trained one epoch on 24x24 colour photos, and its photo folder."""
    tmp = tmp_path_factory.mktemp("explain")
    root = write_class_folders(tmp / "photos", mnist_arrays, 12)
    config = tmp / "photos.yaml"
    config.write_text(
        f"data: {{loader: image_dir, root: {root}, image_size: [24, 24]}}\n"
        "model: {builder: small_cnn, filters: [8, 16]}\n"
        "train: {epochs: 1, batch_size: 8, verbose: 0}\n"
        f"output_dir: {tmp / 'out'}\n"
    )
    invoke_ok("train", config)
    return only_run(tmp / "out"), root


def test_explain_writes_a_png_per_image_and_a_sheet(photo_run):
    run, root = photo_run
    photos = sorted((root / "cats").iterdir())[:2] + sorted((root / "dogs").iterdir())[:1]
    result = invoke_ok("explain", run, *photos, "--class", "dogs")
    folder = run / "explain"
    for photo in photos:
        png = folder / f"{photo.stem}-gradcam.png"
        with Image.open(png) as image:
            # The 40x40 photo and its heatmap side by side, enlarged 6 times, under the band.
            assert image.size == (2 * 240 + GAP, BAND + 240)
        assert f"-> {png}" in result.output
    assert "showing dogs" in result.output and (folder / "gradcam.png").is_file()
    again = invoke("explain", run, *photos)
    assert again.exit_code != 0 and "already exists; pass --overwrite" in again.output
    wrong = invoke("explain", run, photos[0], "--class", "horses", "--overwrite")
    assert wrong.exit_code == 1 and "--class horses: not a class of the run" in wrong.output


def test_explain_shows_the_photo_at_its_own_size_under_a_label(photo_run, tmp_path):
    run, root = photo_run
    with Image.open(sorted((root / "dogs").iterdir())[0]) as small:
        photo = np.asarray(small.convert("RGB").resize((300, 200), Image.Resampling.BICUBIC))
    Image.fromarray(photo).save(tmp_path / "wide.png")
    # Stored sideways, with the EXIF tag that turns it upright (as phones do).
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo).transpose(Image.Transpose.ROTATE_90).save(
        tmp_path / "turned.jpg", exif=exif, quality=95
    )
    Image.fromarray(photo).resize((1200, 800)).save(tmp_path / "large.png")
    invoke_ok("explain", run, tmp_path, "-o", tmp_path / "out")
    pngs = {name: Image.open(tmp_path / "out" / f"{name}-gradcam.png").convert("RGB")
            for name in ("wide", "turned", "large")}  # fmt: skip
    # The photo at its own size (not the model's 24 pixels), upright; a large one at 512.
    assert pngs["wide"].size == pngs["turned"].size == (2 * 300 + GAP, BAND + 200)
    assert pngs["large"].size == (2 * 512 + GAP, BAND + 341)
    drawn = np.asarray(pngs["wide"]).astype(int)
    assert (drawn[BAND:, :300] == photo).all()  # the photo itself, on the left
    heatmap = drawn[BAND:, 300 + GAP :]
    assert np.abs(heatmap - photo).mean() < 40  # the photo shows through the heatmap
    band = drawn[:BAND].min(axis=-1)
    assert (band < 100).sum() > 200 and (band > 250).mean() > 0.8  # dark text on white
    turned = np.asarray(pngs["turned"]).astype(int)[BAND:, :300]
    assert np.abs(turned - photo).mean() < 8  # upright (JPEG's losses aside)


def test_the_overlay_leaves_the_photo_where_the_map_is_cold():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    heat = np.zeros((8, 12), np.float32)
    heat[:, 6:] = 1.0  # hot on the right, at the model's resolution
    drawn = overlay(photo, heat).astype(int)
    assert drawn.shape == photo.shape
    assert (drawn[:, :32] == photo[:, :32]).all()  # cold: the photo's own pixels
    assert np.abs(drawn[:, 64:] - photo[:, 64:]).mean() > 30  # hot: coloured
    assert np.abs(drawn - photo).mean() < OPACITY * 255 / 2
    grey = np.full((28, 28, 1), 90, np.uint8)
    assert (overlay(grey, np.zeros((28, 28))) == 90).all()  # a map of 0s draws nothing


def test_a_weak_map_is_stretched_and_a_flat_one_drawn_as_nothing():
    weak = np.linspace(0.9, 1.0, 64, dtype=np.float32).reshape(8, 8)  # nearly one value
    assert stretch(weak).min() == 0 and stretch(weak).max() == pytest.approx(1)
    assert spread(weak) == pytest.approx((0.9, 1.0)) and not is_flat(weak)
    flat = np.full((8, 8), 0.98, np.float32)
    flat[0, 0] = 1.0
    photo = np.full((8, 8, 3), 200, np.uint8)
    assert is_flat(flat) and (overlay(photo, flat) == photo).all()
    assert is_flat(np.zeros((8, 8))) and spread(np.zeros((8, 8))) == (1.0, 1.0)


def test_small_images_are_enlarged_in_whole_pixels():
    digit = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28, 1)
    big = enlarge(digit, 224, 512)
    assert big.shape == (224, 224, 1) and (big[::8, ::8] == digit).all()
    assert enlarge(np.zeros((200, 300, 3)), 224, 512).shape == (200, 300, 3)
    assert enlarge(np.zeros((20, 400, 3)), 224, 512).shape == (20, 400, 3)  # long side kept
