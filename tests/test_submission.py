"""Submissions in a competition's own format (`cnnlab predict --sample-submission`) and
scoring them offline (`cnnlab data score`): a tiny real cats-vs-dogs run, a numbered test folder
as Kaggle's, and the column filling on arrays for the several-labels cases."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnlab.commands.score import score_submission
from cnnlab.commands.submission import fill_sample, parse_label_map, read_table
from cnnlab.utils.errors import CnnlabError, DataError

from .helpers import ROOT, invoke, invoke_ok, train_runs
from .images import digit_photo, write_class_folders

N = 10  # test images 1.jpg .. 10.jpg
ORDER = [3, 1, 4, 10, 5, 9, 2, 6, 8, 7]  # the sample's ids: not the files' order


@pytest.fixture(scope="module")
def contest(tmp_path_factory, mnist_arrays):
    """A binary run (cats, dogs), a test folder 1.jpg..10.jpg with the answers kept aside,
    and the run's plain `cnnlab predict` table for that folder."""
    tmp = tmp_path_factory.mktemp("contest")
    root = write_class_folders(tmp / "train", mnist_arrays, 12)
    (run,) = train_runs(tmp, root)
    x, y = mnist_arrays["x_train"], mnist_arrays["y_train"]
    test = tmp / "test1"
    test.mkdir()
    truth = {}
    for i in range(1, N + 1):
        cls = i % 2  # odd: dogs (digit 1), even: cats (digit 0)
        index = np.flatnonzero(y == cls)[100 + i]
        digit_photo(x[index], cls, 40).save(test / f"{i}.jpg", quality=95)
        truth[str(i)] = cls
    plain = invoke_ok("predict", run, test, "-o", tmp / "plain.csv")
    assert "wrote 10 predictions" in plain.output
    frame = pd.read_csv(tmp / "plain.csv")
    frame.index = [Path(p).stem for p in frame["path"]]
    return run, test, truth, frame


def sample(path: Path, header: str, value: str, ids=ORDER) -> Path:
    path.write_text(header + "\n" + "".join(f"{i},{value}\n" for i in ids))
    return path


def answers(path: Path, truth: dict, ids=ORDER) -> Path:
    path.write_text("id,label\n" + "".join(f"{i},{truth[str(i)]}\n" for i in ids))
    return path


def test_an_integer_sample_gets_the_labels_mapped_and_scores_as_accuracy(contest, tmp_path):
    run, test, truth, plain = contest
    csv = sample(tmp_path / "sampleSubmission.csv", "id,label", "0")
    out = tmp_path / "sub.csv"
    result = invoke_ok(
        "predict", run, test, "--sample-submission", csv, "--label-map", "cats=0,dogs=1", "-o", out
    )
    assert f"wrote 10 rows of id,label to {out}" in result.output
    sub = pd.read_csv(out, dtype=str)
    assert list(sub.columns) == ["id", "label"]
    assert sub["id"].tolist() == [str(i) for i in ORDER]
    assert set(sub["label"]) <= {"0", "1"}
    expected = [{"cats": "0", "dogs": "1"}[plain.loc[str(i), "predicted"]] for i in ORDER]
    assert sub["label"].tolist() == expected
    # Scored against the answers: the share of ids whose label is right, computed here.
    right = [int(label) == truth[i] for i, label in zip(sub["id"], sub["label"], strict=True)]
    accuracy = np.mean(right)
    score = invoke_ok("data", "score", out, answers(tmp_path / "answers.csv", truth))
    assert score.output.strip() == f"accuracy {accuracy:.4f} on 10 images"


def test_without_a_label_map_the_class_names_are_written_and_said(contest, tmp_path):
    run, test, _, plain = contest
    csv = sample(tmp_path / "s.csv", "id,label", "0")
    result = invoke_ok("predict", run, test, "--sample-submission", csv, "-o", tmp_path / "o.csv")
    assert "note: column label: the sample holds integers" in result.output
    sub = pd.read_csv(tmp_path / "o.csv", dtype=str)
    assert sub["label"].tolist() == [plain.loc[str(i), "predicted"] for i in ORDER]


