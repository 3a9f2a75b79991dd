"""A run's plots and per-class files: learning curves, per-class results, the most confused
pairs, the worst mistakes, the augmented batch and leaked pairs. Figures are drawn without
pyplot, so nothing opens a window and a notebook keeps its own backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cnnlab import runs
from cnnlab.utils.atomic import atomic_path, atomic_write

PER_CLASS_COLUMNS = ["class", "precision", "recall", "f1", "support"]
CONFUSED_COLUMNS = ["actual", "predicted", "count"]
TILE = 192  # pixels: about the width of a tile of tile_images' grids in the PNG


def figure(**kwargs):
    """A matplotlib Figure drawn to files alone: no pyplot, so neither its global state nor
    its backend (a notebook's inline plots, a desktop's windows) is touched."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def plot_curves(history_csv: Path, out: Path, best_epoch: int | None = None) -> None:
    """Loss and accuracy per epoch, train vs validation, best epoch and phase starts marked."""
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    history = pd.read_csv(history_csv)
    epochs = history["epoch"] + 1
    # A phased run (e.g. frozen base, then fine-tuning) logs a `phase` column; mark where the
    # second and later phases begin (1-based epoch numbers).
    phase_starts: list[int] = []
    if "phase" in history and len(history):
        changed = history["phase"].ne(history["phase"].shift()).to_numpy()
        phase_starts = [int(e) for e in epochs[changed].iloc[1:]]
    fig = figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, history[metric], "o-", label="train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "s-", label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
        for n, start in enumerate(phase_starts):
            ax.axvline(
                start - 0.5, color="purple", linestyle=":", label="phase start" if not n else None
            )
            label = f"phase {history['phase'][start - 1]}"
            ax.annotate(
                label, (start - 0.5, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                textcoords="offset points", color="purple", fontsize=8,
            )  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss" if metric == "loss" else "accuracy (fraction correct)")
        ax.set_title(f"{metric.capitalize()} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(fig, out)


def most_confused(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], min_count: int = 1
) -> list[tuple[str, str, int]]:
    """The class pairs the model mixes up most (fastai's `most_confused`): the confusion
    matrix's cells off its diagonal, as (actual, predicted, count), largest count first.

    Args:
        min_count: leave out pairs seen fewer times (at least 1: pairs never confused are
            never listed).

    Returns:
        The pairs; equal counts keep the matrix's order (actual class, then predicted).
    """
    k = len(class_names)
    cells = np.asarray(y_true, np.int64) * k + np.asarray(y_pred, np.int64)
    counts = np.bincount(cells, minlength=k * k).reshape(k, k)
    np.fill_diagonal(counts, 0)
    actual, predicted = np.nonzero(counts >= max(1, min_count))  # row by row: the matrix's order
    order = np.argsort(-counts[actual, predicted], kind="stable")
    return [
        (class_names[a], class_names[p], int(counts[a, p]))
        for a, p in zip(actual[order], predicted[order], strict=True)
    ]


def write_class_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], run_dir: Path, split: str
) -> None:
    """per_class.csv, classification_report.txt, most_confused.csv and confusion_matrix.png
    for one split."""
    import pandas as pd
    from sklearn.metrics import ConfusionMatrixDisplay, classification_report

    labels = list(range(len(class_names)))
    text = classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, digits=4, zero_division=0
    )
    files = runs.RunDir(run_dir)
    atomic_write(files.class_report, f"Per-class results on the {split} set\n\n{text}")
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, output_dict=True, zero_division=0
    )
    rows = [
        {
            "class": name,
            "precision": report[name]["precision"],
            "recall": report[name]["recall"],
            "f1": report[name]["f1-score"],
            "support": int(report[name]["support"]),
        }
        for name in class_names
    ]
    atomic_write(files.per_class, pd.DataFrame(rows, columns=PER_CLASS_COLUMNS).to_csv(index=False))
    pairs = pd.DataFrame(most_confused(y_true, y_pred, class_names), columns=CONFUSED_COLUMNS)
    atomic_write(files.most_confused, pairs.to_csv(index=False))

    size = max(6.0, 0.5 * len(class_names))
    fig = figure(figsize=(size, size))
    ax = fig.subplots()
    # Names longer than a digit or two ("automobile", "airplane") would run into each other.
    rotation = 45 if max(len(name) for name in class_names) > 4 else "horizontal"
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=labels, display_labels=class_names, ax=ax, colorbar=False,
        cmap="Blues", values_format="d", xticks_rotation=rotation,
    )  # fmt: skip
    ax.set_title(f"Confusion matrix, {split} set ({len(y_true):,} images)")
    _save(fig, files.confusion)


