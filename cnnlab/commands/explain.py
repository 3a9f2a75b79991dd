"""`cnnlab explain`: Grad-CAM (cnnlab.gradcam) for image files with a run's best model.

The heatmap is of the predicted class or `--class` (with several labels per image: of each
class at or above its threshold, a PNG each), at the last convolutional feature map or
`--layer`; the class's score is its probability before TTA. Images are decoded as
`cnnlab predict` decodes them; each PNG shows the file itself (upright, at its own size up to
MAX_SIDE, small ones enlarged) beside the heatmap drawn over it (cnnlab.gradcam.overlay).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.gradcam import enlarge, feature_layer, gradcam, is_flat, overlay, spread
from cnnlab.runs import RunDir
from cnnlab.utils.errors import CnnlabError, RunDirError

SHEET = "gradcam.png"
MAX_SIDE = 512  # the long side of each picture of an image's PNG, at most
VIEW = 224  # small images (MNIST, CIFAR) are enlarged to at least this many pixels high
GAP = 8  # white pixels between the photo and its heatmap
BAND = 48  # the title band above them: two lines of FONT_PX
FONT_PX = 15
TILE = 192  # the contact sheet's tiles, square


def explain_images(
    run_dir: Path, inputs: list[str], out: Path | None, class_name: str | None,
    layer_name: str | None, overwrite: bool = False,
) -> dict:  # fmt: skip
    """Grad-CAM for image files with a run's best model: a PNG per image (the photo at its
    own size beside its heatmap, under a title band) and a contact sheet.

    Returns:
        {"folder", "layer", "images": [(path, predicted, probability, explained class, png)],
        "skipped": [(path, reason)]}
    """
    from cnnlab.data import adapt_images
    from cnnlab.data.dataset import above
    from cnnlab.data.images import collect_image_files, decode_files
    from cnnlab.inference import class_probabilities, load_members, member_thresholds
    from cnnlab.reports import tile_images

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
    thresholds = member_thresholds(member)
    sheet = folder / SHEET
    if thresholds is None or target is not None:  # one PNG per image, named before decoding
        _refuse_taken([folder / f"{Path(p).stem}-gradcam.png" for p in paths], sheet, overwrite)
    x, ok, skipped, _ = decode_files(paths, member.cfg.data.image_format)
    if not ok.any():
        raise CnnlabError(f"none of the {len(paths)} image files could be read: {skipped[0][1]}")
    x = adapt_images(x, member.cfg.data)
    probs = class_probabilities(model, x, member.cfg.model.tta)
    predicted = probs.argmax(axis=1)
    kept = [p for p, good in zip(paths, ok, strict=True) if good]
    # (image, class) pairs to explain: the predicted class or --class; with several labels
    # per image, each class at or above its threshold (the most probable when none is).
    if target is not None:
        pairs = [(i, target) for i in range(len(x))]
    elif thresholds is None:
        pairs = [(i, int(predicted[i])) for i in range(len(x))]
    else:
        # Drawn for the most probable class when none reaches its threshold.
        chosen = above(probs, thresholds).astype(bool)
        chosen[np.arange(len(x)), predicted] |= ~chosen.any(axis=1)
        pairs = [(i, int(k)) for i in range(len(x)) for k in np.flatnonzero(chosen[i])]
    per_class = thresholds is not None and target is None
    files = [
        folder / f"{Path(kept[i]).stem}{'-' + _safe(names[k]) if per_class else ''}-gradcam.png"
        for i, k in pairs
    ]
    if per_class:
        _refuse_taken(files, sheet, overwrite)
    images, classes = np.array([i for i, _ in pairs]), np.array([k for _, k in pairs])
    heat = np.concatenate(
        [
            gradcam(model, x[images[j : j + 32]], classes[j : j + 32], layer)
            for j in range(0, len(pairs), 32)
        ]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tiles, labels, rows = [], [], []
    for j, ((i, k), png) in enumerate(zip(pairs, files, strict=True)):
        path = kept[i]
        guess = (names[predicted[i]], float(probs[i, predicted[i]]))
        shown = None if k == predicted[i] else (names[k], float(probs[i, k]))
        picture = _write_png(png, path, x[i], heat[j], guess, shown, layer.name)
        tiles.append(_fit(picture, TILE))
        notes = [f"{guess[0]} {guess[1]:.0%}"]
        notes += [f"showing {shown[0]} {shown[1]:.0%}"] if shown else []
        notes += ["flat map"] if is_flat(heat[j]) else []
        labels.append(f"{_short(Path(path).name)}\n{', '.join(notes)}")
        rows.append((str(path), names[predicted[i]], float(probs[i, predicted[i]]),
                     names[k], str(png)))  # fmt: skip
    tile_images(
        np.stack(tiles), labels, sheet,
        f"{run_dir.name}: Grad-CAM at {layer.name}, predicted class and probability",
    )  # fmt: skip
    return {"folder": str(folder), "layer": layer.name, "images": rows, "skipped": skipped}


def _refuse_taken(files: list[Path], sheet: Path, overwrite: bool) -> None:
    """Refuse to replace an earlier explanation without `overwrite`."""
    taken = sorted(str(f) for f in (*files, sheet) if f.exists()) if not overwrite else []
    if taken:
        raise RunDirError(f"{taken[0]}: already exists; pass --overwrite to replace it")


def _safe(name: str) -> str:
    """A class name as part of a file name: characters other than letters, digits, '.', '-'
    and '_' become '_'."""
    import re

    return re.sub(r"[^\w.-]", "_", name)


def _write_png(
    png: Path, path: Path, decoded: np.ndarray, heat: np.ndarray, guess: tuple[str, float],
    shown: tuple[str, float] | None, layer: str,
) -> np.ndarray:  # fmt: skip
    """One image's PNG: the file as a person sees it beside the heatmap over it, under the
    prediction, the class explained when another, and what the colours stand for. Returns
    the heatmap picture."""
    from cnnlab.utils.atomic import atomic_path

    # The heatmap, made at the model's input size, is upsampled onto the photo: the model's
    # input is the whole photo, resized.
    photo = enlarge(_picture(path, decoded), VIEW, MAX_SIDE)
    picture = overlay(photo, heat)
    title = f"{Path(path).name}: {guess[0]} {guess[1]:.1%}"
    if shown is not None:
        title += f"; Grad-CAM of {shown[0]} ({shown[1]:.1%})"
    with atomic_path(png) as tmp:
        _labelled([photo, picture], [title, f"Grad-CAM at {layer}, {_range(heat)}"]).save(
            tmp, "PNG"
        )
    return picture


def _picture(path: Path, decoded: np.ndarray) -> np.ndarray:
    """The file as a person sees it; what the model took if it cannot be read again."""
    from cnnlab.data.images import Unusable, read_picture

    try:
        return read_picture(path, MAX_SIDE)
    except Unusable:
        return np.repeat(decoded, 3, axis=-1) if decoded.shape[-1] == 1 else decoded[..., :3]


def _range(heat: np.ndarray) -> str:
    """What the colours of a map stand for."""
    low, high = spread(heat)
    if heat.max() <= 0:
        return "flat map (0 everywhere): no region raises the class's score"
    if is_flat(heat):
        return f"flat map ({low:.0%}-{high:.0%} of its peak): no region stands out"
    return f"colours stretched over the map's {low:.0%}-{high:.0%} of its peak"


def _labelled(pictures: list[np.ndarray], lines: list[str]):
    """The pictures side by side under a white band (BAND pixels) with two `lines` of text, in
    a smaller font when they are wider than the pictures: a PIL image."""
    from PIL import Image, ImageDraw, ImageFont

    height = max(p.shape[0] for p in pictures)
    width = sum(p.shape[1] for p in pictures) + GAP * (len(pictures) - 1)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    for size in range(FONT_PX, 9, -1):
        font = ImageFont.load_default(size=size)
        text = max(measure.textlength(line, font=font) for line in lines) + 2 * GAP
        if text <= width:
            break
    canvas = Image.new("RGB", (max(width, round(text)), BAND + height), "white")
    left = (canvas.width - width) // 2  # a narrow image under a long title: centred
    for picture in pictures:
        canvas.paste(Image.fromarray(picture), (left, BAND))
        left += picture.shape[1] + GAP
    draw = ImageDraw.Draw(canvas)
    for n, line in enumerate(lines):
        colour = "black" if n == 0 else "dimgray"
        draw.text((GAP, 4 + n * (FONT_PX + 6)), line, fill=colour, font=font)
    return canvas


def _fit(picture: np.ndarray, side: int) -> np.ndarray:
    """A picture shrunk or enlarged (its shape kept) into a white side x side square."""
    from PIL import Image

    height, width = picture.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Whole pixels when enlarging (nothing invented), Lanczos when shrinking.
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    fitted = Image.fromarray(picture).resize(size, resample)
    square = Image.new("RGB", (side, side), "white")
    square.paste(fitted, ((side - size[0]) // 2, (side - size[1]) // 2))
    return np.asarray(square)


def _short(name: str, most: int = 26) -> str:
    return name if len(name) <= most else name[: most - 3] + "..."
