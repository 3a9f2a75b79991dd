"""The Kaggle CSV reader: every malformation named by file, line and column."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data.kaggle_csv import read_digits_csv
from cnnlab.utils.errors import DataError

from .helpers import digits_frame

HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))


def row(label, pixels=None) -> str:
    pixels = [0] * 784 if pixels is None else pixels
    return ",".join(str(v) for v in ([label] if label is not None else []) + list(pixels))


def write(tmp_path: Path, *lines: str, name: str = "train.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def error_of(path: Path, require_label: bool = True) -> str:
    with pytest.raises(DataError) as info:
        read_digits_csv(path, require_label=require_label)
    return str(info.value)


def test_reads_real_digits_as_uint8(kaggle_dir, mnist_arrays):
    x, y = read_digits_csv(kaggle_dir / "train.csv", require_label=True)
    assert x.shape == (400, 28, 28, 1) and x.dtype == np.uint8
    assert y.dtype == np.int32
    np.testing.assert_array_equal(x[..., 0], mnist_arrays["x_train"][:400])
    np.testing.assert_array_equal(y, mnist_arrays["y_train"][:400])


def test_unlabelled_file(kaggle_dir):
    x, y = read_digits_csv(kaggle_dir / "test.csv", require_label=False)
    assert x.shape == (50, 28, 28, 1) and y is None


def test_cache_returns_the_same_arrays(kaggle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    x1, y1 = read_digits_csv(kaggle_dir / "train.csv", require_label=True)
    assert len(list((tmp_path / "cache" / "csv").glob("*.npz"))) == 1
    x2, y2 = read_digits_csv(kaggle_dir / "train.csv", require_label=True)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_cache_follows_content_not_name(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    path = write(tmp_path, HEADER, row(3))
    assert read_digits_csv(path, require_label=True)[1].tolist() == [3]
    write(tmp_path, HEADER, row(5))
    assert read_digits_csv(path, require_label=True)[1].tolist() == [5]


@pytest.mark.parametrize("id_column", ["id", "index", "ImageId", "Unnamed: 0"])
def test_id_column_is_dropped(tmp_path, id_column):
    path = write(tmp_path, f"{id_column},{HEADER}", "0," + row(7, [9] * 784), "1," + row(2))
    x, y = read_digits_csv(path, require_label=True)
    assert y.tolist() == [7, 2] and x[0].min() == 9 and x[1].max() == 0


def test_trailing_blank_lines_are_fine(tmp_path):
    path = write(tmp_path, HEADER, row(1), "", "")
    assert read_digits_csv(path, require_label=True)[1].tolist() == [1]


def test_long_row(tmp_path):
    path = write(tmp_path, HEADER, row(1), row(1) + ",0")
    assert error_of(path) == f"{path}:3: expected 785 fields (as in the header), found 786 fields"


def test_extra_field_on_the_first_row_is_not_taken_as_an_index(tmp_path):
    path = write(tmp_path, HEADER, row(1) + ",0", row(1))
    assert error_of(path) == f"{path}:2: expected 785 fields (as in the header), found 786 fields"


def test_short_row_is_not_padded(tmp_path):
    path = write(tmp_path, HEADER, row(1), row(1, [0] * 780))
    assert error_of(path) == (f"{path}:3: expected 785 fields (as in the header), found 781 fields")


def test_blank_line_between_rows(tmp_path):
    path = write(tmp_path, HEADER, row(1), "", row(2))
    assert (
        error_of(path) == f"{path}:3: expected 785 fields (as in the header), found an empty line"
    )


def test_empty_cell(tmp_path):
    pixels = ["0"] * 784
    pixels[10] = ""
    path = write(tmp_path, HEADER, row(1), row(4, pixels))
    assert error_of(path) == f"{path}:3: column 'pixel10' (column 12): empty cell"


def test_non_numeric_pixel(tmp_path):
    pixels = [0] * 784
    pixels[5] = "abc"
    path = write(tmp_path, HEADER, row(1), row(1), row(4, pixels))
    assert error_of(path) == f"{path}:4: column 'pixel5' (column 7): 'abc' is not a number"


@pytest.mark.parametrize("value", [256, -1, 1000])
def test_pixel_out_of_range(tmp_path, value):
    pixels = [0] * 784
    pixels[783] = value
    path = write(tmp_path, HEADER, row(1, pixels))
    assert error_of(path) == (
        f"{path}:2: column 'pixel783' (column 785): {value} is outside the pixel range 0-255"
    )


def test_fractional_pixel(tmp_path):
    pixels = [0] * 784
    pixels[0] = 12.5
    path = write(tmp_path, HEADER, row(1, pixels))
    assert error_of(path) == f"{path}:2: column 'pixel0' (column 2): 12.5 is not an integer 0-255"


def test_already_scaled_pixels_are_refused_with_a_hint(tmp_path):
    path = write(tmp_path, HEADER, row(1, [0.5] * 784))
    message = error_of(path)
    assert message.startswith(f"{path}:2: column 'pixel0' (column 2): 0.5 is not an integer 0-255")
    assert "already scaled to 0-1" in message


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        (10, "10 is not a class index 0-9"),
        (-1, "-1 is not a class index 0-9"),
        (3.5, "3.5 is not a class index 0-9"),
        ("x", "'x' is not a number"),
    ],
)
def test_label_outside_classes(tmp_path, label, problem):
    path = write(tmp_path, HEADER, row(1), row(label))
    assert error_of(path) == f"{path}:3: column 'label' (column 1): {problem}"


@pytest.mark.parametrize(
    "huge", ["99999999999999999999999", "-99999999999999999999999", "18446744073709551616"]
)
def test_numbers_past_64_bits_are_named_on_their_line(tmp_path, huge):
    # pandas keeps them as Python ints, in a column of objects.
    path = write(tmp_path, HEADER, row(1), row(2), row(huge))
    assert error_of(path) == f"{path}:4: column 'label' (column 1): {huge} is not a class index 0-9"
    pixels = [0] * 784
    pixels[300] = huge
    path = write(tmp_path, HEADER, row(1), row(2), row(3, pixels))
    assert error_of(path) == (
        f"{path}:4: column 'pixel300' (column 302): {huge} is outside the pixel range 0-255"
    )


def test_missing_label_column(tmp_path):
    path = write(tmp_path, HEADER.removeprefix("label,"), row(None))
    assert error_of(path) == f"{path}:1: no 'label' column; a training file needs one"


def test_wrong_number_of_pixel_columns(tmp_path):
    header = "label," + ",".join(f"pixel{i}" for i in range(783))
    path = write(tmp_path, header, row(1, [0] * 783))
    assert error_of(path) == (
        f"{path}:1: found 783 pixel columns besides label/id, expected 784 (images of 28x28x1)"
    )


def test_empty_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("")
    assert error_of(path) == f"{path}: file is empty"


def test_header_only(tmp_path):
    path = write(tmp_path, HEADER)
    assert error_of(path) == f"{path}: has a header but no data rows"


def test_headerless_file(tmp_path):
    path = write(tmp_path, row(1, [0] * 784), row(2))
    assert "looks like data, not a header" in error_of(path)


def test_missing_file(tmp_path):
    assert error_of(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: file not found"


def test_binary_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"\xff\xfe\x00\x81" * 100)
    assert error_of(path).startswith(f"{path}: ")


def test_other_image_shapes(tmp_path, mnist_arrays):
    # Any H x W x C layout works when the config says so (here 14x14 crops).
    x = mnist_arrays["x_train"][:5, :14, :14]
    frame = digits_frame(np.zeros((5, 784), np.uint8), mnist_arrays["y_train"][:5])
    frame = frame.iloc[:, : 1 + 196]
    frame.iloc[:, 1:] = x.reshape(5, -1)
    frame.to_csv(tmp_path / "small.csv", index=False)
    xs, ys = read_digits_csv(tmp_path / "small.csv", image_shape=(14, 14, 1), require_label=True)
    np.testing.assert_array_equal(xs[..., 0], x)


@pytest.fixture
def small_chunks(monkeypatch):
    # Parse 3 rows at a time, so a few lines cross several chunk boundaries.
    # (cnnlab.data.kaggle_csv the attribute is the loader function; patch the module itself)
    monkeypatch.setattr(sys.modules["cnnlab.data.kaggle_csv"], "CHUNK_ROWS", 3)
    monkeypatch.setenv("CNNLAB_CACHE_DIR", "")


def test_chunked_reading_gives_the_same_arrays(kaggle_dir, small_chunks, mnist_arrays, monkeypatch):
    monkeypatch.setattr(sys.modules["cnnlab.data.kaggle_csv"], "CHUNK_ROWS", 64)
    x, y = read_digits_csv(kaggle_dir / "train.csv", require_label=True)
    np.testing.assert_array_equal(x[..., 0], mnist_arrays["x_train"][:400])
    np.testing.assert_array_equal(y, mnist_arrays["y_train"][:400])


def test_errors_in_later_chunks_name_the_right_line(tmp_path, small_chunks):
    pixels = [0] * 784
    pixels[3] = 300
    path = write(tmp_path, HEADER, *[row(1)] * 7, row(2, pixels))
    assert error_of(path) == (
        f"{path}:9: column 'pixel3' (column 5): 300 is outside the pixel range 0-255"
    )
    path = write(tmp_path, HEADER, *[row(1)] * 4, row(12))
    assert error_of(path) == f"{path}:6: column 'label' (column 1): 12 is not a class index 0-9"
    path = write(tmp_path, HEADER, *[row(1)] * 5, row(1, [0] * 700))
    assert error_of(path) == f"{path}:7: expected 785 fields (as in the header), found 701 fields"


def test_blank_lines_across_chunks(tmp_path, small_chunks):
    path = write(tmp_path, HEADER, row(1), row(2), row(3), "", "", "", "", row(4))
    assert error_of(path) == (
        f"{path}:5: expected 785 fields (as in the header), found an empty line"
    )
    path = write(tmp_path, HEADER, row(1), row(2), "", "", "", "", "")
    assert read_digits_csv(path, require_label=True)[1].tolist() == [1, 2]
