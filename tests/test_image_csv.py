"""A flat folder of images labelled by a CSV (Kaggle's `train/` and `train.csv`): one class per
image, a 0/1 column per class, or tags; every bad row named by file, row and column."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cnnlab.config import load_config
from cnnlab.config.images import ImageCsvData
from cnnlab.data import count_classes, load_dataset
from cnnlab.data.dataset import Dataset, imbalance
from cnnlab.data.health import check_health
from cnnlab.utils.errors import DataError

from .helpers import ROOT, invoke, only_run
from .images import digit_photo

CLASSES = ("cat", "dog")


def write_images(folder: Path, mnist: dict, n: int, ext: str = ".jpg", start: int = 1) -> list:
    """folder/0001.jpg ...: image i shows digit i % 2 (cat 0, dog 1); the classes, in order."""
    x, y = mnist["x_train"], mnist["y_train"]
    folder.mkdir(parents=True, exist_ok=True)
    picks = {c: np.flatnonzero(y == c) for c in (0, 1)}
    labels = []
    for i in range(start, start + n):
        cls = i % 2
        digit_photo(x[picks[cls][i]], cls, 32).save(folder / f"{i:04d}{ext}")
        labels.append(CLASSES[cls])
    return labels


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture
def kaggle(tmp_path, mnist_arrays):
    """train/0001.jpg ... 0024.jpg and train.csv (id,label: cat or dog)."""
    labels = write_images(tmp_path / "train", mnist_arrays, 24)
    rows = [f"{i:04d},{label}" for i, label in enumerate(labels, 1)]
    write_csv(tmp_path / "train.csv", "id,label", rows)
    return tmp_path


def cfg(root: Path, **kwargs) -> ImageCsvData:
    keys = {"images": str(root / "train"), "labels": str(root / "train.csv"), **kwargs}
    if not {"label_column", "label_columns", "tags_column"} & set(keys):
        keys["label_column"] = "label"
    return ImageCsvData(loader="image_csv", image_size=(24, 24), **keys)


def config_file(root: Path, **data) -> Path:
    """A config of the image_csv loader on `root`'s train/ and train.csv, a tiny model, 1 epoch."""
    keys = {
        "loader": "image_csv", "images": str(root / "train"), "labels": str(root / "train.csv"),
        "label_column": "label", "image_size": [24, 24], **data,
    }  # fmt: skip
    path = root / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "csv",
                "data": {k: v for k, v in keys.items() if v is not None},
                "model": {"builder": "small_cnn", "filters": [8, 16]},
                "train": {"epochs": 1, "batch_size": 8, "verbose": 0},
                "output_dir": str(root / "out"),
            },
            sort_keys=False,
        )
    )
    return path


def error_line(result) -> str:
    assert result.exit_code != 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("error: ")]
    return line.removeprefix("error: ")


# --- one class per image --------------------------------------------------------------------


def test_one_class_per_image_keeps_ids_and_classes_as_text(tmp_path, mnist_arrays):
    labels = write_images(tmp_path / "train", mnist_arrays, 20)
    # Classes sort as text ("10" before "2"); ids keep their leading zeros.
    classes = {"cat": "10", "dog": "2"}
    rows = [f"{i:04d},{classes[label]}" for i, label in enumerate(labels, 1)]
    write_csv(tmp_path / "train.csv", "ImageId,Label", rows)
    data = load_dataset(cfg(tmp_path, label_column="Label"), seed=0)
    assert data.class_names == ["10", "2"]
    assert data.y_train.dtype == np.int32 and data.y_train.ndim == 1
    assert (len(data.x_train), len(data.x_val)) == (16, 4)
    for split in ("train", "val"):
        names, y = data.origins[split], data.split(split)[1]
        expected = [["10", "2"].index(classes[labels[int(n[:4]) - 1]]) for n in names]
        assert y.tolist() == expected
        assert all(n.endswith(".jpg") and len(n) == 8 for n in names)
    assert data.source == (
        f"image files of {tmp_path / 'train'} labelled by CSV: train <- {tmp_path / 'train.csv'}, "
        "validation <- 20% of train"
    )
    assert data.originals["train"]["width"].tolist() == [32] * 16
    assert not cfg(tmp_path, label_column="Label").multi_label and not data.multi_label
    assert count_classes(cfg(tmp_path, label_column="Label")) == 2


