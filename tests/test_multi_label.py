"""Several labels per image, end to end on tiny real photos: two-digit mosaics tagged with both
digits, trained with a sigmoid per class; scores, thresholds, reports, evaluate, explain, serve
and export read the run as such."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from PIL import Image

from cnnlab.data.pipeline import epoch_order
from cnnlab.inference import choose_thresholds, multi_label_scores

from .helpers import Server, invoke
from .images import TINTS

NAMES = ("zero", "one", "two")
CLASSES = sorted(NAMES)  # tags are classes in text order


def write_mosaics(folder, mnist: dict, count: int, seed: int, offset: int = 0) -> list[list[str]]:
    """`count` images of one or two digits (0-2) side by side, tinted per digit, as
    folder/m<i>.png; returns [name, tags] rows (tags: the digits' names, space-separated)."""
    rng = np.random.default_rng(seed)
    x, y = mnist["x_train"][offset:], mnist["y_train"][offset:]
    pools = [np.flatnonzero(y == d) for d in range(len(NAMES))]
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        digits = rng.choice(len(NAMES), size=1 + int(rng.random() < 0.5), replace=False)
        halves = [np.zeros((28, 28, 3), np.uint8), np.zeros((28, 28, 3), np.uint8)]
        for side, digit in zip(rng.permutation(2), digits, strict=False):
            picture = x[rng.choice(pools[digit])]
            halves[side] = (picture[..., None] * TINTS[digit]).astype(np.uint8)
        Image.fromarray(np.concatenate(halves, axis=1)).save(folder / f"m{i}.png")
        rows.append([f"m{i}", " ".join(NAMES[d] for d in sorted(digits))])
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist_arrays):
    tmp = tmp_path_factory.mktemp("multi")
    rows = write_mosaics(tmp / "images", mnist_arrays, 360, seed=0)
    pd.DataFrame(rows, columns=["image_name", "tags"]).to_csv(tmp / "train.csv", index=False)
    config = tmp / "mosaics.yaml"
    config.write_text(
        f"data: {{loader: image_csv, images: {tmp / 'images'}, labels: {tmp / 'train.csv'},\n"
        "       tags_column: tags,\n"
        "       image_size: [28, 56], validation_split: 0.25, test_split: 0.2}\n"
        "model: {builder: small_cnn, filters: [16, 32]}\n"
        "train: {epochs: 6, batch_size: 16, learning_rate: 0.002, verbose: 0}\n"
        f"output_dir: {tmp / 'out'}\n"
    )
    result = invoke("train", config)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp / "out").iterdir()
    return run_dir, tmp


def test_scores_beat_the_class_frequency_baseline_clearly(run):
    run_dir, tmp = run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("train", "val", "test"):
        assert set(metrics[split]) == {
            "loss", "mean_average_precision", "micro_f1", "macro_f1", "subset_accuracy"
        }  # fmt: skip
    test = metrics["test"]
    # The baseline predicts each class's frequency for every image: its average precision
    # is the class's share of positives, about 0.5 for these tags.
    tags = pd.read_csv(tmp / "train.csv")["tags"].str.split()
    baseline = np.mean([tags.map(lambda t, n=name: n in t).mean() for name in NAMES])
    assert 0.4 < baseline < 0.6
    assert test["mean_average_precision"] > baseline + 0.3, test
    assert test["micro_f1"] > 0.7 and test["subset_accuracy"] > 0.4, test
    assert json.loads((run_dir / "classes.json").read_text()) == CLASSES


def test_thresholds_are_chosen_on_validation_and_reported(run):
    run_dir, _ = run
    thresholds = json.loads((run_dir / "thresholds.json").read_text())
    assert list(thresholds) == CLASSES
    assert all(0 < t < 1 for t in thresholds.values())
    per_class = pd.read_csv(run_dir / "per_class.csv")
    assert list(per_class["class"]) == CLASSES
    assert np.allclose(per_class["threshold"], list(thresholds.values()))
    assert (per_class["average_precision"] > 0.7).all()
    page = (run_dir / "report.html").read_text()
    assert "val mean average precision" in page and "at each class's threshold" in page
    assert not (run_dir / "confusion_matrix.png").exists()
    assert (run_dir / "misclassified.png").is_file()


def test_evaluate_scores_at_the_runs_thresholds(run):
    run_dir, _ = run
    result = invoke("evaluate", run_dir)
    assert result.exit_code == 0, result.output
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("val", "test"):
        for key, value in metrics[split].items():
            assert evaluation[split][key] == pytest.approx(value, abs=1e-6), (split, key)


def test_explain_draws_each_class_above_its_threshold(run, mnist_arrays, tmp_path):
    run_dir, _ = run
    rows = write_mosaics(tmp_path / "new", mnist_arrays, 3, seed=5, offset=30000)
    result = invoke("explain", run_dir, tmp_path / "new", "-o", tmp_path / "explained")
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (tmp_path / "explained").glob("*-gradcam.png"))
    # One PNG per image and class it was given (or its most probable class when none).
    assert {name.split("-")[0] for name in pngs} == {name for name, _ in rows}
    assert all(name.split("-")[1] in NAMES for name in pngs)


