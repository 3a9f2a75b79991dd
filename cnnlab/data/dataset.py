"""The in-memory dataset every loader returns, the steps loaders share (subset, seeded
validation split), and the list of input files a loader could not use."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from cnnlab.utils.errors import DataError

Arrays = tuple[np.ndarray, np.ndarray]


class BadFilesError(DataError):
    """Unusable input files were found and the config says to stop; `problems` lists them
    as (path, reason) pairs."""

    def __init__(self, message: str, problems: list[tuple[str, str]]):
        super().__init__(message)
        self.problems = problems


def describe_problems(problems: list[tuple[str, str]]) -> str:
    """'3 unusable files (2 empty file, 1 damaged image): a.jpg, b.jpg, c.jpg'."""
    kinds = Counter(reason.split(" (")[0] for _, reason in problems)
    counted = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    shown = ", ".join(path for path, _ in problems[:3])
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    noun = "file" if len(problems) == 1 else "files"
    return f"{len(problems)} unusable {noun} ({counted}): {shown}{more}"


@dataclass
class Dataset:
    """Images as uint8 (N, H, W, C) arrays (scaling happens inside the model) and labels: int
    class indices (N,), or, with several labels per image, 0/1 uint8 arrays (N, classes).

    `y_test` is None when the test images carry no labels (a Kaggle test.csv). `problems`
    lists (path, reason) for input files left out (image folders with on_bad_file: skip);
    `source` says where each split came from when the loader had a choice (image folders).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str]
    problems: list[tuple[str, str]] = field(default_factory=list)
    source: str | None = None
    # Where each image of a split came from (a file's path, "train row 17" of a loader's
    # arrays), for data health's lists; a split without an entry is named "<split> #i".
    origins: dict[str, np.ndarray] = field(default_factory=dict)
    # The files as stored, for image folders: per split, arrays "width", "height" (upright) and
    # "mode" (Pillow's: RGB, L, RGBA, P, CMYK...) aligned with its images. Loaders of arrays
    # (MNIST, CIFAR, CSV) have none: their images are stored at the size they are used.
    originals: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def origin(self, split: str, i: int) -> str:
        names = self.origins.get(split)
        return str(names[i]) if names is not None and i < len(names) else f"{split} #{i}"

    def split(self, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(images, labels) of split `name`: train, val or test."""
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def set_split(self, name: str, x: np.ndarray, y: np.ndarray | None) -> None:
        """Replace the images and labels of split `name`: train, val or test."""
        setattr(self, f"x_{name}", x)
        setattr(self, f"y_{name}", y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def nbytes(self) -> int:
        """Memory the images of every split take."""
        return sum(x.nbytes for x in (self.x_train, self.x_val, self.x_test) if x is not None)

    @property
    def multi_label(self) -> bool:
        """Several labels per image: labels are (N, classes) 0/1 arrays."""
        return self.y_train is not None and self.y_train.ndim == 2

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def check_labels(self, num_classes: int) -> None:
        """Refuse labels the model cannot output, before any training time is spent."""
        for split, y in (
            ("train", self.y_train),
            ("validation", self.y_val),
            ("test", self.y_test),
        ):
            if y is None or not len(y):
                continue
            if y.ndim == 2:  # several labels per image: a 0/1 column per class
                if y.shape[1] != num_classes:
                    raise DataError(
                        f"{split} labels have {y.shape[1]} classes, but the model has "
                        f"{num_classes} outputs"
                    )
                if not np.isin(y, (0, 1)).all():
                    raise DataError(f"{split} labels hold values other than 0 and 1")
            elif y.min() < 0 or y.max() >= num_classes:
                raise DataError(
                    f"{split} labels run from {y.min()} to {y.max()}, but the model has "
                    f"{num_classes} outputs (classes 0-{num_classes - 1})"
                )


def label_text(label: np.ndarray, class_names: list[str]) -> str:
    """A label as words: its class, or the classes of a 0/1 row joined by '+' ('none')."""
    if np.ndim(label) == 0:
        return class_names[int(label)]
    return "+".join(class_names[i] for i in np.flatnonzero(label)) or "none"


def above(probs: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """0/1 (int) per image and class: the probability is at least the class's threshold."""
    limits = np.full(probs.shape[1], 0.5) if thresholds is None else np.asarray(thresholds)
    return (probs >= limits).astype(np.int64)


IMBALANCE = 3.0  # the largest class over the smallest above which `check` and `train` warn


def label_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Images per class: of each class index (N,), or carrying each label (N, classes)."""
    if y.ndim == 2:
        return y.sum(axis=0, dtype=np.int64)
    return np.bincount(y, minlength=num_classes)


def imbalance(y: np.ndarray, class_names: list[str]) -> str | None:
    """A warning when the largest class of `y` has over IMBALANCE times the images of the
    smallest (with several labels per image: the images carrying each label), naming both and
    what compensates; None otherwise."""
    counts = label_counts(y, len(class_names))
    small, large = int(counts.argmin()), int(counts.argmax())
    if counts[small] * IMBALANCE >= counts[large]:
        return None
    ratio = f"{counts[large] / counts[small]:.1f}x" if counts[small] else "no images of one"
    if y.ndim == 2:
        return (
            f"imbalanced labels in train: {class_names[large]} on {counts[large]:,} images "
            f"against {class_names[small]} on {counts[small]:,} ({ratio}): set "
            "train.class_weight: balanced or data.sampling: balanced, and read each label's F1 "
            "and the mean average precision"
        )
    return (
        f"imbalanced classes in train: {class_names[large]} {counts[large]:,} against "
        f"{class_names[small]} {counts[small]:,} ({ratio}); accuracy favours the large class: "
        "set train.class_weight: balanced or data.sampling: balanced, and read macro-F1"
    )


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out `fraction` of (x, y), stratified by label, the same way for the same seed.

    Returns:
        x_train, y_train, x_val, y_val.
    """
    kept, held = split_indices(y, fraction, seed)
    return x[kept], y[kept], x[held], y[held]


def split_indices(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The indices split_validation keeps and holds out: stratified by class for class indices
    (N,), a seeded shuffle for several labels per image (N, classes)."""
    from sklearn.model_selection import train_test_split

    n_val = int(np.ceil(fraction * len(y)))
    if n_val < 1 or n_val >= len(y):
        raise DataError(
            f"validation_split={fraction} of {len(y)} images leaves no validation or training data"
        )
    # Stratifying needs two images of each class and one validation slot per class; tiny
    # quick-run subsets may have neither, and then a plain seeded shuffle is the honest split.
    # Several labels per image have no one class to stratify by (scikit-learn would take each
    # combination of labels as a class): a seeded shuffle too.
    stratify = None
    if y.ndim == 1:
        _, counts = np.unique(y, return_counts=True)
        stratify = y if counts.min() >= 2 and n_val >= len(counts) else None
    kept, held = train_test_split(
        np.arange(len(y)), test_size=n_val, random_state=seed, stratify=stratify
    )
    return kept, held


def from_arrays(
    cfg,
    seed: int,
    train: Arrays,
    test: tuple[np.ndarray | None, np.ndarray | None],
    class_names: list[str],
    validation: Arrays | None = None,
) -> Dataset:
    """The Dataset of a fixed-size loader: the first `cfg.max_samples` images of train and test
    (quick runs), and `validation`, or else a seeded `cfg.validation_split` of train."""
    (x, y), (x_test, y_test) = train, test
    if cfg.max_samples:
        x, y = x[: cfg.max_samples], y[: cfg.max_samples]
        if x_test is not None:
            x_test = x_test[: cfg.max_samples]
            y_test = None if y_test is None else y_test[: cfg.max_samples]
    rows = np.array([f"train row {i + 1}" for i in range(len(x))])
    origins = {}
    if x_test is not None:
        origins["test"] = np.array([f"test row {i + 1}" for i in range(len(x_test))])
    if validation is None:
        kept, held = split_indices(y, cfg.validation_split, seed)
        x, y, x_val, y_val = x[kept], y[kept], x[held], y[held]
        origins.update(train=rows[kept], val=rows[held])
    else:
        x_val, y_val = validation
        origins.update(
            train=rows, val=np.array([f"validation row {i + 1}" for i in range(len(x_val))])
        )
    return Dataset(x, y, x_val, y_val, x_test, y_test, class_names, origins=origins)


def adapt_images(x: np.ndarray, data_cfg) -> np.ndarray:
    """Images as a data config's `resize` (bilinear) and `to_rgb` options ask, still uint8.

    Applied to every split a loader returns and, the same way, to CSVs at predict time;
    configs without those options (image_dir) leave the images as they are.
    """
    resize = getattr(data_cfg, "resize", None)
    to_rgb = getattr(data_cfg, "to_rgb", False)
    if to_rgb:
        x = np.repeat(x, 3, axis=-1)
    if resize is not None and tuple(resize) != x.shape[1:3]:
        import keras

        out = np.empty((len(x), *resize, x.shape[-1]), np.uint8)
        for start in range(0, len(x), 4096):  # bounded float32 memory
            part = keras.ops.image.resize(
                x[start : start + 4096].astype(np.float32), resize, interpolation="bilinear"
            )
            out[start : start + 4096] = np.clip(np.round(keras.ops.convert_to_numpy(part)), 0, 255)
        x = out
    return x
