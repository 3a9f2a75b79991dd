"""`cnnlab predict`: image files, folders and globs through a trained run (or several), decoded
as the run's training images were, with its test-time augmentation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from .helpers import CONFIGS, invoke, train_runs
from .images import write_class_folders

SIZE = 32


@pytest.fixture(scope="module")
def photos(tmp_path_factory, mnist_arrays):
    """Two runs (seeds 1 and 2) of a cats-vs-dogs task, and a folder of new photos."""
    tmp = tmp_path_factory.mktemp("predict")
    root = write_class_folders(tmp / "train", mnist_arrays, 12)
    runs = train_runs(tmp, root, "--seeds", "1,2")
    assert len(runs) == 2
    new = write_class_folders(tmp / "new", mnist_arrays, 3, offset=40)
    (new / "cats" / "more").mkdir()
    shutil.copy(next((new / "dogs").glob("*.jpg")), new / "cats" / "more" / "deep.jpg")
    (new / ".DS_Store").write_bytes(b"\x00")
    (new / "notes.txt").write_text("not a picture")
    return runs, new


def expected_probabilities(run_dir: Path, paths: list[Path], flip: bool = False) -> np.ndarray:
    """P(dogs) computed here: Pillow decode to RGB at SIZE, the saved model, its sigmoid."""
    import keras

    model = keras.models.load_model(run_dir / "model.keras")
    x = np.stack(
        [
            np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
            for p in paths
        ]
    )
    p = model.predict(x, verbose=0)[:, 0]
    if flip:
        p = (p + model.predict(x[:, :, ::-1], verbose=0)[:, 0]) / 2
    return p


def test_a_folder_is_searched_recursively_skipping_system_files(photos, tmp_path):
    (run, _), new = photos
    out = tmp_path / "p.csv"
    result = invoke("predict", run, new, "-o", out)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["path", "predicted", "probability", "cats", "dogs"]
    paths = [Path(p) for p in frame["path"]]
    assert len(paths) == 7 and new / "cats" / "more" / "deep.jpg" in paths
    assert all(p.suffix in (".jpg", ".png") for p in paths)
    np.testing.assert_allclose(frame["dogs"], expected_probabilities(run, paths), atol=1e-5)
    np.testing.assert_allclose(frame["cats"] + frame["dogs"], 1.0, atol=1e-5)
    assert (frame["predicted"] == np.where(frame["dogs"] > 0.5, "dogs", "cats")).all()
    assert frame["probability"].tolist() == frame[["cats", "dogs"]].max(axis=1).tolist()
    assert "wrote 7 predictions to" in result.output
    assert "ignored 1 file that is not an image" in result.output


def test_files_and_globs_without_repeats(photos, tmp_path):
    (run, _), new = photos
    one = sorted((new / "dogs").glob("*.png"))[0]
    out = tmp_path / "p.csv"
    result = invoke("predict", run, one, str(new / "*" / "*.jpg"), one, "-o", out)
    assert result.exit_code == 0, result.output
    paths = pd.read_csv(out)["path"].tolist()
    jpgs = sorted(str(p) for p in new.glob("*/*.jpg"))
    assert paths == [str(one), *jpgs]


def test_unreadable_files_are_listed_skipped_and_change_the_exit_code(photos, tmp_path):
    (run, _), new = photos
    good = sorted((new / "cats").glob("*.jpg"))[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "text.png"
    text.write_text("hello")
    out = tmp_path / "p.csv"
    result = invoke("predict", run, good, broken, text, "-o", out)
    assert result.exit_code == 3
    assert f"{broken}: damaged image" in result.output
    assert f"{text}: not an image" in result.output
    assert pd.read_csv(out)["path"].tolist() == [str(good)]


def test_several_runs_average_their_probabilities(photos, tmp_path):
    runs, new = photos
    singles = []
    for i, run in enumerate(runs):
        result = invoke("predict", run, new, "-o", tmp_path / f"{i}.csv")
        assert result.exit_code == 0, result.output
        singles.append(pd.read_csv(tmp_path / f"{i}.csv"))
    result = invoke("predict", *runs, new, "-o", tmp_path / "both.csv")
    assert result.exit_code == 0, result.output
    both = pd.read_csv(tmp_path / "both.csv")
    assert not np.allclose(singles[0]["dogs"], singles[1]["dogs"], atol=1e-3)
    np.testing.assert_allclose(
        both["dogs"], (singles[0]["dogs"] + singles[1]["dogs"]) / 2, atol=2e-6
    )


def test_an_existing_output_is_kept_without_overwrite(photos, tmp_path):
    (run, _), new = photos
    out = tmp_path / "p.csv"
    out.write_text("keep me")
    result = invoke("predict", run, new, "-o", out)
    assert result.exit_code == 1
    assert f"{out}: already exists; pass --overwrite" in result.output
    assert out.read_text() == "keep me"
    assert invoke("predict", run, new, "-o", out, "--overwrite").exit_code == 0
    assert len(pd.read_csv(out)) == 7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["nowhere"],
            "nowhere: not a run directory (no config.yaml); give RUN_DIR first, then the images",
        ),
        ([], "give image files, folders or patterns after the run directories"),
        (["missing.jpg"], "missing.jpg: no such file or folder"),
        (["nothing/*.jpg"], "nothing/*.jpg: no file matches this pattern"),
    ],
)
def test_bad_arguments_are_one_line(photos, args, message):
    (run, _), _ = photos
    result = invoke("predict", *([] if args[:1] == ["nowhere"] else [run]), *args)
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {message}"


def test_a_digit_png_goes_through_an_mnist_run(tmp_path, mnist_arrays, quick):
    result = invoke(
        "train", CONFIGS / "mnist_small_cnn.yaml", *quick(tmp_path / "out", 600, 1),
        "--set", "model.filters=[8, 16]",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = [p.parent for p in (tmp_path / "out").glob("*/model.keras")]
    digits = mnist_arrays["x_test"][:6]
    for i, digit in enumerate(digits):
        Image.fromarray(digit).save(tmp_path / f"digit{i}.png")
    result = invoke("predict", run, tmp_path / "digit*.png", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "p.csv")
    import keras

    expected = keras.models.load_model(run / "model.keras").predict(digits[..., None], verbose=0)
    assert list(frame.columns[3:]) == [str(d) for d in range(10)]
    np.testing.assert_allclose(frame.iloc[:, 3:].to_numpy(), expected, atol=1e-5)
    assert frame["predicted"].tolist() == expected.argmax(axis=1).tolist()


def test_a_run_with_test_time_flip_predicts_the_average_with_the_mirror(photos, tmp_path):
    _, new = photos
    root = photos[0][0].parent.parent / "train"
    (run,) = train_runs(tmp_path, root, "--set", "model.tta=horizontal_flip")
    out = tmp_path / "p.csv"
    assert invoke("predict", run, new, "-o", out).exit_code == 0
    frame = pd.read_csv(out)
    paths = [Path(p) for p in frame["path"]]
    expected = expected_probabilities(run, paths, flip=True)
    np.testing.assert_allclose(frame["dogs"], expected, atol=1e-5)
    assert not np.allclose(expected_probabilities(run, paths), expected, atol=1e-4)


def test_chunks_give_the_same_predictions(photos, tmp_path, monkeypatch):
    import cnnlab.commands.predict

    (run, _), new = photos
    (new.parent / "broken.png").write_bytes(b"\x89PNG broken")
    args = [run, new, new.parent / "broken.png"]
    whole = invoke("predict", *args, "-o", tmp_path / "whole.csv")
    monkeypatch.setattr(cnnlab.commands.predict, "CHUNK", 2)
    chunked = invoke("predict", *args, "-o", tmp_path / "chunked.csv")
    assert whole.exit_code == chunked.exit_code == 3
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "whole.csv"), pd.read_csv(tmp_path / "chunked.csv"), atol=1e-6
    )


def test_no_readable_image_is_an_error(photos, tmp_path):
    (run, _), _ = photos
    (tmp_path / "a.jpg").write_bytes(b"no")
    result = invoke("predict", run, tmp_path / "a.jpg", "-o", tmp_path / "p.csv")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: none of the 1 image files could be read (first: {tmp_path / 'a.jpg'}: "
        "not an image (Pillow cannot identify it))"
    )
    assert not (tmp_path / "p.csv").exists()
