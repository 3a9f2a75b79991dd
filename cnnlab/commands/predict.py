"""Predictions of a run, or the average of several (an ensemble): Kaggle submissions
(`ImageId,Label` for every row of an unlabelled CSV) and class probabilities of image files."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlab.data import adapt_images, read_csv_for
from cnnlab.data.dataset import above
from cnnlab.data.images import collect_image_files, decode_files
from cnnlab.data.kaggle_csv import write_submission
from cnnlab.inference import (
    Member,
    decoding,
    ensemble_probabilities,
    ensemble_thresholds,
    load_members,
    member_probabilities,
)
from cnnlab.models.common import output_classes
from cnnlab.runs import (
    ENSEMBLE_SUBMISSION,
    RunDir,
    open_run,
)
from cnnlab.utils.atomic import atomic_path, check_output
from cnnlab.utils.console import progress
from cnnlab.utils.errors import DataError

CHUNK = 2048  # images decoded and predicted at a time by `predict`


def predict_csv(
    run_dirs: list[str | Path],
    csv_in: Path,
    csv_out: Path | None = None,
    overwrite: bool = False,
) -> tuple[Path, int]:
    """Predict a label for every row of `csv_in` with a run's best model, or several runs'.

    Args:
        run_dirs: directories made by `cnnlab train`; with more than one, their class
            probabilities are averaged.
        csv_in: Kaggle-format pixels (a `label` column, if present, is ignored).
        csv_out: where to write; default `<run_dir>/submission.csv` for one run,
            `submission-ensemble.csv` in the working directory for several.
        overwrite: replace an existing `csv_out`.

    Returns:
        The path written and the number of rows.
    """
    run_dirs = [open_run(run_dir)[0] for run_dir in run_dirs]
    if csv_out is not None:
        out = Path(csv_out)
    else:
        out = RunDir(run_dirs[0]).submission if len(run_dirs) == 1 else Path(ENSEMBLE_SUBMISSION)
    check_output(out, overwrite)
    members = load_members(run_dirs)
    first = members[0]
    x, _ = read_csv_for(first.cfg.data, csv_in, output_classes(first.model), require_label=False)
    write_submission(np.mean(member_probabilities(members, x), axis=0).argmax(axis=1), out)
    return out, len(x)


class Predictions(NamedTuple):
    """What `cnnlab predict` made: the table, where it was written, and what was left out."""

    frame: object  # pandas DataFrame: path, predicted, probability, one column per class
    out: Path | None
    skipped: list[tuple[str, str]]  # (path, reason) of files that could not be read
    ignored: int  # files in the folders given that are not images by their extension


def predict_images(
    run_dirs: list[str | Path],
    inputs: list[str],
    out: Path | None = None,
    overwrite: bool = False,
) -> Predictions:
    """Classify image files with a run's best model, or the average of several runs'.

    Args:
        run_dirs: directories made by `cnnlab train`.
        inputs: image files, folders (searched recursively) and glob patterns.
        out: the CSV to write (path, predicted class, its probability, one column per
            class); None writes nothing.
        overwrite: replace an existing `out`.

    Each image is decoded as the run's training images were (size, colour mode, resampling,
    EXIF orientation) and predicted with the run's test-time augmentation.
    """
    if out is not None:
        check_output(out, overwrite)
    members = load_members(run_dirs)
    paths, ignored = collect_image_files(inputs)
    read, mean, skipped = file_probabilities(members, paths)
    if not read:
        path, reason = min(skipped)
        raise DataError(
            f"none of the {len(paths):,} image files could be read (first: {path}: {reason})"
        )
    frame = prediction_frame(
        read, mean, members[0].class_names, ensemble_thresholds(members), tag_separator(members)
    )
    if out is not None:
        with atomic_path(out) as tmp:
            frame.to_csv(tmp, index=False)
    return Predictions(frame, out, sorted(skipped), ignored)


def file_probabilities(
    members: list[Member], paths: list[Path]
) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """The members' mean class probabilities for the image files in `paths`, decoded a chunk
    at a time with progress shown.

    Returns:
        The files read (as strings, in the order of `paths`), their probabilities (rows in
        that order) and (path, reason) for the files that could not be read.
    """
    means, read, skipped = [], [], []
    # A chunk at a time, so that any number of photos fits in memory.
    with progress("predicting", len(paths)) as advance:
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start : start + CHUNK]
            probs, ok, bad = _member_probabilities(members, chunk)
            if ok.any():
                means.append(np.mean(probs, axis=0))
                read.extend(str(path) for path, good in zip(chunk, ok, strict=True) if good)
            skipped.extend(bad)
            advance(len(chunk))
    classes = len(members[0].class_names)
    mean = np.concatenate(means) if means else np.empty((0, classes))
    return read, mean, skipped


def tags(
    probs: np.ndarray, thresholds: np.ndarray, names: list[str], separator: str = " "
) -> list[str]:
    """Several labels per image: the classes at or above their threshold, in class order,
    joined by `separator` (the run's data.tags_separator; "" for none)."""
    chosen = above(probs, thresholds)
    return [separator.join(n for n, on in zip(names, row, strict=True) if on) for row in chosen]


def predict_pictures(run_dirs: list[str | Path], pictures: list, names: list[str]):
    """Class probabilities of images held in memory (PIL images or uint8 arrays), decoded as
    `predict_images` decodes files: the table it makes, with `names` as the paths."""
    import io

    from PIL import Image

    from cnnlab.data.images import Unusable, read_image

    members = load_members(run_dirs)
    encoded = []
    for name, picture in zip(names, pictures, strict=True):
        if isinstance(picture, np.ndarray):
            if picture.dtype != np.uint8 or picture.ndim not in (2, 3):
                raise DataError(
                    f"{name}: an image array must be uint8 pixels of shape (height, width) or "
                    f"(height, width, channels), not {picture.dtype} {picture.shape}"
                )
            squeezed = picture[..., 0] if picture.ndim == 3 and picture.shape[-1] == 1 else picture
            picture = Image.fromarray(squeezed)
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")  # lossless: decoded below as an uploaded file is
        encoded.append(buffer.getvalue())
    decoded = {}
    for member in members:
        key = decoding(member)
        if key not in decoded:
            try:
                x = np.stack([read_image(data, key[0]) for data in encoded])
            except Unusable as e:
                raise DataError(f"an image cannot be used: {e}") from None
            decoded[key] = adapt_images(x, member.cfg.data)
    mean = np.mean(ensemble_probabilities(members, decoded), axis=0)
    return prediction_frame(
        names, mean, members[0].class_names, ensemble_thresholds(members), tag_separator(members)
    )


def tag_separator(members: list[Member]) -> str:
    """What joins a several-labels run's classes in one cell: its data.tags_separator (a
    tags column's own), else a space."""
    return getattr(members[0].cfg.data, "tags_separator", " ")


def prediction_frame(
    paths: list[str],
    mean: np.ndarray,
    names: list[str],
    thresholds: np.ndarray | None = None,
    separator: str = " ",
):
    """The predictions table: path, predicted class, its probability, one column per class
    (p_<name> where a class is named like one of the first three columns).

    With `thresholds` (several labels per image), `predicted` holds the classes that reach
    their threshold, joined by `separator` (see `tags`), and `probability` the highest one.
    """
    import pandas as pd

    if thresholds is None:
        predicted = [names[i] for i in mean.argmax(axis=1)]
    else:
        predicted = tags(mean, thresholds, names, separator)
    frame = pd.DataFrame({"path": paths, "predicted": predicted})
    frame["probability"] = mean.max(axis=1).round(6)
    taken = set(frame.columns)
    for i, name in enumerate(names):
        frame[f"p_{name}" if name in taken else name] = mean[:, i].round(6)
    return frame


def _member_probabilities(
    members: list[Member], paths: list[Path]
) -> tuple[list[np.ndarray], np.ndarray, list[tuple[str, str]]]:
    """Each member's probabilities for the files every member could read: the files are
    decoded once per distinct way the members' training data was decoded."""
    decoded: dict = {}
    for member in members:
        key = decoding(member)
        if key not in decoded:
            x, ok, bad, _ = decode_files(paths, key[0])
            decoded[key] = (adapt_images(x, member.cfg.data), ok, bad)
    ok = np.logical_and.reduce([good for _, good, _ in decoded.values()])
    skipped = sorted({problem for _, _, bad in decoded.values() for problem in bad})
    if not ok.any():
        return [], ok, skipped
    # Rows of each x are the files its format could read; keep those every member read.
    common = {key: x[ok[good]] for key, (x, good, _) in decoded.items()}
    return ensemble_probabilities(members, common), ok, skipped
