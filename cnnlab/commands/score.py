"""`cnnlab data score`: a submission scored offline against the answers, as the competition
would: rows matched by the id column, each kind of column by its competition's metric.

- one column of class labels (Digit Recognizer's `ImageId,Label`): accuracy;
- one column of probabilities against 0/1 answers (Dogs vs. Cats Redux): log loss, and the
  accuracy of calling a probability above 0.5 a 1;
- one column of tags (Planet's space-separated, or |-separated): the mean F2 per image, and
  subset accuracy; told from class names that hold a space by the answers (tags_separator);
- one column per class (Plant Pathology): with probabilities, the mean column-wise log loss and
  ROC AUC; with 0/1, the share of rows right in every column.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlab.commands.submission import read_table, value_kind
from cnnlab.data.ids import shown
from cnnlab.utils.errors import DataError

EPS = 1e-15  # Kaggle's log loss clips probabilities to [EPS, 1 - EPS]


class Score(NamedTuple):
    """A submission's metrics (name -> value, in the order printed) over `rows` images."""

    metrics: dict[str, float]
    rows: int
    notes: list[str]


def score_submission(submission: Path, answers: Path, tags: bool | None = None) -> Score:
    """Score `submission` against `answers`, a CSV of the same columns holding the truth.

    Args:
        tags: whether one column of text holds tags (several classes per image) or one class
            per image; None decides from the answers (tags_separator).

    Raises:
        DataError: different columns, ids on one side only (a count and the first few),
            values that are not what the column's kind needs.
    """
    submission, answers = Path(submission), Path(answers)
    predicted, truth = (
        read_table(submission, "a submission"),
        read_table(answers, "an answers file"),
    )
    if (
        sorted(predicted.columns) != sorted(truth.columns)
        or predicted.columns[0] != truth.columns[0]
    ):
        raise DataError(
            f"{submission}: row 1: columns {','.join(predicted.columns)} differ from {answers}'s "
            f"{','.join(truth.columns)}"
        )
    id_column = str(truth.columns[0])
    predicted, truth = predicted.set_index(id_column), truth.set_index(id_column)
    absent = truth.index.difference(predicted.index, sort=False)
    if len(absent):
        raise DataError(
            f"{submission}: {len(absent):,} {id_column}s of {answers} have no prediction "
            f"({shown(list(absent))})"
        )
    extra = predicted.index.difference(truth.index, sort=False)
    if len(extra):
        raise DataError(
            f"{submission}: {len(extra):,} {id_column}s are not in {answers} ({shown(list(extra))})"
        )
    predicted = predicted.loc[truth.index, list(truth.columns)]
    where = _Tables(submission, answers, predicted, truth)
    if len(truth.columns) > 1:
        return _score_columns(where)
    column = str(truth.columns[0])
    guess, real = predicted[column], truth[column]
    # Probabilities: any fraction among the values (a stray word among them is then named).
    if any(value_kind([v]) == "float" for v in guess):
        p = where.probabilities(column)
        y = where.zero_one(column)
        return Score(
            {"log loss": _log_loss(y, p), "accuracy at 0.5": float(((p > 0.5) == y).mean())},
            len(y),
            [],
        )
    separator = tags_separator(real) if tags is not False else None
    if tags and separator is None:
        separator = "|" if any("|" in str(v) for v in real) else " "
    if separator is not None:
        scored = _score_tags(guess, real, separator)
        if tags is None:
            scored.notes.append(
                f"column {column}: scored as tags ({'|' if separator == '|' else 'space'}-"
                "separated); --labels scores each cell as one class"
            )
        return scored
    if value_kind(guess) != "text" and value_kind(real) != "text":
        right = guess.astype(float).to_numpy() == real.astype(float).to_numpy()
    else:
        right = guess.str.strip().to_numpy() == real.str.strip().to_numpy()
    notes = []
    if tags is None and any(len(str(v).split()) > 1 for v in real):
        notes.append(
            f"column {column}: each cell scored as one class (its names hold spaces); --tags "
            "scores them as space-separated tags"
        )
    return Score({"accuracy": float(right.mean())}, len(right), notes)


