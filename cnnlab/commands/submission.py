"""A submission in a competition's own format: the rows and columns of its sample submission,
filled from a run's (or an ensemble's) predictions for a folder of test images.

The sample decides everything: its first column holds the ids (copied verbatim, in its order;
each names an image file of the folder), and its other columns say what to write:

- one column of integers or text: the predicted class, as the competition names it
  (`--label-map`), or, for a run with several labels per image, its tags, space-separated;
- one column of floats: the probability of the positive class of a two-class run;
- one column per class: probabilities (floats in the sample) or 0/1 (integers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlab.utils.errors import CnnlabError, DataError

CLIP = (0.005, 0.995)  # --clip: a log loss never pays more than -log(0.005) for one image
DIGITS = 6  # decimals written for a probability
_INTEGER = re.compile(r"[+-]?\d+")

# What a layout writes into the sample's columns.
LABELS = "labels"  # one column: the predicted class
TAGS = "tags"  # one column: the classes above their thresholds, space-separated
PROBABILITY = "probability"  # one column: P(positive class) of a two-class run
PROBABILITIES = "probabilities"  # one column per class: its probability
INDICATORS = "indicators"  # one column per class: 1 for the predicted classes, else 0


class Submission(NamedTuple):
    """What `cnnlab predict --sample-submission` made."""

    frame: object  # pandas DataFrame: the sample's rows and columns, filled
    out: Path | None
    notes: list[str]  # what the columns hold, where the sample leaves a choice


@dataclass
class Layout:
    """How the sample's columns are filled from class probabilities."""

    kind: str
    columns: list[str]  # the sample's columns to fill, in its order
    values: list[str]  # each class's name in the competition (--label-map applied)
    classes: list[int] = field(default_factory=list)  # per column: its class (or the positive)
    clip: bool = False
    notes: list[str] = field(default_factory=list)
    separator: str = " "  # what joins tags: the run's data.tags_separator


def read_table(path: Path, what: str):
    """A CSV of ids and values as text (cnnlab.data.tables.read_table: ids keep their spelling,
    `007`, `NA`), checked: two columns or more, no empty or repeated id."""
    from cnnlab.data.tables import read_table as read_text

    path = Path(path)
    frame = read_text(path)
    if frame.shape[1] < 2:
        raise DataError(f"{path}: row 1: {what} needs an id column and at least one more")
    ids, column = frame.iloc[:, 0], frame.columns[0]
    for bad, problem in ((ids == "", "empty id"), (ids.duplicated(), "")):
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            said = problem or f"id {ids.iloc[row]} appears twice"
            raise DataError(f"{path}: row {row + 2}, column '{column}': {said}")
    return frame


def value_kind(values) -> str:
    """'int' when every value is an integer, 'float' when every value is a number and some
    are not integers, else 'text'."""
    text = [str(v).strip() for v in values]
    if text and all(_INTEGER.fullmatch(v) for v in text):
        return "int"
    try:
        numbers = [float(v) for v in text]
    except ValueError:
        return "text"
    return "float" if text and all(np.isfinite(numbers)) else "text"


def parse_label_map(text: str) -> dict[str, str]:
    """'cat=0,dog=1' -> {'cat': '0', 'dog': '1'}."""
    found: dict[str, str] = {}
    for item in text.split(","):
        name, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not name or not value:
            raise CnnlabError(
                f"--label-map: {item.strip()!r} is not NAME=VALUE; write it as cat=0,dog=1"
            )
        if name in found:
            raise CnnlabError(f"--label-map: {name} is given twice")
        found[name] = value
    return found


def competition_names(names: list[str], label_map: dict[str, str] | None) -> list[str]:
    """The run's classes as the competition names them: through `label_map`, which must name
    every class of the run, each with its own value."""
    if label_map is None:
        return list(names)
    classes = f"the run's classes: {', '.join(names)}"
    unknown = [n for n in label_map if n not in names]
    if unknown:
        raise CnnlabError(f"--label-map: {unknown[0]} is not a class of the run ({classes})")
    unmapped = [n for n in names if n not in label_map]
    if unmapped:
        raise CnnlabError(f"--label-map: no value for {', '.join(unmapped)} ({classes})")
    seen: dict[str, str] = {}
    for name in names:
        value = label_map[name]
        if value in seen:
            raise CnnlabError(f"--label-map: {seen[value]} and {name} both map to {value}")
        seen[value] = name
    return [label_map[n] for n in names]