def test_a_float_sample_gets_the_probability_and_scores_as_log_loss(contest, tmp_path):
    run, test, truth, plain = contest
    csv = sample(tmp_path / "sample_submission.csv", "id,label", "0.5")
    out = tmp_path / "sub.csv"
    result = invoke_ok("predict", run, test, "--sample-submission", csv, "-o", out)
    assert "the probability of dogs, the run's second class" in result.output
    sub = pd.read_csv(out)
    assert sub["id"].tolist() == ORDER
    dogs = plain.loc[[str(i) for i in ORDER], "dogs"].to_numpy()
    np.testing.assert_allclose(sub["label"], dogs, atol=2e-6)

    # The class mapped to 1 is the one whose probability is written, clipped with --clip.
    clipped = tmp_path / "clipped.csv"
    invoke_ok(
        "predict", run, test, "--sample-submission", csv, "--label-map", "cats=1,dogs=0",
        "--clip", "-o", clipped,
    )  # fmt: skip
    p = pd.read_csv(clipped)["label"].to_numpy()
    assert p.min() >= 0.005 and p.max() <= 0.995
    cats = plain.loc[[str(i) for i in ORDER], "cats"].to_numpy()
    np.testing.assert_allclose(p, np.clip(cats, 0.005, 0.995), atol=2e-6)

    # Log loss and accuracy at 0.5 of P(dogs), computed here.
    y = np.array([truth[str(i)] for i in ORDER])
    q = np.clip(sub["label"].to_numpy(), 1e-15, 1 - 1e-15)
    loss = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
    score = invoke_ok("data", "score", out, answers(tmp_path / "answers.csv", truth))
    assert score.output.splitlines() == [
        f"log loss {loss:.4f} on 10 images",
        f"accuracy at 0.5 {np.mean((q > 0.5) == y):.4f} on 10 images",
    ]


def test_one_column_per_class_gets_probabilities_or_zero_one(contest, tmp_path):
    run, test, truth, plain = contest
    ids = [f"{i}.jpg" for i in ORDER]  # ids with their extension name the same files
    csv = sample(tmp_path / "s.csv", "image_id,cats,dogs", "0.5,0.5", ids)
    out = tmp_path / "p.csv"
    invoke_ok("predict", run, test, "--sample-submission", csv, "-o", out)
    sub = pd.read_csv(out)
    assert sub["image_id"].tolist() == ids
    rows = plain.loc[[str(i) for i in ORDER]]
    np.testing.assert_allclose(sub[["cats", "dogs"]], rows[["cats", "dogs"]], atol=2e-6)

    # Column-wise log loss of the two columns against one-hot answers, computed here.
    y = np.array([truth[str(i)] for i in ORDER])
    key = tmp_path / "key.csv"
    pd.DataFrame({"image_id": ids, "cats": 1 - y, "dogs": y}).to_csv(key, index=False)
    q = np.clip(sub[["cats", "dogs"]].to_numpy(), 1e-15, 1 - 1e-15)
    onehot = np.stack([1 - y, y], axis=1)
    losses = -np.mean(onehot * np.log(q) + (1 - onehot) * np.log(1 - q), axis=0)
    score = invoke_ok("data", "score", out, key)
    assert f"mean column-wise log loss {losses.mean():.4f} on 10 images" in score.output
    assert "mean column-wise ROC AUC" in score.output

    # Integers in the sample: 1 for the predicted class, 0 for the other.
    csv = sample(tmp_path / "i.csv", "image_id,dogs,cats", "0,0", ids)
    invoke_ok("predict", run, test, "--sample-submission", csv, "-o", tmp_path / "i-out.csv")
    sub = pd.read_csv(tmp_path / "i-out.csv")
    assert list(sub.columns) == ["image_id", "dogs", "cats"]
    assert sub["dogs"].tolist() == (rows["predicted"] == "dogs").astype(int).tolist()
    assert (sub["dogs"] + sub["cats"] == 1).all()


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory, mnist_arrays):
    tmp = tmp_path_factory.mktemp("three")
    root = write_class_folders(tmp / "train", mnist_arrays, 6, classes=("a", "b", "c"))
    (run,) = train_runs(tmp, root)
    return run


def test_a_float_sample_on_a_three_class_run_is_an_error(three_classes, contest, tmp_path):
    _, test, _, _ = contest
    csv = sample(tmp_path / "s.csv", "id,label", "0.5")
    result = invoke("predict", three_classes, test, "--sample-submission", csv)
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {csv}: one column of floats is the probability of one class of two; the run "
        "has 3 classes (a, b, c): use one column per class"
    )
    assert not Path("submission.csv").exists()


