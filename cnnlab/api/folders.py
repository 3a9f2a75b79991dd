"""A folder of photos as a config: `cnnlab train DIR`, `cnnlab init DIR`, `cnnlab.train(DIR)`.

The folder is read as the image_dir loader reads it (class folders, split folders of class
folders, or a flat folder of files all named <class>.<id>.<ext>). The image size is a square
that the photos' median short side allows, capped by what the model wants; the model is a
pretrained backbone when its ImageNet weights are in Keras' cache (fine-tuned in two phases),
else the BatchNorm convnet of catsdogs_best.yaml trained from scratch; `model` picks another
builder or backbone. The result is an ordinary config: the run directory holds it resolved, as
for a YAML file.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import statistics
from pathlib import Path
from typing import Any

import yaml

from cnnlab.config.models import BACKBONES, MODEL_SCHEMAS
from cnnlab.utils.errors import ConfigError

# The backbone picked when its weights are at hand: 7 M parameters, 78.7% ImageNet top-1, its
# own preprocessing inside; Keras' file name for it without its top.
BACKBONE = "EfficientNetV2B0"
BACKBONE_WEIGHTS = "efficientnetv2-b0_notop.h5"
PRETRAINED_SIDE = 224  # the size the ImageNet backbones were trained at
SCRATCH_SIDE = 128  # catsdogs_best.yaml's size: larger costs time, not accuracy, on a CPU
SMALLEST_SIDE = 32
SAMPLED = 200  # photos whose sizes are read (headers only)

AUGMENTATION = {
    "flip": "horizontal", "rotation": 15, "zoom": 0.2, "translation": 0.1, "contrast": 0.2,
    "fill_mode": "reflect",
}  # fmt: skip


def folder_config(root: str | Path, model: str | None = None) -> dict[str, Any]:
    """The config that trains on the photo folder `root`, and why (its header comment).

    Args:
        root: a folder of class folders, or of split folders holding class folders; or a flat
            folder (or train/ folder) of files all named <class>.<id>.<ext>.
        model: a builder name (convnet, airbench, ...) or a keras.applications backbone
            (Xception, ResNet50V2, ...); default as the module says.

    Returns:
        The config as a dict (what a YAML file would read), with the reasons of its choices
        under "_why" (a list of lines; load_config does not take that key).

    Raises:
        DataError: the folder is not a usable image folder (the message names the fix).
        ConfigError: an unknown `model`.
    """
    from cnnlab.data.image_dir import scan_folder
    from cnnlab.utils.errors import DataError

    root = Path(root).expanduser().resolve()
    try:
        listing = scan_folder(root)
    except DataError as e:
        inner = getattr(e, "inner_root", None)
        if inner is None:
            raise
        raise DataError(
            f"{str(e).partition('; set data.root to')[0]}; give that folder instead: "
            f"{shlex.quote(str(inner))}"
        ) from None
    count = sum(len(files) for files in listing.files.values())
    side = _median_side(listing)
    named = " named <class>.<id>.<ext>" if listing.from_names else ""
    why = [
        f"{root}: {count:,} photos{named} in {len(listing.classes)} classes "
        f"({', '.join(listing.classes[:8])}{', ...' if len(listing.classes) > 8 else ''}); "
        f"median short side {side} px"
    ]
    backbone = _backbone(model)
    if backbone is None and model is None and _weights_at_hand():
        backbone = BACKBONE
        why.append(f"{BACKBONE}'s ImageNet weights are in Keras' cache: fine-tuned in two phases")
    if backbone is not None:
        size = _clamp(side, BACKBONES[backbone][0], PRETRAINED_SIDE)
        model_cfg, train = _pretrained(backbone)
    else:
        size = _clamp(side, SMALLEST_SIDE, SCRATCH_SIDE)
        model_cfg, train = _from_scratch(model or "airbench", size)
        if model is None:
            why.append(
                f"no pretrained weights at hand ({BACKBONE_WEIGHTS} is not in "
                f"{_keras_models()}): the airbench BatchNorm convnet from scratch"
            )
    if size == side:
        why.append(f"image_size [{size}, {size}]: the photos' median short side")
    else:
        bound = "the most the model gains from" if side > size else "the least the model takes"
        why.append(f"image_size [{size}, {size}]: {bound} (the photos' median side is {side})")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.name).strip("-.") or "photos"
    return {
        "name": name if name[0].isalnum() else f"photos-{name}",
        "data": {"loader": "image_dir", "root": str(root), "image_size": [size, size]},
        "model": model_cfg,
        "train": train,
        "_why": why,
    }


def folder_yaml(root: str | Path, model: str | None = None) -> str:
    """folder_config as a commented YAML file: what `cnnlab init DIR` writes."""
    config = folder_config(root, model)
    why = config.pop("_why")
    header = [
        f"# Written by `cnnlab init {config['data']['root']}`: edit it, then",
        "#   cnnlab check THIS_FILE --preview    (splits, bad files, the augmented batch)",
        "#   cnnlab train THIS_FILE",
        *(f"# {line}" for line in why),
        "# Every key: the configuration reference (docs/configuration.md).",
    ]
    body = yaml.dump(config, Dumper=_FlowLists, sort_keys=False, width=100)
    return "\n".join(header) + "\n" + body


class _FlowLists(yaml.SafeDumper):
    """Lists of values on one line (`image_size: [128, 128]`), everything else as blocks."""


def _list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    scalars = not any(isinstance(item, dict | list) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=scalars)


_FlowLists.add_representer(list, _list)


def is_folder_config(config: object) -> bool:
    """Whether `config` names a folder (of photos) rather than a YAML file."""
    return isinstance(config, str | os.PathLike) and Path(config).expanduser().is_dir()


def _backbone(model: str | None) -> str | None:
    """The backbone `model` names, None for a builder (or no model); an error for neither."""
    if model is None or model in MODEL_SCHEMAS and model != "pretrained":
        return None
    if model in BACKBONES:
        return model
    known = [*BACKBONES, *(n for n in MODEL_SCHEMAS if n != "pretrained")]
    close = difflib.get_close_matches(model, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(
        f"--model {model}: not a builder or a keras.applications backbone; {hint}(builders: "
        f"{', '.join(n for n in MODEL_SCHEMAS if n != 'pretrained')}; backbones: "
        f"{', '.join(BACKBONES)})"
    )


def _pretrained(backbone: str) -> tuple[dict, dict]:
    """Chollet's fine-tuning: the head on the frozen base, then the whole base at a low rate."""
    model = {
        "builder": "pretrained", "backbone": backbone, "weights": "imagenet", "pooling": "avg",
        "dropout": 0.25, "augmentation": AUGMENTATION,
    }  # fmt: skip
    train = {
        "batch_size": 32, "optimizer": "adam", "monitor": "val_loss",
        "phases": [
            {"name": "head", "epochs": 10, "learning_rate": 1e-3,
             "early_stopping": {"patience": 3}},
            {"name": "finetune", "epochs": 10, "unfreeze": "all", "learning_rate": 1e-5,
             "early_stopping": {"patience": 3}},
        ],
    }  # fmt: skip
    return model, train


