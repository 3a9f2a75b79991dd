"""Looking before training: `summary` (the model a config builds) and `check` (everything a
`train` needs: config, data, model, device), without fitting anything."""

from __future__ import annotations

import os

import keras
import numpy as np

from cnnlab.config import Config
from cnnlab.data import Dataset, count_classes, load_dataset
from cnnlab.errors import RunDirError
from cnnlab.models import build_model
from cnnlab.models.common import trainable_parameters


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
        note = f"{cfg.data.root} is not there, so its classes are unknown: assumed 2"
    return build_model(cfg.model, cfg.data.input_shape, classes), note


def load_and_build(cfg: Config) -> tuple[keras.Model, Dataset]:
    """Load the data, as train would, and build the model for it, untrained."""
    data = load_dataset(cfg.data, cfg.seed)
    return build_model(cfg.model, data.input_shape, data.num_classes), data


def class_counts(data: Dataset) -> list[tuple[str, list[int], int]]:
    """(split, images per class, total) for each split that has labels."""
    rows = []
    for split, y in (("train", data.y_train), ("validation", data.y_val), ("test", data.y_test)):
        if y is not None:
            rows.append((split, np.bincount(y, minlength=data.num_classes).tolist(), len(y)))
    return rows


def check_output_dir(cfg: Config) -> None:
    """The folder runs go to must exist or be creatable, and be writable."""
    root = cfg.output_dir
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise RunDirError(f"output_dir {root}: cannot create run directories there")