def write_label_report(
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray,
    class_names: list[str],
    run_dir: Path,
    split: str,
) -> None:
    """Several labels per image: per_class.csv (each class's threshold, precision, recall and
    F1 at it, average precision, support) and classification_report.txt for one split."""
    import pandas as pd
    from sklearn.metrics import average_precision_score, classification_report

    from cnnlab.data.dataset import above

    y_pred = above(probs, thresholds)
    labels = list(range(len(class_names)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, output_dict=True, zero_division=0
    )
    text = classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, digits=4, zero_division=0
    )
    files = runs.RunDir(run_dir)
    atomic_write(
        files.class_report,
        f"Per-class results on the {split} set, each class at its threshold "
        f"({runs.THRESHOLDS_FILE})\n\n{text}",
    )
    rows = [
        {
            "class": name,
            "threshold": round(float(thresholds[k]), 6),
            "precision": report[name]["precision"],
            "recall": report[name]["recall"],
            "f1": report[name]["f1-score"],
            "average_precision": float(average_precision_score(y_true[:, k], probs[:, k]))
            if y_true[:, k].any()
            else None,
            "support": int(report[name]["support"]),
        }
        for k, name in enumerate(class_names)
    ]
    atomic_write(files.per_class, pd.DataFrame(rows).to_csv(index=False))


def plot_label_mistakes(
    x: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray,
    class_names: list[str],
    out: Path,
    split: str,
    count: int = 25,
) -> None:
    """Several labels per image: a grid of the images with the most wrong class decisions
    (the most confident first), their true and predicted classes."""
    from cnnlab.data.dataset import above, label_text

    y_pred = above(probs, thresholds)
    errors = (y_pred != y_true).sum(axis=1)
    # How far past its threshold each wrong decision was: the most confident mistakes first.
    margin = (np.abs(probs - thresholds) * (y_pred != y_true)).sum(axis=1)
    wrong = np.flatnonzero(errors)
    worst = wrong[np.lexsort((-margin[wrong], -errors[wrong]))][:count]
    labels = [
        f"true {label_text(y_true[i], class_names)}\npred {label_text(y_pred[i], class_names)}"
        for i in worst
    ]
    title = (
        f"Images with the most wrong classes, {split} set ({len(wrong):,} of {len(y_true):,} "
        "not exactly right)"
    )
    tile_images(x[worst], labels, out, title, empty="no mistakes")


def plot_misclassified(
    x: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    out: Path,
    split: str,
    count: int = 25,
    heatmaps=None,
) -> None:
    """A grid of the most confident wrong predictions: true and predicted label, confidence.

    `heatmaps(images, classes)`, when given, returns Grad-CAM maps (cnnlab.gradcam)
    of the predicted classes, drawn over the images.
    """
    y_pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    worst = wrong[np.argsort(-probs[wrong, y_pred[wrong]])][:count]
    images = x[worst]
    labels = [
        f"true {class_names[y_true[i]]}, pred {class_names[y_pred[i]]}\n"
        f"confidence {probs[i, y_pred[i]]:.0%}"
        for i in worst
    ]
    if heatmaps is not None and len(worst):
        from cnnlab.gradcam import enlarge, is_flat, overlay

        heat = heatmaps(images, y_pred[worst])
        # Drawn at about the tile's size in the PNG, so the map is upsampled smoothly here,
        # not in blocks by matplotlib.
        images = np.stack(
            [
                overlay(enlarge(image, TILE, 2 * TILE), h)
                for image, h in zip(images, heat, strict=True)
            ]
        )
        labels = [
            label + (", flat map" if is_flat(h) else "")
            for label, h in zip(labels, heat, strict=True)
        ]
    title = f"Most confident mistakes, {split} set ({len(wrong):,} of {len(y_true):,} wrong)"
    if heatmaps is not None:
        title += "; Grad-CAM of the predicted class, each map stretched"
    tile_images(images, labels, out, title, empty="no mistakes")