def test_errors_are_one_line(contest, tmp_path):
    run, test, _, _ = contest
    out = tmp_path / "sub.csv"

    def error(csv: Path, *extra, folder: Path = test) -> str:
        result = invoke("predict", run, folder, "--sample-submission", csv, "-o", out, *extra)
        assert result.exit_code == 1, result.output
        assert not out.exists()
        return result.output.strip()

    listed = [*ORDER, 11, 12]  # ids with no image
    csv = sample(tmp_path / "more.csv", "id,label", "0", listed)
    assert error(csv) == f"error: {csv}: 2 ids with no image file (11, 12) in {test}"
    fewer = sample(tmp_path / "fewer.csv", "id,label", "0", ORDER[:-1])  # 7.jpg has no row
    assert error(fewer) == f"error: {test}: 1 image file with no row (7.jpg) in {fewer}"
    ok = sample(tmp_path / "ok.csv", "id,label", "0")
    assert error(ok, "--label-map", "cats=0,lions=1") == (
        "error: --label-map: lions is not a class of the run (the run's classes: cats, dogs)"
    )
    assert error(ok, "--label-map", "cats=0") == (
        "error: --label-map: no value for dogs (the run's classes: cats, dogs)"
    )
    assert error(ok, "--label-map", "cats") == (
        "error: --label-map: 'cats' is not NAME=VALUE; write it as cat=0,dog=1"
    )
    assert error(ok, "--clip") == (
        f"error: --clip is for probabilities; {ok} asks for class labels"
    )
    columns = sample(tmp_path / "cols.csv", "id,cat,dog", "0.5,0.5")
    assert error(columns) == (
        f"error: {columns}: row 1: columns cat,dog are neither one column to fill nor one per "
        "class of the run (cats,dogs)"
    )
    # An unreadable image: a submission needs every row.
    broken = tmp_path / "broken"
    shutil.copytree(test, broken)
    (broken / "4.jpg").write_bytes(b"not a jpeg")
    assert error(ok, folder=broken) == (
        f"error: 1 of the 10 test images cannot be read, and a submission needs a row for each "
        f"({broken / '4.jpg'}: not an image (Pillow cannot identify it))"
    )
    # An existing output is kept.
    out.write_text("keep me")
    result = invoke("predict", run, test, "--sample-submission", ok, "-o", out)
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {out}: already exists; pass --overwrite to replace it"
    assert out.read_text() == "keep me"
    invoke_ok("predict", run, test, "--sample-submission", ok, "-o", out, "--overwrite")
    assert len(pd.read_csv(out)) == N
    out.unlink()
    # Options of submissions alone, and a submission from more than one folder.
    result = invoke("predict", run, test, "--clip", "-o", out)
    assert result.output.strip() == "error: --clip is for --sample-submission"
    result = invoke("predict", run, test, test, "--sample-submission", ok, "-o", out)
    assert result.output.strip() == (
        "error: --sample-submission: give one folder of test images after the run directories, "
        "not 2 paths"
    )


def test_the_sample_and_the_folder_are_checked_before_keras_loads(contest, tmp_path):
    # The backend a run trained on is started after these checks: nothing may import Keras.
    _, test, _, _ = contest
    csv = sample(tmp_path / "s.csv", "id,label", "0")
    args = ", ".join(f"Path({str(p)!r})" for p in (test, csv, tmp_path / "out.csv"))
    code = (
        "import sys; from pathlib import Path; "
        "from cnnlab.commands.submission import check_request; "
        f"r = check_request({args}); "
        "assert [p.name for p in r.paths] == [f'{i}.jpg' for i in r.sample['id']]; "
        "assert not {'tensorflow', 'keras'} & set(sys.modules), 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --- Filling the columns, on arrays -----------------------------------------------------------

NAMES = ["healthy", "multiple_diseases", "rust", "scab"]
# Raw sigmoid outputs of a several-labels model: rows need not sum to 1.
PROBS = np.array([[0.9, 0.1, 0.2, 0.05], [0.2, 0.5, 0.7, 0.6], [0.1, 0.2, 0.3, 0.25]])
THRESHOLDS = np.array([0.5, 0.5, 0.6, 0.5])


def frame(header: str, value: str, rows: int = 3) -> pd.DataFrame:
    columns = header.split(",")
    data = {columns[0]: [f"Test_{i}" for i in range(rows)]}
    data.update({c: [value] * rows for c in columns[1:]})
    return pd.DataFrame(data, dtype=str)


def test_per_class_probabilities_are_written_raw_in_the_sample_order():
    sample = frame("image_id,scab,healthy,rust,multiple_diseases", "0.25")
    filled = fill_sample(sample, PROBS, NAMES, THRESHOLDS)
    assert filled["image_id"].tolist() == ["Test_0", "Test_1", "Test_2"]
    for name in NAMES:
        np.testing.assert_allclose(filled[name], PROBS[:, NAMES.index(name)])
    clipped = fill_sample(frame("id,a,b", "0.5", 1), np.array([[1.0, 0.0]]), ["a", "b"], clip=True)
    assert clipped[["a", "b"]].to_numpy().tolist() == [[0.995, 0.005]]


def test_per_class_zero_one_follows_the_thresholds_or_the_argmax():
    sample = frame("image_id,healthy,multiple_diseases,rust,scab", "0")
    several = fill_sample(sample, PROBS, NAMES, THRESHOLDS)
    assert several[NAMES].to_numpy().tolist() == [[1, 0, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]]
    single = fill_sample(sample, PROBS, NAMES)
    assert single[NAMES].to_numpy().tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]