def test_a_csv_saved_by_excel_with_a_byte_order_mark(kaggle):
    text = (kaggle / "train.csv").read_text()
    (kaggle / "train.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    data = load_dataset(cfg(kaggle, id_column="id"), seed=0)
    assert data.class_names == ["cat", "dog"]
    assert len(data.x_train) + len(data.x_val) == 24


def test_ids_may_carry_their_extension_and_the_first_column_is_the_default(kaggle):
    rows = [f"{i:04d}.jpg,{'cat' if i % 2 == 0 else 'dog'}" for i in range(1, 25)]
    write_csv(kaggle / "train.csv", "file,label", rows)
    data = load_dataset(cfg(kaggle, validation_split=0.25), seed=0)
    assert data.class_names == ["cat", "dog"]
    assert sorted(data.origins["train"].tolist() + data.origins["val"].tolist()) == [
        f"{i:04d}.jpg" for i in range(1, 25)
    ]


def test_validation_and_test_csvs_instead_of_splits(kaggle, mnist_arrays):
    more = write_images(kaggle / "train", mnist_arrays, 10, start=25)
    rows = [f"{i:04d},{c}" for i, c in zip(range(25, 35), more, strict=True)]
    write_csv(kaggle / "val.csv", "id,label", rows[:6])
    write_csv(kaggle / "test.csv", "id,label", rows[6:])
    data = load_dataset(
        cfg(kaggle, validation=str(kaggle / "val.csv"), test=str(kaggle / "test.csv")), seed=0
    )
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (24, 6, 4)
    assert data.origins["val"].tolist() == [f"{i:04d}.jpg" for i in range(25, 31)]
    assert data.y_test.tolist() == [CLASSES.index(c) for c in more[6:]]
    assert data.source.endswith(
        f"train <- {kaggle / 'train.csv'}, validation <- {kaggle / 'val.csv'}, "
        f"test <- {kaggle / 'test.csv'}"
    )
    # Without those CSVs, their images have no row; and a test_split is taken from train.
    split = load_dataset(
        cfg(kaggle, test_split=0.25, validation_split=0.25, on_bad_file="skip"), seed=0
    )
    assert len(split.problems) == 10
    assert (len(split.x_train), len(split.x_val), len(split.x_test)) == (13, 5, 6)
    assert sorted(np.bincount(split.y_test).tolist()) == [3, 3]
    assert "validation <- 25% of train after the test split, test <- 25% of train" in split.source


# --- several labels per image ---------------------------------------------------------------

# Each image's labels: which of haze, water, road.
SEVERAL = [(1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1)] * 4


def expected_rows(names: np.ndarray, order: list[int]) -> np.ndarray:
    """The 0/1 rows of SEVERAL for files 0001.jpg ..., columns in `order` of (haze, water, road)."""
    return np.array([[SEVERAL[int(n[:4]) - 1][k] for k in order] for n in names], np.uint8)


def test_label_columns_give_a_0_1_row_per_image(kaggle):
    rows = [f"{i:04d},{a},{b},{c},x" for i, (a, b, c) in enumerate(SEVERAL, 1)]
    write_csv(kaggle / "train.csv", "id,haze,water,road,note", rows)
    config = cfg(kaggle, label_columns=["water", "haze", "road"], test_split=0.25)
    assert config.multi_label and config.fixed_classes == 3
    data = load_dataset(config, seed=0)
    assert data.class_names == ["water", "haze", "road"]
    assert data.multi_label
    for split in ("train", "val", "test"):
        y = data.split(split)[1]
        assert y.dtype == np.uint8 and y.shape == (len(data.origins[split]), 3)
        np.testing.assert_array_equal(y, expected_rows(data.origins[split], [1, 0, 2]))
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (14, 4, 6)
    # Seeded: the same split again, another with another seed.
    again = load_dataset(config, seed=0)
    assert again.origins["test"].tolist() == data.origins["test"].tolist()
    other = load_dataset(config, seed=1)
    assert other.origins["test"].tolist() != data.origins["test"].tolist()


@pytest.mark.parametrize("separator", [None, "|"])
def test_tags_give_a_0_1_row_per_image(kaggle, separator):
    names = ("haze", "water", "road")
    sep = separator or " "
    tags = [sep.join(n for n, on in zip(names, row, strict=True) if on) for row in SEVERAL]
    if separator is None:
        tags[2] = " haze  water "  # spaces around and between are nothing
    write_csv(
        kaggle / "train.csv", "image_name,tags", [f"{i:04d},{t}" for i, t in enumerate(tags, 1)]
    )
    keys = {"tags_column": "tags", **({"tags_separator": separator} if separator else {})}
    data = load_dataset(cfg(kaggle, **keys), seed=0)
    assert data.class_names == ["haze", "road", "water"]  # sorted
    for split in ("train", "val"):
        np.testing.assert_array_equal(
            data.split(split)[1], expected_rows(data.origins[split], [0, 2, 1])
        )
    assert count_classes(cfg(kaggle, **keys)) == 3


def test_several_labels_in_health_and_the_label_checks(kaggle):
    rows = [f"{i:04d},{a},{b},{c}" for i, (a, b, c) in enumerate(SEVERAL, 1)]
    write_csv(kaggle / "train.csv", "id,haze,water,road", rows)
    # 0024.jpg is a copy of 0001.jpg under other labels: a copy within train, conflicting.
    shutil.copy(kaggle / "train" / "0001.jpg", kaggle / "train" / "0024.jpg")
    data = load_dataset(
        cfg(kaggle, label_columns=["haze", "water", "road"], validation_split=0.1), seed=0
    )
    data.check_labels(3)
    with pytest.raises(DataError, match="train labels have 3 classes, but the model has 2"):
        data.check_labels(2)
    record = check_health(data)
    counts = record["classes"]["train"]
    assert counts == dict(
        zip(["haze", "water", "road"], data.y_train.sum(axis=0).tolist(), strict=True)
    )
    pairs = [*record["duplicates"]["train"]["listed"], *record["leaks"]["train-val"]["listed"]]
    (pair,) = [p for p in pairs if {p["a"], p["b"]} == {"0001.jpg", "0024.jpg"}]
    assert sorted(pair["labels"]) == ["haze", "water+road"]
    assert record["conflicting_label_pairs"] == 1


def test_imbalance_counts_each_label():
    y = np.array([[1, 0], [1, 0], [1, 1], [1, 0]], np.uint8)
    assert imbalance(y, ["haze", "road"]) == (
        "imbalanced labels in train: haze on 4 images against road on 1 (4.0x): set "
        "train.class_weight: balanced or data.sampling: balanced, and read each label's F1 "
        "and the mean average precision"
    )
    assert imbalance(np.array([[1, 1], [0, 1]], np.uint8), ["haze", "road"]) is None
    x = np.zeros((4, 2, 2, 1), np.uint8)
    data = Dataset(x, y, x, y, None, None, ["haze", "road"])
    assert data.multi_label
    data.check_labels(2)
    data.y_val = np.array([[1, 2]] * 4, np.uint8)
    with pytest.raises(DataError, match="validation labels hold values other than 0 and 1"):
        data.check_labels(2)


# --- bad input: one line naming file, row and column, exit non-zero -------------------------


def _id_without_image(root: Path) -> str:
    with open(root / "train.csv", "a") as f:
        f.write("9999,cat\n0777,dog\n")
    return (
        f"{root / 'train.csv'}: row 26, column 'id': 2 ids with no image file (9999, 0777) "
        f"in {root / 'train'}"
    )


def _duplicate_id(root: Path) -> str:
    with open(root / "train.csv", "a") as f:
        f.write("0003,dog\n")
    return (
        f"{root / 'train.csv'}: row 26, column 'id': id 0003 is on row 4 too; give each image "
        "one row"
    )


def _empty_label(root: Path) -> str:
    text = (root / "train.csv").read_text().replace("0005,dog", "0005,")
    (root / "train.csv").write_text(text)
    return f"{root / 'train.csv'}: row 6, column 'label': empty label; every row needs its class"


def _missing_column(root: Path) -> tuple[str, dict]:
    return (
        f"{root / 'train.csv'}: row 1: no column 'lable' (data.label_column); its columns are "
        "id, label; did you mean 'label'?"
    ), {"label_column": "lable"}


def _class_only_in_validation(root: Path) -> str:
    write_csv(root / "val.csv", "id,label", ["0001,cat", "0002,dog", "0003,horse"])
    text = (root / "train.csv").read_text()
    (root / "train.csv").write_text("\n".join(text.splitlines()[:1] + text.splitlines()[4:]) + "\n")
    return (
        f"{root / 'val.csv'}: row 4, column 'label': class 'horse' is on no row of train.csv "
        "(2 classes: cat, dog); a model learns only the classes it trains on"
    ), {"validation": str(root / "val.csv")}


def _not_zero_or_one(root: Path) -> str:
    rows = [f"{i:04d},{a},{b}" for i, (a, b, _) in enumerate(SEVERAL, 1)]
    rows[6] = "0007,1,2"
    write_csv(root / "train.csv", "id,haze,water", rows)
    return (
        f"{root / 'train.csv'}: row 8, column 'water': '2' is not 0 or 1; each of label_columns "
        "holds 1 where the image shows its class, else 0"
    ), {"label_column": None, "label_columns": ["haze", "water"]}


def _tag_only_in_test(root: Path) -> str:
    write_csv(root / "train.csv", "id,tags", [f"{i:04d},haze water" for i in range(1, 21)])
    write_csv(root / "test.csv", "id,tags", ["0021,water", "0022,haze  fog"])
    return (
        f"{root / 'test.csv'}: row 3, column 'tags': tag 'fog' is on no row of train.csv "
        "(2 classes: haze, water); a model learns only the classes it trains on"
    ), {"label_column": None, "tags_column": "tags", "test": str(root / "test.csv")}


def _image_without_row(root: Path) -> str:
    text = (root / "train.csv").read_text().splitlines()  # 0023 and 0024 have no row
    (root / "train.csv").write_text("\n".join(text[:-2]) + "\n")
    return (
        f"{root / 'train'}: 2 image files with no row (0023.jpg, 0024.jpg) in train.csv; add their "
        "rows, or set data.on_bad_file: skip to train without them"
    )


def _image_in_two_csvs(root: Path) -> tuple[str, dict]:
    write_csv(root / "val.csv", "id,label", ["0025.jpg,cat", "0005.jpg,dog"])
    (root / "train" / "0025.jpg").write_bytes((root / "train" / "0001.jpg").read_bytes())
    return (
        f"{root / 'val.csv'}: row 3, column 'id': image 0005.jpg is on row 6 of train.csv too; "
        "an image belongs to one split"
    ), {"validation": str(root / "val.csv")}


def _damaged_image(root: Path) -> str:
    (root / "train" / "0004.jpg").write_bytes(b"not a picture")
    return (
        f"{root / 'train'}: 1 unusable file (1 not an image): {root / 'train' / '0004.jpg'}; set "
        "data.on_bad_file: skip to train without them"
    )


def _row_too_long(root: Path) -> str:
    with open(root / "train.csv", "a") as f:
        f.write("0025,cat,extra\n")
    return f"{root / 'train.csv'}: not a readable CSV: row 26 has 3 fields, the header (row 1) 2"


BAD_INPUT = [
    _id_without_image, _duplicate_id, _empty_label, _missing_column, _class_only_in_validation,
    _not_zero_or_one, _tag_only_in_test, _image_without_row, _image_in_two_csvs, _damaged_image,
    _row_too_long,
]  # fmt: skip


@pytest.mark.parametrize("spoil", BAD_INPUT, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_is_one_line_naming_file_row_and_column(kaggle, spoil):
    expected = spoil(kaggle)
    expected, keys = expected if isinstance(expected, tuple) else (expected, {})
    assert error_line(invoke("check", config_file(kaggle, **keys))) == expected


def test_images_without_a_row_are_skipped_when_asked(kaggle):
    _image_without_row(kaggle)
    data = load_dataset(cfg(kaggle, on_bad_file="skip"), seed=0)
    assert len(data.x_train) + len(data.x_val) == 22
    assert data.problems == [
        (str(kaggle / "train" / f"{i:04d}.jpg"), "no row in train.csv") for i in (23, 24)
    ]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"label_columns": ["a", "b"]}, "give exactly one of label_column (one class per image)"),
        ({"label_column": None}, "none is given"),
        ({"label_columns": ["a"], "label_column": None}, "label_columns needs a column for each"),
        ({"tags_separator": "|"}, "tags_separator splits tags_column, which is not given"),
    ],
)
def test_how_labels_are_given_is_checked_with_the_config(kaggle, keys, message):
    result = invoke("check", config_file(kaggle, **keys))
    assert result.exit_code == 2, result.output
    assert message in result.output


