"""What the loaders of image files (image_dir, image_csv) share: every listed file decoded once
and cached, and the train/validation/test splits made from what the data gives and the config
asks.

Decoded images are cached (cnnlab.data.cache) under a key made of each split's files (names
relative to the data's root, sizes, modification times) and the decoding settings; labels are
not in the key, so relabelling a CSV decodes nothing again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from cnnlab.config.images import ImageFileData
from cnnlab.data.cache import load_arrays, store_arrays
from cnnlab.data.dataset import Dataset, split_indices
from cnnlab.data.images import ImageFormat, decode_files

SPLITS = ("train", "validation", "test")  # as loaders name them; Dataset's are train, val, test
Stats = list[tuple[int, int]]  # (size, mtime_ns) of each file of a split


def file_stats(paths: list[Path]) -> tuple[list[Path], Stats, list[tuple[str, str]]]:
    """The paths that can be stat-ed, their (size, mtime_ns), and (path, reason) for the others."""
    kept, stats, problems = [], [], []
    for path in paths:
        try:
            stat = path.stat()
        except OSError as e:
            problems.append((str(path), f"unreadable ({e.strerror})"))
            continue
        kept.append(path)
        stats.append((stat.st_size, stat.st_mtime_ns))
    return kept, stats, problems


def decode_splits(
    files: dict[str, list[Path]], stats: dict[str, Stats], root: Path, fmt: ImageFormat
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[tuple[str, str]], dict]:
    """Each split's decoded images and which of its files they are (a mask), the files that
    failed, and each split's `originals` (Dataset.originals: the decoded files' sizes and modes
    as stored), from the cache when the same files (names, sizes, modification times) were
    decoded the same way before.

    Args:
        files: split -> its image files, under `root`.
        stats: split -> (size, mtime_ns) of each of its files (file_stats).
        root: the folder the files' names in the cache key are relative to.
        fmt: how every file is decoded.
    """
    key = _cache_key(files, stats, root, fmt)
    cached = load_arrays("images", key)
    if cached is None:
        cached = {}
        problems: list[tuple[str, str]] = []
        for split, paths in files.items():
            images, ok, bad, stored = decode_files(paths, fmt, f"decoding {split} images")
            cached[f"x_{split}"], cached[f"ok_{split}"] = images, ok
            cached[f"size_{split}"] = np.array([o[:2] for o in stored], np.int32).reshape(-1, 2)
            cached[f"mode_{split}"] = np.array([o.mode for o in stored], str)
            problems.extend(bad)
        cached["bad_paths"] = np.array([os.path.relpath(p, root) for p, _ in problems], str)
        cached["bad_reasons"] = np.array([reason for _, reason in problems], str)
        store_arrays("images", key, cached)
    decoded, originals = {}, {}
    for split in files:
        decoded[split] = (cached[f"x_{split}"], cached[f"ok_{split}"].astype(bool))
        size, mode = cached[f"size_{split}"], cached[f"mode_{split}"]
        originals[split] = {"width": size[:, 0], "height": size[:, 1], "mode": mode}
    bad = [
        (str(root / path), str(reason))
        for path, reason in zip(cached["bad_paths"], cached["bad_reasons"], strict=True)
    ]
    return decoded, bad, originals


def _cache_key(
    files: dict[str, list[Path]], stats: dict[str, Stats], root: Path, fmt: ImageFormat
) -> str:
    described = {
        # What an entry holds and how it was decoded: 2 added the files' sizes and modes as
        # stored, 3 scales 16-bit grayscale to 8 bits (2 clipped it), 4 has the resize mode
        # in the format (squash, crop, pad: each its own entry), 5 leaves the labels out (a
        # file's pixels do not depend on them).
        "version": 5,
        "format": list(fmt),
        "files": {
            split: [
                [os.path.relpath(path, root), *stat]
                for path, stat in zip(paths, stats[split], strict=True)
            ]
            for split, paths in files.items()
        },
    }
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:40]


def split_dataset(
    cfg: ImageFileData,
    seed: int,
    decoded: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    stored: dict[str, dict[str, np.ndarray]],
    source: dict[str, str],
    classes: list[str],
    problems: list[tuple[str, str]],
    described: str,
) -> Dataset:
    """The Dataset of decoded image files: the data's own splits, and the validation and test
    sets the config takes from train where the data has none (seeded; stratified by class for
    one label per image, a seeded shuffle for several).

    Args:
        cfg: the loader's config (validation_split, test_split).
        seed: the run's seed.
        decoded: split (SPLITS) -> its images, labels (int32 (N,) or uint8 (N, classes)) and
            names (each image's file, relative to the data's root), for the splits the data has;
            train always.
        stored: split -> Dataset.originals of its images.
        source: split -> where the data's own splits came from; the taken ones are added.
        classes: the class names.
        problems: the files left out, (path, reason).
        described: what the data is, the start of Dataset.source ("image folders").
    """
    x, y, names = decoded["train"]
    rows = np.arange(len(x))  # which of train's decoded images each image of x is
    source = dict(source)
    x_test = y_test = None
    origins, originals = {}, {}

    def of_train(split: str, picked: np.ndarray) -> None:
        origins[split] = names[picked]
        originals[split] = {key: values[picked] for key, values in stored["train"].items()}

    if "test" in decoded:
        x_test, y_test, origins["test"] = decoded["test"]
        originals["test"] = stored["test"]
    elif cfg.test_split:
        kept, held = split_indices(y, cfg.test_split, seed)
        x, y, x_test, y_test = x[kept], y[kept], x[held], y[held]
        of_train("test", rows[held])
        rows = rows[kept]
        source["test"] = f"{cfg.test_split:.0%} of train"
    if "validation" in decoded:
        x_val, y_val, origins["val"] = decoded["validation"]
        originals["val"] = stored["validation"]
    else:
        kept, held = split_indices(y, cfg.validation_split, seed)
        x, y, x_val, y_val = x[kept], y[kept], x[held], y[held]
        of_train("val", rows[held])
        rows = rows[kept]
        # Taken from what the test split left: 0.15 and 0.15 of 1,000 give 150 test, 128 val.
        rest = " after the test split" if "test" not in decoded and cfg.test_split else ""
        source["validation"] = f"{cfg.validation_split:.0%} of train{rest}"
    of_train("train", rows)
    listed = ", ".join(f"{s} <- {source[s]}" for s in SPLITS if s in source)
    return Dataset(
        x, y, x_val, y_val, x_test, y_test, classes, problems=problems,
        source=f"{described}: {listed}", origins=origins, originals=originals,
    )  # fmt: skip


def relative_names(paths: list[Path], root: Path, ok: np.ndarray) -> np.ndarray:
    """The names under `root` of the decoded ones (`ok`) of `paths`."""
    return np.array([os.path.relpath(p, root) for p in paths], str)[ok]