def test_tags_above_the_thresholds_in_class_order():
    filled = fill_sample(frame("image_name,tags", "primary clear"), PROBS, NAMES, THRESHOLDS)
    # The third image reaches no threshold: no tags, as its scores count it.
    assert filled["tags"].tolist() == ["healthy", "multiple_diseases rust scab", ""]
    mapped = fill_sample(
        frame("image_name,tags", "x"), PROBS, NAMES, THRESHOLDS,
        {"healthy": "h", "multiple_diseases": "m", "rust": "r", "scab": "s"},
    )  # fmt: skip
    assert mapped["tags"].tolist() == ["h", "m r s", ""]


def test_labels_and_the_positive_class_through_the_label_map():
    probs = np.array([[0.8, 0.2], [0.3, 0.7]])
    labels = fill_sample(
        frame("id,label", "0", 2), probs, ["cat", "dog"], None, {"cat": "0", "dog": "1"}
    )
    assert labels["label"].tolist() == ["0", "1"]
    p = fill_sample(
        frame("id,label", "0.5", 2), probs, ["cat", "dog"], None, {"cat": "1", "dog": "0"}
    )
    assert p["label"].tolist() == [0.8, 0.3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=1,a=2", "--label-map: a is given twice"),
        ("a=1,=2", "--label-map: '=2' is not NAME=VALUE; write it as cat=0,dog=1"),
    ],
)
def test_label_map_parsing(text, message):
    with pytest.raises(CnnlabError) as e:
        parse_label_map(text)
    assert str(e.value) == message
    assert parse_label_map(" cat = 0 , dog=1") == {"cat": "0", "dog": "1"}


def test_two_classes_mapped_to_one_value_is_an_error():
    with pytest.raises(CnnlabError, match="--label-map: cat and dog both map to 1"):
        fill_sample(frame("id,label", "0", 1), np.array([[0.5, 0.5]]), ["cat", "dog"], None,
                    {"cat": "1", "dog": "1"})  # fmt: skip


def test_ids_keep_their_spelling(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("id,label\n007,0\nNA,0\n1.50,0\n")
    assert read_table(path, "a sample")["id"].tolist() == ["007", "NA", "1.50"]
    path.write_text("id,label\n7,0\n7,1\n")
    with pytest.raises(DataError, match=r"s.csv: row 3, column 'id': id 7 appears twice"):
        read_table(path, "a sample")


# --- Scoring ----------------------------------------------------------------------------------


def test_digit_recognizer_submissions_score_as_before(kaggle_dir, tmp_path):
    key = kaggle_dir / "test_labels.csv"
    assert score_submission(key, key)[:2] == ({"accuracy": 1.0}, 50)
    wrong = pd.read_csv(key)
    wrong.loc[:4, "Label"] = (wrong.loc[:4, "Label"] + 1) % 10
    wrong.to_csv(tmp_path / "sub.csv", index=False)
    assert score_submission(tmp_path / "sub.csv", key)[:2] == ({"accuracy": 0.9}, 50)
    wrong.iloc[:10].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError) as e:
        score_submission(tmp_path / "short.csv", key)
    assert str(e.value) == (
        f"{tmp_path / 'short.csv'}: 40 ImageIds of {key} have no prediction "
        "(11, 12, 13, 14, 15 and 35 more)"
    )