# --- a real run -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory, mnist_arrays):
    """`cnnlab train config.yaml` on 40 images of a CSV, one image with no row and one damaged
    (on_bad_file: skip), 1 epoch."""
    root = tmp_path_factory.mktemp("csvrun")
    labels = write_images(root / "train", mnist_arrays, 40)
    rows = [f"{i:04d},{label}" for i, label in enumerate(labels, 1)]
    write_csv(root / "train.csv", "id,label", rows[:-1])  # 0040.jpg has no row
    (root / "train" / "0007.jpg").write_bytes(b"")
    config = config_file(root, on_bad_file="skip", test_split=0.2)
    result = invoke("train", config)
    assert result.exit_code == 0, result.output
    return root, only_run(root / "out"), result.output


def test_a_csv_labelled_folder_trains(csv_run):
    root, run, output = csv_run
    assert f"image files of {root / 'train'} labelled by CSV: train <- {root / 'train.csv'}" in (
        output
    )
    assert json.loads((run / "classes.json").read_text()) == ["cat", "dog"]
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1
    saved = load_config(run / "config.yaml")
    assert (saved.data.loader, saved.data.images) == ("image_csv", root / "train")
    bad = pd.read_csv(run / "bad_files.csv")
    assert sorted(bad.iloc[:, 0].map(lambda p: Path(p).name)) == ["0007.jpg", "0040.jpg"]
    assert "no row in train.csv" in bad.iloc[:, 1].tolist()
    health = json.loads((run / "data_health.json").read_text())
    assert (
        sum(health["classes"]["train"].values())
        + sum(health["classes"]["val"].values())
        + sum(health["classes"]["test"].values())
        == 38
    )


