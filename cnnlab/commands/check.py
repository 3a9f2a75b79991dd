"""Looking before training: `summary` (the model a config builds, from the config alone) and
`check` (everything a `train` needs: config, data, model, device), without fitting anything."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import keras

from cnnlab.config import Config
from cnnlab.data import Dataset, count_classes, describe_problems, load_dataset
from cnnlab.data.dataset import imbalance, label_counts
from cnnlab.models import build_model
from cnnlab.models.common import trainable_parameters
from cnnlab.runs import SUBMISSION, missing_data
from cnnlab.training.distribute import make_placement
from cnnlab.training.phases import class_weights, write_train_batch
from cnnlab.utils.environment import describe_device, resolve_precision
from cnnlab.utils.errors import DataError, RunDirError


def count_flops(model: keras.Model) -> int:
    """Floating-point operations per image of the Conv2D and Dense layers (2 per multiply-add).

    These layers hold nearly all the arithmetic of the builders here; pooling, activations
    and normalisation are left out.
    """
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            flops += 2 * h * w * c_out * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
        elif isinstance(layer, keras.Model):  # a nested base such as VGG16's
            flops += count_flops(layer)
    return int(flops)


def parameter_counts(model: keras.Model) -> dict[str, int]:
    trainable = trainable_parameters(model)
    total = int(model.count_params())
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def summarize(cfg: Config) -> tuple[keras.Model, str | None]:
    """The model `cfg` builds, untrained, from the shape and classes the config states alone
    (no data is read); and a note when the number of classes had to be assumed."""
    classes = count_classes(cfg.data)
    note = None
    if classes is None:
        classes = 2
        gone = missing_data(cfg.data)
        where = str(gone[0][1]) if gone else "the data"
        note = f"{where} is not there, so its classes are unknown: assumed 2"
    return build_model(cfg.model, cfg.data.input_shape, classes, cfg.data), note


def load_and_build(cfg: Config) -> tuple[keras.Model, Dataset]:
    """Load the data, as train would, and build the model for it, untrained."""
    data = load_dataset(cfg.data, cfg.seed)
    return build_model(cfg.model, data.input_shape, data.num_classes, cfg.data), data


def class_counts(data: Dataset) -> list[tuple[str, list[int], int]]:
    """(split, images per class, total) for each split that has labels."""
    rows = []
    for split, y in (("train", data.y_train), ("validation", data.y_val), ("test", data.y_test)):
        if y is not None:
            rows.append((split, label_counts(y, data.num_classes).tolist(), len(y)))
    return rows


def preflight(cfg: Config, preview: Path | None = None) -> Iterator[str]:
    """Everything `train` would do before its first epoch, as lines to show as they happen:
    the data (images per class and split), the model, device, precision and distribution;
    with `preview`, the first training batch after augmentation drawn there.

    Raises:
        CnnlabError: the first problem found (output folder, data, model).
    """
    check_output_dir(cfg)
    model, data = load_and_build(cfg)
    if data.source:
        yield data.source
    yield f"data: images of {'x'.join(map(str, data.input_shape))}, {data.num_classes} classes"
    for split, per_class, total in class_counts(data):
        listed = " ".join(
            f"{name}:{n}" for name, n in zip(data.class_names, per_class, strict=True)
        )
        yield f"  {split}: {total:,} images ({listed})"
    if data.x_test is not None and data.y_test is None:
        yield f"  test: {len(data.x_test):,} unlabelled images (a {SUBMISSION} is written)"
    yield f"  decoded images take {data.nbytes / 2**20:,.1f} MiB of memory (uint8)"
    if data.problems:
        yield f"  would skip {describe_problems(data.problems)}"
    from cnnlab.data.health import check_health, describe

    health = check_health(data)
    for line in describe(health):
        yield f"  data health: {line}"
    leaks = sum(found["pairs"] for found in health["leaks"].values())
    if leaks and cfg.data.on_leak == "error":
        raise DataError(
            f"{leaks:,} images copy images of another split; train stops here with "
            "data.on_leak: error (drop_from_test or warn train anyway)"
        )
    weights = class_weights(cfg.train, data.y_train, data.class_names)  # names checked
    uneven = imbalance(data.y_train, data.class_names)
    if uneven and weights is None and cfg.data.sampling != "balanced":
        yield f"warning: {uneven}"
    if preview is not None:
        if write_train_batch(cfg, model, data, preview):
            yield f"wrote {preview}: the first training batch after augmentation"
        else:
            yield "no preview: the config augments nothing (model.augmentation)"
    counts = parameter_counts(model)
    yield f"model: {model.name}, {counts['total']:,} parameters ({counts['trainable']:,} trainable)"
    precision, why = resolve_precision(cfg.train.precision)
    yield f"device: {describe_device()}, precision {precision} ({why})"
    placed = make_placement(cfg.train.distribute).describe(cfg.train.batch_size)
    yield (
        f"distribute: {placed['strategy']}, {placed['replicas']} replica(s), global batch "
        f"{placed['global_batch_size']} ({placed['per_replica_batch_size']:g} per replica)"
    )


def check_output_dir(cfg: Config) -> None:
    """The folder runs go to must exist or be creatable, and be writable."""
    root = cfg.output_dir
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise RunDirError(f"output_dir {root}: cannot create run directories there")