def test_tags_are_told_from_class_names_that_hold_spaces(tmp_path):
    key, sub = tmp_path / "key.csv", tmp_path / "sub.csv"
    # Plant Seedlings: one class per image, some names of two words.
    names = ["Common Chickweed", "Common wheat", "Fat Hen", "Maize"]
    key.write_text("file,species\n" + "".join(f"{i}.png,{names[i % 4]}\n" for i in range(8)))
    sub.write_text("file,species\n" + "".join(f"{i}.png,{names[i // 2]}\n" for i in range(8)))
    score = score_submission(sub, key)
    assert score.metrics == {"accuracy": pytest.approx(2 / 8)}
    assert score.notes == [
        "column species: each cell scored as one class (its names hold spaces); --tags scores "
        "them as space-separated tags"
    ]
    # Planet: more combinations than tags, in any order, some alone.
    tags = ["clear primary", "clear", "primary water", "haze primary", "clear water", "haze"]
    key.write_text("image_name,tags\n" + "".join(f"i{i},{t}\n" for i, t in enumerate(tags)))
    sub.write_text("image_name,tags\n" + "".join(f"i{i},{t}\n" for i, t in enumerate(tags)))
    score = score_submission(sub, key)
    assert score.metrics == {"mean F2": 1.0, "subset accuracy": 1.0}
    assert "scored as tags (space-separated)" in score.notes[0]
    result = invoke("data", "score", sub, key, "--labels")
    assert result.exit_code == 0 and "accuracy 1.0000 on 6 images" in result.output


def test_tags_score_as_mean_f2_per_image(tmp_path):
    key, sub = tmp_path / "key.csv", tmp_path / "sub.csv"
    key.write_text("image_name,tags\na,primary clear\nb,water\nc,haze primary road\n")
    sub.write_text("image_name,tags\nc,haze primary\na,primary clear\nb,primary\n")

    def f2(true: set, guess: set) -> float:
        tp = len(true & guess)
        p, r = tp / len(guess), tp / len(true)
        return 0.0 if tp == 0 else 5 * p * r / (4 * p + r)

    expected = np.mean([f2({"primary", "clear"}, {"primary", "clear"}), f2({"water"}, {"primary"}),
                        f2({"haze", "primary", "road"}, {"haze", "primary"})])  # fmt: skip
    # Three rows of five tags: too few to tell tags from class names that hold spaces.
    assert "mean F2" not in score_submission(sub, key).metrics
    score = score_submission(sub, key, tags=True)
    assert score.metrics["mean F2"] == pytest.approx(expected)
    assert score.metrics["subset accuracy"] == pytest.approx(1 / 3)
    assert score.rows == 3


def test_score_errors_name_the_ids_and_columns(tmp_path):
    key = tmp_path / "key.csv"
    key.write_text("id,label\n1,0\n2,1\n3,1\n")
    sub = tmp_path / "sub.csv"

    def error(text: str) -> str:
        sub.write_text(text)
        result = invoke("data", "score", sub, key)
        assert result.exit_code == 1
        return result.output.strip()

    assert error("id,p\n1,0.5\n2,0.5\n3,0.5\n") == (
        f"error: {sub}: row 1: columns id,p differ from {key}'s id,label"
    )
    assert error("id,label\n1,0.5\n2,0.5\n3,0.5\n4,0.5\n5,0.5\n") == (
        f"error: {sub}: 2 ids are not in {key} (4, 5)"
    )
    assert error("id,label\n1,0.5\n2,1.5\n3,0.5\n") == (
        f"error: {sub}: id 2, column 'label': '1.5' is not a probability 0-1"
    )
    assert error("id,label\n1,0.5\n2,0.5\n3,n/a\n") == (
        f"error: {sub}: id 3, column 'label': 'n/a' is not a number"
    )
    key.write_text("id,label\n1,cat\n2,dog\n3,dog\n")
    assert error("id,label\n1,0.5\n2,0.5\n3,0.5\n") == (
        f"error: {key}: id 1, column 'label': 'cat' is not 0 or 1 (probabilities are scored "
        "against 0/1 answers)"
    )


def test_the_python_api_makes_the_same_submission(contest, tmp_path):
    import cnnlab

    run, test, _, _ = contest
    csv = sample(tmp_path / "s.csv", "id,label", "0")
    invoke_ok("predict", run, test, "--sample-submission", csv, "--label-map", "cats=0,dogs=1",
              "-o", tmp_path / "cli.csv")  # fmt: skip
    made = cnnlab.submission(run, test, csv, label_map={"cats": 0, "dogs": 1})
    assert made.out is None and made.notes == []
    cli = pd.read_csv(tmp_path / "cli.csv", dtype=str)
    pd.testing.assert_frame_equal(made.frame, cli, check_dtype=False)
    by_run = cnnlab.Run(run).submission(test, csv, tmp_path / "run.csv", label_map="cats=0,dogs=1")
    assert by_run.out == tmp_path / "run.csv"
    pd.testing.assert_frame_equal(pd.read_csv(by_run.out, dtype=str), cli)
