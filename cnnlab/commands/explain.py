"""`cnnlab explain`: Grad-CAM (cnnlab.gradcam) for image files with a run's best model.

The heatmap is of the predicted class or `--class`, at the last convolutional feature map or
`--layer`; the class's score is its probability before TTA. Images are decoded as
`cnnlab predict` decodes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.gradcam import feature_layer, gradcam, overlay
from cnnlab.runs import RunDir
from cnnlab.utils.errors import CnnlabError, RunDirError

SHEET = "gradcam.png"
VIEW = 224  # at least this many pixels high, each image's PNG


def explain_images(
    run_dir: Path, inputs: list[str], out: Path | None, class_name: str | None,
    layer_name: str | None, overwrite: bool = False,
) -> dict:  # fmt: skip
    """Grad-CAM for image files with a run's best model: a PNG per image and a contact sheet.

    Returns:
        {"folder", "layer", "images": [(path, predicted, probability, explained class, png)],
        "skipped": [(path, reason)]}
    """
    from PIL import Image

    from cnnlab.data import adapt_images
    from cnnlab.data.images import collect_image_files, decode_files
    from cnnlab.inference import class_probabilities, load_members
    from cnnlab.reports import tile_images
    from cnnlab.utils.atomic import atomic_path

    (member,) = load_members([run_dir])
    model, names = member.model, member.class_names
    layer = feature_layer(model, layer_name)
    target = None
    if class_name is not None:
        if class_name not in names:
            raise CnnlabError(f"--class {class_name}: not a class of the run ({', '.join(names)})")
        target = names.index(class_name)
    folder = out or RunDir(run_dir).explain
    paths, _ = collect_image_files(inputs)
    files = [folder / f"{Path(p).stem}-gradcam.png" for p in paths]
    sheet = folder / SHEET
    taken = sorted(str(f) for f in (*files, sheet) if f.exists()) if not overwrite else []
    if taken:
        raise RunDirError(f"{taken[0]}: already exists; pass --overwrite to replace it")
    x, ok, skipped, _ = decode_files(paths, member.cfg.data.image_format)
    if not ok.any():
        raise CnnlabError(f"none of the {len(paths)} image files could be read: {skipped[0][1]}")
    x = adapt_images(x, member.cfg.data)
    probs = class_probabilities(model, x, member.cfg.model.tta)
    predicted = probs.argmax(axis=1)
    classes = predicted if target is None else np.full(len(x), target)
    heat = np.concatenate(
        [gradcam(model, x[i : i + 32], classes[i : i + 32], layer) for i in range(0, len(x), 32)]
    )
    folder.mkdir(parents=True, exist_ok=True)
    shown, labels, rows = [], [], []
    kept = [(p, f) for (p, f), good in zip(zip(paths, files, strict=True), ok, strict=True) if good]
    for i, (path, png) in enumerate(kept):
        picture = overlay(x[i], heat[i])
        pair = Image.fromarray(np.concatenate([_rgb(x[i]), picture], axis=1))
        scale = max(1, VIEW // pair.height)  # small images (MNIST, CIFAR) enlarged to be seen
        pair = pair.resize((pair.width * scale, pair.height * scale), Image.Resampling.NEAREST)
        with atomic_path(png) as tmp:
            pair.save(tmp, "PNG")
        label = f"{names[predicted[i]]} {probs[i, predicted[i]]:.0%}"
        if target is not None:
            label += f"\nshowing {names[target]}"
        shown.append(picture)
        labels.append(label)
        rows.append((str(path), names[predicted[i]], float(probs[i, predicted[i]]),
                     names[classes[i]], str(png)))  # fmt: skip
    tile_images(
        np.stack(shown), labels, sheet,
        f"{run_dir.name}: Grad-CAM at {layer.name}, predicted class and probability",
    )  # fmt: skip
    return {"folder": str(folder), "layer": layer.name, "images": rows, "skipped": skipped}


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
