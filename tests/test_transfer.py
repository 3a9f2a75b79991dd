"""VGG16 feature extraction, cached features and phased fine-tuning, on tiny real runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnlab.config import load_config
from cnnlab.runs import load_run_model
from cnnlab.training.trainer import train
from cnnlab.utils.errors import ConfigError

from .helpers import CONFIGS, probability_atol
from .images import write_cifar10

HEAD = 16  # dense units of the test head


@pytest.fixture(scope="module")
def cifar(tmp_path_factory, mnist_arrays) -> Path:
    return write_cifar10(
        tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz", mnist_arrays, per_batch=16
    )


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory) -> Path:
    """A VGG16 base's weights saved to a file, standing in for the ImageNet download."""
    import keras

    keras.utils.set_random_seed(7)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("weights") / "vgg16_notop.weights.h5"
    base.save_weights(path)
    return path


def vgg_config(tmp_path: Path, cifar: Path, weights: Path, phases: str, extra: str = ""):
    path = tmp_path / "vgg.yaml"
    path.write_text(
        f"data: {{loader: cifar10, path: {cifar}}}\n"
        f"model: {{builder: vgg16, weights: {weights}, dense_units: [{HEAD}]{extra}}}\n"
        f"train:\n  batch_size: 16\n  verbose: 0\n  optimizer: rmsprop\n  phases: {phases}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    return load_config(path)


def base_weights(model) -> list[tuple[str, list[np.ndarray]]]:
    from cnnlab.models.transfer import find_base

    return [(layer.name, layer.get_weights()) for layer in find_base(model).layers]


def start_weights(path: Path) -> list[list[np.ndarray]]:
    import keras

    start = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    start.load_weights(path)
    return [layer.get_weights() for layer in start.layers]


def check_only_block5_trained(run_dir: Path, weights: Path, head: int, outputs: int) -> None:
    """A two-phase run (frozen base, then `unfreeze: 4`): what each phase trained, and the
    saved model's scores on raw uint8 test images."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    head_params = (512 * head + head) + (head * outputs + outputs)
    block5 = 3 * (3 * 3 * 512 * 512 + 512)
    first, second = metrics["phases"]
    assert (first["trainable_params"], second["trainable_params"]) == (
        head_params,
        head_params + block5,
    )
    assert (first["epochs_run"], second["epochs_run"], second["first_epoch"]) == (1, 1, 2)
    history = pd.read_csv(run_dir / "history.csv")
    assert history["phase"].tolist() == [1, 2] and history["epoch"].tolist() == [0, 1]

    model = load_run_model(run_dir)
    before = start_weights(weights)
    after = base_weights(model)
    for (name, trained), old in zip(after, before, strict=True):
        same = all(np.array_equal(a, b) for a, b in zip(trained, old, strict=True))
        # block5 (conv1-3 and its pool) trained in phase 2; everything below stayed frozen.
        assert same == (not name.startswith("block5_conv")), name

    # The saved model takes raw uint8 images and gives the scores metrics.json reports.
    from cnnlab.data import load_dataset

    cfg = load_config(run_dir / "config.yaml")
    data = load_dataset(cfg.data, cfg.seed)
    probs = model.predict(data.x_test, verbose=0)
    assert probs.shape == (len(data.x_test), outputs)
    predicted = probs.argmax(axis=1) if outputs > 1 else (probs[:, 0] > 0.5).astype(int)
    accuracy = float((predicted == data.y_test).mean())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)


def test_cached_features_train_the_head_and_save_a_full_model(tmp_path, cifar, vgg_weights):
    phases = "[{epochs: 3, learning_rate: 1e-3}]"
    cfg = vgg_config(tmp_path, cifar, vgg_weights, phases, extra=", cache_features: true")
    run_dir = train(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["phases"][0]["trainable_params"] == (512 * HEAD + HEAD) + (HEAD * 10 + 10)
    model = load_run_model(run_dir)
    assert model.input_shape == (None, 32, 32, 3)  # raw images in, not features
    from cnnlab.data import load_dataset

    data = load_dataset(cfg.data, cfg.seed)
    accuracy = float((model.predict(data.x_val, verbose=0).argmax(axis=1) == data.y_val).mean())
    assert accuracy == pytest.approx(metrics["val"]["accuracy"], abs=1e-6)
    # The base kept the weights it was given.
    for (_, weights), old in zip(base_weights(model), start_weights(vgg_weights), strict=True):
        for a, b in zip(weights, old, strict=True):
            np.testing.assert_array_equal(a, b)


def test_vgg16_refuses_images_it_cannot_take(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text("data: {loader: mnist}\nmodel: {builder: vgg16, weights: none}\n")
    with pytest.raises(ConfigError, match="set data.resize: \\[32, 32\\] .* and data.to_rgb"):
        load_config(path)
    cfg = load_config(path, ["data.resize=[32, 32]", "data.to_rgb=true"])
    assert cfg.data.input_shape == (32, 32, 3)


def test_cache_features_needs_a_frozen_base_and_no_augmentation(tmp_path, cifar):
    path = tmp_path / "v.yaml"
    path.write_text(
        f"data: {{loader: cifar10, path: {cifar}}}\n"
        "model: {builder: vgg16, weights: none, cache_features: true}\n"
        "train: {phases: [{epochs: 1}, {epochs: 1, unfreeze: 4}]}\n"
    )
    with pytest.raises(ConfigError, match=f"{path}:2: model.cache_features needs the base frozen"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot be augmented"):
        load_config(path, ["train.phases.1.unfreeze=0", "model.augmentation={flip: horizontal}"])


def test_phases_inherit_train_keys_and_read_back_the_same(tmp_path):
    from cnnlab.config import dump_config

    path = tmp_path / "p.yaml"
    path.write_text(
        "data: {loader: mnist}\nmodel: {builder: small_cnn}\n"
        "train:\n  optimizer: rmsprop\n  early_stopping: null\n"
        "  phases: [{epochs: 2}, {epochs: 3, optimizer: sgd, momentum: 0.9}]\n"
    )
    cfg = load_config(path)
    first, second = cfg.train.stages()
    assert (first.name, first.optimizer, first.early_stopping) == ("phase1", "rmsprop", None)
    assert (second.optimizer, second.momentum, second.epochs) == ("sgd", 0.9, 3)
    assert cfg.train.total_epochs == 5
    (tmp_path / "again.yaml").write_text(dump_config(cfg))
    assert load_config(tmp_path / "again.yaml", [f"name={cfg.name}"]) == cfg


COLOUR_CONFIGS = [
    "cifar10_alexnet_lite", "cifar10_deep_cnn", "cifar10_airbench94",
    "cifar10_airbench93", "cifar10_airbench94_muon", "catsdogs_convnet",
    "catsdogs_convnet_aug", "catsdogs_best",
    # Exported and compared with its saved model below.
    pytest.param("catsdogs_vgg16_features", marks=pytest.mark.precision),
    "catsdogs_vgg16_finetune",
    "catsdogs_xception_finetune",
]  # fmt: skip


@pytest.mark.recipes
@pytest.mark.parametrize("name", COLOUR_CONFIGS)
def test_shipped_colour_config_trains_on_tiny_data(name, tmp_path, vgg_weights, mnist_arrays, cli):
    from .images import write_class_folders, write_split_folders

    config = CONFIGS / f"{name}.yaml"
    cfg = load_config(config, [f"data.root={tmp_path}"])
    overrides = ["output_dir=" + str(tmp_path / "out"), "train.verbose=0", "train.epochs=1"]
    if name.startswith("cifar10"):
        # The official layout: train/ and test/ of ten classes, validation split off train.
        classes = tuple(f"class{i}" for i in range(10))
        root = tmp_path / "cifar"
        write_class_folders(root / "train", mnist_arrays, 6, classes=classes, size=32)
        write_class_folders(root / "TEST", mnist_arrays, 2, classes=classes, size=32, offset=6)
        overrides.append(f"data.root={root}")
    else:
        root = write_split_folders(tmp_path / "cd", mnist_arrays, counts=(8, 4, 4), size=90)
        overrides += [f"data.root={root}", "data.image_size=[80, 80]"]
    if cfg.model.builder == "vgg16":
        # VGG16's smallest input: the test is about the config, not the picture size.
        overrides += [f"model.weights={vgg_weights}", "data.image_size=[32, 32]"]
    if cfg.model.builder == "pretrained":  # no ImageNet download here
        overrides += ["model.weights=none", "data.image_size=[71, 71]"]
    for i in range(len(cfg.train.phases or [])):
        overrides.append(f"train.phases.{i}.epochs=1")
    result = cli("train", config, *[a for o in overrides for a in ("--set", o)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "out").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # One epoch per phase, each phase recorded, and a model of the data's classes saved.
    assert metrics["epochs_run"] == len(metrics["phases"]) == len(cfg.train.stages())
    assert [p["name"] for p in metrics["phases"]] == [p.name for p in cfg.train.stages()]
    model = load_run_model(run_dir)
    assert model.output_shape == ((None, 10) if name.startswith("cifar10") else (None, 1))
    if name.startswith("cifar10"):
        assert f"test <- {root / 'TEST'}" in result.output
        assert f"validation <- {cfg.data.validation_split:.0%} of train" in result.output
    if name == "cifar10_airbench94_muon":  # the kernels' rate, then the SGD part's
        assert "muon 0.24, other weights sgd 106, " in result.output
    if name == "catsdogs_vgg16_finetune":
        check_only_block5_trained(run_dir, vgg_weights, head=256, outputs=1)
    if name == "catsdogs_vgg16_features":
        # Exported as a SavedModel: VGG16's preprocessing inside, both classes' probabilities out.
        from cnnlab.commands.export.runtimes import load_runtime

        exported = cli("export", run_dir, "--format", "savedmodel")
        assert exported.exit_code == 0, exported.output
        record = json.loads((run_dir / "export" / "export.json").read_text())["savedmodel"]
        assert record["max_abs_diff"] < 1e-4 and record["classes"] == ["cats", "dogs"]
        x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        p_dog = model.predict(x, verbose=0)
        got = load_runtime("savedmodel", run_dir / "export" / "savedmodel").predict(x)
        # The saved model computes in the run's precision, the export in float32.
        expected = np.concatenate([1 - p_dog, p_dog], axis=1)
        np.testing.assert_allclose(got, expected, atol=probability_atol(run_dir))