def test_a_moved_folder_is_pointed_at_with_set(csv_run, tmp_path):
    root, run, _ = csv_run
    moved = tmp_path / "elsewhere"
    shutil.copytree(root / "train", moved)
    (root / "train").rename(root / "train-gone")
    try:
        lost = invoke("evaluate", run)
        assert lost.exit_code != 0
        assert f"data.images {root / 'train'}: not found (moved or deleted?)" in lost.output
        assert "--set data.images=NEW_PATH" in lost.output
        found = invoke("evaluate", run, "--set", f"data.images={moved}")
        assert found.exit_code == 0, found.output
    finally:
        (root / "train-gone").rename(root / "train")


def test_count_classes_reads_only_the_csv(kaggle):
    config = cfg(kaggle)
    shutil.rmtree(kaggle / "train")
    assert count_classes(config) == 2
    (kaggle / "train.csv").unlink()
    assert count_classes(config) is None


def test_the_docs_example_checks_on_a_kaggle_shaped_folder(tmp_path, mnist_arrays):
    # docs/photos.md's example config, on train/<id>.jpg and train.csv of id (the file's whole
    # name) and has_cactus (0 or 1), as Kaggle's Aerial Cactus Identification has them.
    section = (ROOT / "docs" / "photos.md").read_text().split("## Labels from a CSV", 1)[1]
    config = tmp_path / "cactus.yaml"
    config.write_text(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    labels = write_images(tmp_path / "train", mnist_arrays, 30)
    rows = [f"{i:04d}.jpg,{CLASSES.index(c)}" for i, c in enumerate(labels, 1)]
    write_csv(tmp_path / "train.csv", "id,has_cactus", rows)
    result = invoke(
        "check", config, "--set", f"data.images={tmp_path / 'train'}",
        "--set", f"data.labels={tmp_path / 'train.csv'}", "--set", f"output_dir={tmp_path}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "data: images of 32x32x3, 2 classes" in result.output
    assert "validation <- 20% of train after the test split, test <- 10% of train" in (
        result.output
    )


# --- several labels per image through the commands (the lead's part of issue #42) ----------


def several_labels(root: Path, mnist: dict) -> Path:
    write_images(root / "train", mnist, 24)
    rows = [f"{i:04d},{a},{b},{c}" for i, (a, b, c) in enumerate(SEVERAL, 1)]
    write_csv(root / "train.csv", "id,haze,water,road", rows)
    return config_file(root, label_column=None, label_columns=["haze", "water", "road"])


def test_check_counts_the_images_of_each_label(tmp_path, mnist_arrays):
    result = invoke("check", several_labels(tmp_path, mnist_arrays))
    assert result.exit_code == 0, result.output
    assert "data: images of 24x24x3, 3 classes" in result.output


def test_several_labels_train(tmp_path, mnist_arrays):
    result = invoke("train", several_labels(tmp_path, mnist_arrays))
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "out")
    assert json.loads((run / "classes.json").read_text()) == ["haze", "water", "road"]
    assert sorted(json.loads((run / "thresholds.json").read_text())) == ["haze", "road", "water"]


def test_summary_without_the_csv_assumes_two_classes(kaggle):
    config = config_file(kaggle, labels=str(kaggle / "none.csv"))
    result = invoke("summary", config)
    assert result.exit_code == 0, result.output
    assert f"{kaggle / 'none.csv'} is not there, so its classes are unknown: assumed 2" in (
        result.output
    )