def plan_layout(
    sample,
    names: list[str],
    several_labels: bool,
    label_map: dict[str, str] | None = None,
    clip: bool = False,
    where: str = "the sample submission",
) -> Layout:
    """Decide how to fill `sample`'s columns (all but the first) for a run's classes, before
    anything is predicted.

    Args:
        sample: the sample submission (read_table).
        names: the run's class names, in the order of its outputs.
        several_labels: the run gives several labels per image (it has thresholds).
        label_map: the run's class names -> the competition's.
        clip: clip probabilities to CLIP.
        where: the sample's file, for messages.
    """
    columns = [str(c) for c in sample.columns[1:]]
    values = competition_names(names, label_map)
    if len(columns) == 1:
        (column,) = columns
        kind = value_kind(sample[column])
        if several_labels:
            layout = Layout(TAGS, columns, values)
        elif kind == "float":
            positive = _positive(names, values, label_map, where)
            layout = Layout(PROBABILITY, columns, values, [positive])
            if label_map is None and names != ["0", "1"]:  # 0/1 classes say it themselves
                layout.notes.append(
                    f"column {column}: the probability of {names[1]}, the run's second class "
                    f"(--label-map {names[0]}=0,{names[1]}=1 says which is 1)"
                )
        else:
            layout = Layout(LABELS, columns, values)
            if kind == "int" and value_kind(values) != "int":
                layout.notes.append(
                    f"column {column}: the sample holds integers, the run's classes are named "
                    f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}; "
                    "--label-map NAME=VALUE,... writes the competition's values"
                )
    else:
        if sorted(columns) != sorted(values):
            through = " through --label-map" if label_map is not None else ""
            raise DataError(
                f"{where}: row 1: columns {','.join(columns)} are neither one column to fill nor "
                f"one per class of the run ({','.join(values)}{through})"
            )
        kinds = {value_kind(sample[c]) for c in columns}
        if "text" in kinds:
            raise DataError(
                f"{where}: one column per class holds probabilities (floats) or 0/1 "
                "(integers), not text"
            )
        kind = PROBABILITIES if "float" in kinds else INDICATORS
        layout = Layout(kind, columns, values, [values.index(c) for c in columns])
    if clip and layout.kind not in (PROBABILITY, PROBABILITIES):
        held = {LABELS: "class labels", TAGS: "tags", INDICATORS: "0/1 per class"}[layout.kind]
        raise CnnlabError(f"--clip is for probabilities; {where} asks for {held}")
    layout.clip = clip
    return layout


def _positive(
    names: list[str], values: list[str], label_map: dict[str, str] | None, where: str
) -> int:
    """The class whose probability a one-column float sample asks for."""
    if len(names) != 2:
        raise DataError(
            f"{where}: one column of floats is the probability of one class of two; the run "
            f"has {len(names)} classes ({', '.join(names)}): use one column per class"
        )
    if label_map is None:
        return 1
    ones = [i for i, v in enumerate(values) if value_kind([v]) != "text" and float(v) == 1]
    if len(ones) != 1:
        raise CnnlabError(
            "--label-map: the sample's column is the probability of the class mapped to 1; "
            f"map one of {', '.join(names)} to 1"
        )
    return ones[0]


def fill(layout: Layout, probs: np.ndarray, thresholds: np.ndarray | None = None) -> dict:
    """The values of each column of `layout` for class probabilities `probs` (N, classes);
    `thresholds` (per class) for runs with several labels per image."""
    from cnnlab.commands.predict import tags
    from cnnlab.data.dataset import above

    if layout.kind in (PROBABILITY, PROBABILITIES):
        if layout.clip:
            probs = np.clip(probs, *CLIP)
        probs = probs.round(DIGITS)
    if layout.kind == LABELS:
        (column,) = layout.columns
        return {column: [layout.values[i] for i in probs.argmax(axis=1)]}
    if layout.kind == TAGS:
        (column,) = layout.columns
        if thresholds is None:
            raise ValueError("tags need the run's thresholds")
        return {column: tags(probs, thresholds, layout.values, layout.separator)}
    if layout.kind == PROBABILITY:
        ((column,), (positive,)) = layout.columns, layout.classes
        return {column: probs[:, positive]}
    if layout.kind == PROBABILITIES:
        return {c: probs[:, i] for c, i in zip(layout.columns, layout.classes, strict=True)}
    if thresholds is None:  # INDICATORS, one label per image: the most probable class
        chosen = np.zeros(probs.shape, np.int64)
        chosen[np.arange(len(probs)), probs.argmax(axis=1)] = 1
    else:
        chosen = above(probs, thresholds)
    return {c: chosen[:, i] for c, i in zip(layout.columns, layout.classes, strict=True)}