def plot_leaks(data, record: dict, out: Path, count: int = 12) -> bool:
    """The first copies across splits, each pair side by side under its origins; False (and
    no file) when there are none."""
    pictures, labels = [], []
    for key, found in record["leaks"].items():
        a, b = key.split("-")
        xa, xb = data.split(a)[0], data.split(b)[0]
        for (i, j), entry in zip(found["index_pairs"], found["listed"], strict=False):
            if len(pictures) == count:
                break
            pictures.append(np.concatenate([xa[i], xb[j]], axis=1))
            distance = entry["distance"]
            labels.append(f"{a} | {b}\n{'exact' if distance == 'exact' else f'{distance} bits'}")
    if not pictures:
        return False
    title = "Copies across splits (left: the earlier split's image)"
    tile_images(np.stack(pictures), labels, out, title, cols=4, column_in=2.6)
    return True


def plot_batch(images: np.ndarray, labels: list[str], out: Path, title: str) -> None:
    """A labelled grid of training images as the model receives them (runs.TRAIN_BATCH)."""
    tile_images(images, labels, out, title, cols=8, column_in=1.6)


def tile_images(
    images: np.ndarray, labels: list[str], out: Path, title: str, cols: int = 5,
    column_in: float = 2.2, empty: str = "no images",
) -> None:  # fmt: skip
    """uint8 images (N, H, W, C) in a grid, each under its label (one or two lines)."""
    rows = max(1, -(-len(images) // cols))
    # The images are tiled into one picture on one set of axes: 25 axes of their own take
    # seconds to lay out and draw, at the end of every run.
    h, w, channels = images.shape[1:]
    px = w / (0.9 * column_in)  # image pixels per inch: a tile fills 90% of its column
    gap_x, gap_y = round(0.1 * column_in * px), round(0.6 * px)  # gap_y: the two-line label
    cell_w, cell_h = w + gap_x, h + gap_y
    canvas = np.full((rows * cell_h, cols * cell_w, channels), 255, dtype=np.uint8)
    tiles_in, title_in = rows * cell_h / px, 0.3
    fig = figure(figsize=(cols * column_in, tiles_in + title_in))
    ax = fig.add_axes((0, 0, 1, tiles_in / (tiles_in + title_in)))
    ax.axis("off")
    for n, (image, label) in enumerate(zip(images, labels, strict=True)):
        row, col = divmod(n, cols)
        top, left = row * cell_h + gap_y, col * cell_w + gap_x // 2
        canvas[top : top + h, left : left + w] = np.clip(image, 0, 255)
        ax.text(left + w / 2, top - 0.05 * px, label, ha="center", va="bottom", fontsize=9)
    ax.imshow(canvas[..., 0] if channels == 1 else canvas, cmap="gray", vmin=0, vmax=255)
    if not len(images):
        ax.text(canvas.shape[1] / 2, canvas.shape[0] / 2, empty, ha="center")
    fig.suptitle(title, y=0.995)
    _save(fig, out)


def write_run_reports(
    run_dir: Path, data, split: str, probs: np.ndarray, heatmaps=None, thresholds=None
) -> None:
    """Every per-run plot and report, from the class probabilities of `split` (val or test);
    `heatmaps` as plot_misclassified takes it; `thresholds` the per-class thresholds of a run
    with several labels per image."""
    x, y = data.split(split)
    name = "validation" if split == "val" else split
    files = runs.RunDir(run_dir)
    best = json.loads(files.metrics.read_text())["best_epoch"] if files.metrics.is_file() else None
    if files.history.is_file():
        plot_curves(files.history, files.curves, best)
    if y.ndim == 2:
        write_label_report(y, probs, thresholds, data.class_names, run_dir, name)
        plot_label_mistakes(x, y, probs, thresholds, data.class_names, files.misclassified, name)
    else:
        write_class_report(y, probs.argmax(axis=1), data.class_names, run_dir, name)
        plot_misclassified(x, y, probs, data.class_names, files.misclassified, name, 25, heatmaps)
    from cnnlab.reports.page import write_html_report

    write_html_report(run_dir)