def test_predict_and_a_tags_submission_name_the_classes_above_their_thresholds(
    run, mnist_arrays, tmp_path
):
    run_dir, _ = run
    rows = write_mosaics(tmp_path / "test", mnist_arrays, 12, seed=7, offset=30000)
    thresholds = json.loads((run_dir / "thresholds.json").read_text())
    result = invoke("predict", run_dir, tmp_path / "test", "-o", tmp_path / "table.csv")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "table.csv", keep_default_na=False)
    table.index = [Path(p).stem for p in table["path"]]
    expected = {
        name: " ".join(c for c in CLASSES if table.loc[name, c] >= thresholds[c])
        for name in table.index
    }
    assert table["predicted"].to_dict() == expected
    # Planet's shape: image_name,tags; the sample's order, ids without extension.
    names = [name for name, _ in rows][::-1]
    pd.DataFrame({"image_name": names, "tags": "zero one"}).to_csv(tmp_path / "s.csv", index=False)
    result = invoke(
        "predict", run_dir, tmp_path / "test", "--sample-submission", tmp_path / "s.csv",
        "-o", tmp_path / "sub.csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    made = pd.read_csv(tmp_path / "sub.csv", keep_default_na=False)
    assert list(made["image_name"]) == names
    assert list(made["tags"]) == [expected[name] for name in names]
    answers = pd.DataFrame(rows, columns=["image_name", "tags"])
    answers.to_csv(tmp_path / "answers.csv", index=False)
    result = invoke("data", "score", tmp_path / "sub.csv", tmp_path / "answers.csv", "--tags")
    assert result.exit_code == 0 and "mean F2" in result.output, result.output


@pytest.mark.subprocess
def test_serve_answers_each_class_and_the_set_above_threshold(run, mnist_arrays, tmp_path):
    run_dir, _ = run
    write_mosaics(tmp_path / "new", mnist_arrays, 2, seed=6, offset=30000)
    thresholds = json.loads((run_dir / "thresholds.json").read_text())
    server = Server(tmp_path, run_dir)
    try:
        assert requests.get(server.url + "/health", timeout=30).json()["multi_label"] is True
        files = [
            ("file", (p.name, p.read_bytes(), "image/png"))
            for p in sorted((tmp_path / "new").iterdir())
        ]
        answer = requests.post(server.url + "/predict", files=files, timeout=60).json()
    finally:
        log = server.stop()
    assert "Traceback" not in log, log
    answer = answer["predictions"]
    assert len(answer) == 2
    for prediction in answer:
        expected = [n for n in CLASSES if prediction["probabilities"][n] >= thresholds[n]]
        assert prediction["labels"] == expected
        assert prediction["thresholds"] == pytest.approx(thresholds, abs=1e-6)
        # Each class's own probability: they need not sum to one.
        assert all(0 <= p <= 1 for p in prediction["probabilities"].values())


def test_export_records_the_thresholds_and_agrees(run):
    run_dir, _ = run
    result = invoke("export", run_dir, "--format", "tflite", "--samples", "40")
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "export" / "export.json").read_text())["model.tflite"]
    assert record["thresholds"] == json.loads((run_dir / "thresholds.json").read_text())
    assert record["metric"] == "mean_average_precision"
    assert abs(record["accuracy"] - record["keras_accuracy"]) < 0.02


def test_class_weights_and_balanced_sampling_work_per_label(run, tmp_path):
    run_dir, tmp = run
    result = invoke(
        "train", tmp / "mosaics.yaml", "--set", f"output_dir={tmp_path}", "--set", "train.epochs=1",
        "--set", "train.class_weight=balanced", "--set", "data.sampling=balanced",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "class weights of positives: one" in result.output


def test_balanced_sampling_draws_rare_classes_as_often_as_common_ones():
    labels = np.zeros((1000, 3), np.uint8)
    labels[:900, 0] = 1  # common
    labels[900:990, 1] = 1  # rare
    labels[990:, 2] = 1  # rarest
    drawn = labels[epoch_order(len(labels), seed=0, epoch=0, labels=labels)].sum(axis=0)
    assert drawn.min() > 0.25 * len(labels), drawn


def test_thresholds_maximise_each_classes_f1():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 2)) < [0.5, 0.1]).astype(np.uint8)
    probs = np.clip(0.35 * y + rng.random((400, 2)) * 0.6, 0, 1)
    chosen = choose_thresholds(probs, y)
    from sklearn.metrics import f1_score

    for k in range(2):
        best = f1_score(y[:, k], probs[:, k] >= chosen[k])
        for t in np.linspace(0.05, 0.95, 91):
            assert f1_score(y[:, k], probs[:, k] >= t) <= best + 1e-12
    scored = multi_label_scores(probs, y, chosen)
    assert scored["macro_f1"] >= multi_label_scores(probs, y)["macro_f1"]


def test_val_accuracy_cannot_pick_the_best_epoch_of_several_labels(run):
    _, tmp = run
    result = invoke("check", tmp / "mosaics.yaml", "--set", "train.monitor=val_accuracy")
    assert result.exit_code == 2
    assert "set train.monitor: val_loss" in result.output