def _from_scratch(builder: str, size: int) -> tuple[dict, dict]:
    """catsdogs_best.yaml's recipe for airbench (four blocks from 96 px, three below); the
    builder's own defaults, with the same augmentation and training, for another builder."""
    model: dict[str, Any] = {"builder": builder, "augmentation": AUGMENTATION}
    if builder == "airbench":
        model["filters"] = [32, 64, 128, 256] if size >= 96 else [32, 64, 128]
        model["tta"] = "horizontal_flip"
    train = {
        "epochs": 60, "time_budget": "60m", "batch_size": 32, "optimizer": "adam",
        "learning_rate": 1e-3, "weight_decay": 0.3, "lr_schedule": "cosine",
        "label_smoothing": 0.1, "monitor": "val_accuracy", "early_stopping": None,
    }  # fmt: skip
    return model, train


def _median_side(listing) -> int:
    """The median short side of up to SAMPLED photos spread over the folder (headers only)."""
    from PIL import Image

    paths = [path for files in listing.files.values() for path, _ in files]
    step = max(1, len(paths) // SAMPLED)
    sides = []
    for path in paths[::step][:SAMPLED]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except (OSError, ValueError, SyntaxError):
            continue  # the loader lists unusable files; a size is all that is wanted here
    if not sides:
        raise ConfigError(f"{listing.folders['train']}: no photo's size could be read")
    return int(statistics.median(sides))


def _clamp(side: int, low: int, high: int) -> int:
    return max(low, min(side, high))


def _keras_models() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _weights_at_hand() -> bool:
    return (_keras_models() / BACKBONE_WEIGHTS).is_file()
