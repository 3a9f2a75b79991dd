"""Competition-shaped folders of real photos from `cnnlab train` to a scored submission (about
ten minutes each on a CPU).

python -m pytest -m slow tests/test_kaggle_competitions.py

Uses the Kaggle Dogs vs. Cats photos in ../shared/data beside the checkout; bench/kaggle_shapes.py
makes the folders (Dogs vs. Cats with its numbered test1/ and sampleSubmission.csv, and Planet's
tags shape of one or two photos side by side), keeping the test photos' answers aside.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from .helpers import ROOT, invoke_ok, unpack

pytestmark = pytest.mark.slow
BUDGET = "8m"


@pytest.fixture(scope="module")
def competitions(tmp_path_factory):
    photos = unpack("dogs-vs-cats-train-200px.tar", tmp_path_factory.mktemp("photos"))
    out = tmp_path_factory.mktemp("kaggle") / "data"
    shapes = ROOT / "bench" / "kaggle_shapes.py"
    subprocess.run([sys.executable, shapes, photos / "train", out, "--test", "1000"], check=True)
    return out


def score_lines(submission, answers) -> str:
    return invoke_ok("data", "score", submission, answers).output


def test_dogs_vs_cats_from_its_flat_folder_to_a_scored_submission(competitions, tmp_path):
    folder = competitions / "dogs_vs_cats"
    invoke_ok("train", folder / "train", "--set", f"train.time_budget={BUDGET}",
              "--set", f"output_dir={tmp_path / 'runs'}")  # fmt: skip
    (run,) = (tmp_path / "runs").iterdir()
    invoke_ok("predict", run, folder / "test1", "--sample-submission",
              folder / "sampleSubmission.csv", "--label-map", "cat=0,dog=1",
              "-o", tmp_path / "submission.csv")  # fmt: skip
    made = pd.read_csv(tmp_path / "submission.csv", dtype=str)
    sample = pd.read_csv(folder / "sampleSubmission.csv", dtype=str)
    assert list(made.columns) == ["id", "label"] and list(made["id"]) == list(sample["id"])
    answers = pd.read_csv(folder / "answers.csv", dtype=str)
    accuracy = (made["label"] == answers["label"]).mean()
    assert accuracy > 0.8, accuracy
    assert f"accuracy {accuracy:.4f} on 1,000 images" in score_lines(
        tmp_path / "submission.csv", folder / "answers.csv"
    )


def test_tags_of_photo_mosaics_beat_the_class_frequency_baseline(competitions, tmp_path):
    folder = competitions / "tags"
    config = tmp_path / "tags.yaml"
    config.write_text(
        f"data: {{loader: image_csv, images: {folder / 'train-jpg'}, "
        f"labels: {folder / 'train_v2.csv'}, tags_column: tags, image_size: [96, 192], "
        "resize_mode: pad}\n"
        "model: {builder: airbench, filters: [32, 64, 128, 256], "
        "augmentation: {flip: horizontal}}\n"
        f"train: {{epochs: 40, time_budget: {BUDGET}, batch_size: 32, optimizer: adam, "
        "learning_rate: 1e-3, weight_decay: 0.3, lr_schedule: cosine, monitor: val_loss}\n"
        f"output_dir: {tmp_path / 'runs'}\n"
    )
    invoke_ok("train", config)
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    tags = pd.read_csv(folder / "train_v2.csv")["tags"].str.split()
    baseline = sum(tags.map(lambda t, c=c: c in t).mean() for c in ("bw", "cat", "dog")) / 3
    # The run's own test set is the held-out folder below: mAP on its validation split.
    assert metrics["val"]["mean_average_precision"] > baseline + 0.2, (metrics, baseline)
    invoke_ok("predict", run, folder / "test-jpg", "--sample-submission",
              folder / "sample_submission.csv", "-o", tmp_path / "submission.csv")  # fmt: skip
    lines = score_lines(tmp_path / "submission.csv", folder / "answers.csv")
    f2 = float(re.search(r"mean F2 ([0-9.]+) on 666 images", lines).group(1))
    assert f2 > 0.8, lines