class _Tables:
    """Both tables, rows aligned by id; a bad value is named by its file, id and column."""

    def __init__(self, submission: Path, answers: Path, predicted, truth):
        self.submission, self.answers = submission, answers
        self.predicted, self.truth = predicted, truth

    def probabilities(self, column: str) -> np.ndarray:
        """The submission's column as probabilities, each a number between 0 and 1."""
        values = self.predicted[column]
        kind = value_kind(values)
        if kind == "text":
            row = next(i for i, v in enumerate(values) if value_kind([v]) == "text")
            self._fail(self.submission, self.predicted, row, column, "is not a number")
        p = values.astype(float).to_numpy()
        outside = (p < 0) | (p > 1)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            self._fail(self.submission, self.predicted, row, column, "is not a probability 0-1")
        return p

    def zero_one(self, column: str, answers: bool = True) -> np.ndarray:
        """The answers' column (or the submission's) as 0/1."""
        path, frame = (self.answers, self.truth) if answers else (self.submission, self.predicted)
        values = frame[column].str.strip()
        bad = ~values.isin(["0", "1"]).to_numpy()
        if bad.any():
            why = "probabilities are scored against 0/1 answers" if answers else "0/1 per class"
            self._fail(path, frame, int(np.flatnonzero(bad)[0]), column, f"is not 0 or 1 ({why})")
        return (values == "1").to_numpy().astype(np.int64)

    def _fail(self, path: Path, frame, row: int, column: str, problem: str) -> None:
        id_ = frame.index[row]
        raise DataError(
            f"{path}: id {id_}, column '{column}': {frame[column].iloc[row]!r} {problem}"
        )


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import log_loss

    return float(log_loss(y, np.clip(p, EPS, 1 - EPS), labels=[0, 1]))


def _score_columns(where: _Tables) -> Score:
    """One column per class: probabilities, or 0/1."""
    columns = [str(c) for c in where.truth.columns]
    truth = np.stack([where.zero_one(c) for c in columns], axis=1)
    if not any(value_kind([v]) == "float" for c in columns for v in where.predicted[c]):
        guess = np.stack([where.zero_one(c, answers=False) for c in columns], axis=1)
        return Score({"accuracy": float((guess == truth).all(axis=1).mean())}, len(truth), [])
    from sklearn.metrics import roc_auc_score

    probs = np.stack([where.probabilities(c) for c in columns], axis=1)
    losses = [_log_loss(truth[:, j], probs[:, j]) for j in range(len(columns))]
    metrics = {"mean column-wise log loss": float(np.mean(losses))}
    both = [j for j in range(len(columns)) if 0 < truth[:, j].sum() < len(truth)]
    notes = []
    if both:
        aucs = [roc_auc_score(truth[:, j], probs[:, j]) for j in both]
        metrics["mean column-wise ROC AUC"] = float(np.mean(aucs))
        if len(both) < len(columns):
            left = [columns[j] for j in range(len(columns)) if j not in both]
            notes.append(
                f"ROC AUC over {len(both)} of {len(columns)} columns: "
                f"{', '.join(left)} has one class only in the answers"
            )
    else:
        notes.append("no ROC AUC: no column of the answers holds both 0 and 1")
    return Score(metrics, len(truth), notes)


def tags_separator(real) -> str | None:
    """What separates the tags of an answers column ("|" or white space), or None when it holds
    one class per row. Tags when some cell holds several and there are more different cells
    than different tags (Planet: hundreds of combinations of 17 tags); class names that hold a
    space (Plant Seedlings' "Common Chickweed") give fewer cells than words."""
    cells = {str(v).strip() for v in real}
    for separator in ("|", None):
        words = [cell.split(separator) for cell in cells]
        tags = {w.strip() for parts in words for w in parts if w.strip()}
        if any(len(parts) > 1 for parts in words) and len(cells) > len(tags):
            return separator or " "
    return None


def _score_tags(guess, real, separator: str = " ") -> Score:
    """Tags: Planet's mean F2 per image, and the share of images whose tags are all right;
    an image with no tags on either side counts as right in both."""
    import warnings

    from sklearn.metrics import fbeta_score
    from sklearn.preprocessing import MultiLabelBinarizer

    split = None if separator == " " else separator  # white space: any run of it
    sets = [
        [[t.strip() for t in str(v).split(split) if t.strip()] for v in c] for c in (real, guess)
    ]
    binarizer = MultiLabelBinarizer(classes=sorted({t for rows in sets for r in rows for t in r}))
    truth, predicted = (binarizer.fit_transform(rows) for rows in sets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f2 = fbeta_score(truth, predicted, beta=2, average="samples", zero_division=1)
    subset = float((truth == predicted).all(axis=1).mean())
    return Score({"mean F2": float(f2), "subset accuracy": subset}, len(truth), [])