def fill_sample(
    sample,
    probs: np.ndarray,
    names: list[str],
    thresholds: np.ndarray | None = None,
    label_map: dict[str, str] | None = None,
    clip: bool = False,
):
    """`sample` (rows aligned with `probs`) with its columns filled: plan_layout, then fill."""
    layout = plan_layout(sample, names, thresholds is not None, label_map, clip)
    return _filled(sample, layout, probs, thresholds)


def _filled(sample, layout: Layout, probs: np.ndarray, thresholds: np.ndarray | None):
    frame = sample.copy()
    for column, values in fill(layout, probs, thresholds).items():
        frame[column] = values
    return frame


@dataclass
class Request:
    """A submission asked for, checked before any model loads: the sample, the image file of
    each of its ids, and where to write."""

    sample: object  # pandas DataFrame, as read_table reads it
    sample_csv: Path
    paths: list[Path]  # the image file of each id, in the sample's order
    out: Path | None


def check_request(
    test_dir: Path, sample_csv: Path, out: Path | None = None, overwrite: bool = False
) -> Request:
    """Read the sample submission and match its ids to the images of `test_dir`.

    Args:
        test_dir: a flat folder of test images; each id of the sample names one (`1` or
            `1.jpg` -> `1.jpg`), and each image needs an id.
        sample_csv: the competition's sample submission: its first column the ids.
        out: the CSV to write; None writes nothing.
        overwrite: replace an existing `out`.

    Raises:
        DataError: ids without an image, images without an id (a count and the first few).
        RunDirError: `out` exists and `overwrite` is not given.
    """
    from cnnlab.data.ids import match_ids
    from cnnlab.utils.atomic import check_output

    test_dir, sample_csv = Path(test_dir), Path(sample_csv)
    if out is not None:
        check_output(out, overwrite)
    sample = read_table(sample_csv, "a sample submission")
    if not test_dir.is_dir():
        raise DataError(f"{test_dir}: not a folder; give the folder of the test images")
    id_column = str(sample.columns[0])
    match = match_ids(sample[id_column].tolist(), test_dir, f"{sample_csv}, column {id_column}")
    problems = []
    if match.missing:
        problems.append(f"{sample_csv}: {match.describe_missing()} in {test_dir}")
    if match.unlisted:
        problems.append(f"{test_dir}: {match.describe_unlisted()} in {sample_csv}")
    if problems:
        raise DataError("; ".join(problems))
    return Request(sample, sample_csv, match.paths, out)


def make_submission(
    run_dirs: list[str | Path],
    request: Request,
    label_map: dict[str, str] | None = None,
    clip: bool = False,
) -> Submission:
    """Fill a checked request's sample submission with a run's predictions, or several
    runs' averaged, and write it.

    Args:
        run_dirs: directories made by `cnnlab train`.
        request: what check_request made of the sample and the folder.
        label_map: the run's class names -> the competition's labels ({"cats": "0", ...}).
        clip: clip probabilities to CLIP.

    Raises:
        DataError: unreadable images (a submission needs every row), a sample whose columns
            the run cannot fill.
        CnnlabError: a label map that does not name the run's classes, each once.
    """
    from cnnlab.commands.predict import file_probabilities, tag_separator
    from cnnlab.data.ids import shown
    from cnnlab.inference import ensemble_thresholds, load_members
    from cnnlab.utils.atomic import atomic_path

    members = load_members(run_dirs)
    thresholds = ensemble_thresholds(members)
    names = members[0].class_names
    where = str(request.sample_csv)
    layout = plan_layout(request.sample, names, thresholds is not None, label_map, clip, where)
    layout.separator = tag_separator(members)
    _, probs, skipped = file_probabilities(members, request.paths)
    if skipped:
        listed = shown([f"{path}: {reason}" for path, reason in skipped])
        raise DataError(
            f"{len(skipped):,} of the {len(request.paths):,} test images cannot be read, and a "
            f"submission needs a row for each ({listed})"
        )
    frame = _filled(request.sample, layout, probs, thresholds)
    if request.out is not None:
        with atomic_path(request.out) as tmp:
            frame.to_csv(tmp, index=False)
    return Submission(frame, request.out, layout.notes)
