"""What a run shows: plots, per-class report, report.html; the compare, summary, check commands."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnlab.commands.compare import COLUMNS
from cnnlab.reports import (
    CONFUSED_COLUMNS,
    PER_CLASS_COLUMNS,
    most_confused,
    plot_misclassified,
    write_class_report,
    write_html_report,
)

from .helpers import CONFIGS, invoke

REPORT_FILES = {
    "curves.png", "confusion_matrix.png", "misclassified.png", "per_class.csv",
    "classification_report.txt", "most_confused.csv", "report.html", "state.json",
}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs")
    result = invoke(
        "train", CONFIGS / "mnist_small_cnn.yaml", "--set", f"output_dir={out}",
        "--set", "train.epochs=2", "--set", "train.verbose=0", "--set", "data.max_samples=500",
        "--set", "train.tensorboard=true",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = out.iterdir()
    return run


def test_every_report_file_is_written(run_dir):
    assert REPORT_FILES <= {p.name for p in run_dir.iterdir()}
    assert json.loads((run_dir / "state.json").read_text())["state"] == "completed"
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("name", "min_size", "max_size"),
    [
        ("curves.png", (800, 300), (1200, 500)),
        ("confusion_matrix.png", (450, 450), (800, 800)),
        ("misclassified.png", (900, 1100), (1300, 1500)),
    ],
)
def test_plots_are_real_pngs_of_sensible_size(run_dir, name, min_size, max_size):
    with Image.open(run_dir / name) as image:
        assert image.format == "PNG"
        assert min_size[0] <= image.width <= max_size[0], image.size
        assert min_size[1] <= image.height <= max_size[1], image.size
        colours = image.convert("L").getextrema()
    assert colours[0] < colours[1]  # not a blank canvas


def test_per_class_report_matches_the_test_set(run_dir):
    frame = pd.read_csv(run_dir / "per_class.csv")
    assert list(frame.columns) == PER_CLASS_COLUMNS
    assert frame["class"].astype(str).tolist() == [str(i) for i in range(10)]
    assert frame["support"].sum() == 500  # max_samples test images
    assert frame[["precision", "recall", "f1"]].stack().between(0, 1).all()
    text = (run_dir / "classification_report.txt").read_text()
    assert "test set" in text and "macro avg" in text and "accuracy" in text


def test_most_confused_lists_the_pairs_most_first():
    names = ["cat", "dog", "fox"]
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    y_pred = np.array([1, 1, 1, 0, 0, 1, 2, 1, 1, 1, 0, 2])
    assert most_confused(y_true, y_pred, names) == [
        ("cat", "dog", 3), ("fox", "dog", 3), ("dog", "cat", 1), ("dog", "fox", 1),
        ("fox", "cat", 1),
    ]  # fmt: skip
    assert most_confused(y_true, y_pred, names, min_count=2) == [
        ("cat", "dog", 3),
        ("fox", "dog", 3),
    ]
    assert most_confused(y_true, y_true, names) == []


def test_report_lists_the_most_confused_pairs(tmp_path):
    names = ["cat", "dog", "fox"]
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([1, 1, 0, 1, 2, 1, 1, 2])
    write_class_report(y_true, y_pred, names, tmp_path, "test")
    pairs = pd.read_csv(tmp_path / "most_confused.csv")
    assert list(pairs.columns) == CONFUSED_COLUMNS
    assert pairs.values.tolist() == [["cat", "dog", 2], ["fox", "dog", 2], ["dog", "fox", 1]]
    page = write_html_report(tmp_path).read_text()
    assert "<h2>Most confused classes</h2>" in page
    table = page.split("<h2>Most confused classes</h2>")[1].split("</section>")[0]
    rows = re.findall(r"<tr>\s*<td>(\w+)</td>\s*<td>(\w+)</td>\s*<td>(\d+)</td>", table)
    assert rows == [("cat", "dog", "2"), ("fox", "dog", "2"), ("dog", "fox", "1")]
    write_class_report(y_true, y_true, names, tmp_path, "test")
    assert "No image was confused" in write_html_report(tmp_path).read_text()


def test_html_report_is_self_contained(run_dir):
    page = (run_dir / "report.html").read_text()
    for section in (
        "Metrics", "Timings", "Learning curves", "Confusion matrix", "Most confused classes",
        "Per-class results", "Most confident mistakes", "Model summary", "Config", "Environment",
    ):  # fmt: skip
        assert f"<h2>{section}</h2>" in page
    assert page.count("src='data:image/png;base64,") == 3
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    assert "completed" in page and "104,202" in page


def test_evaluate_redraws_the_reports(run_dir):
    drawn = ("report.html", "confusion_matrix.png", "curves.png", "misclassified.png")
    before = {name: (run_dir / name).read_bytes() for name in drawn}
    for name in drawn:
        (run_dir / name).unlink()
    assert invoke("evaluate", run_dir).exit_code == 0
    for name in drawn[1:]:  # the same model on the same images draws the same pictures
        assert (run_dir / name).read_bytes() == before[name], name
    page = (run_dir / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 3


def coloured_pixels(path) -> int:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    return int((rgb.max(axis=-1) - rgb.min(axis=-1) > 30).sum())


def test_the_mistakes_grid_draws_the_map_over_the_photo_not_instead(tmp_path):
    """Grey photos: where Grad-CAM's map is 0 they stay grey; where it is hot, coloured."""
    x = np.full((4, 24, 24, 1), 128, np.uint8)
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])

    def cold(images, classes):
        return np.zeros(images.shape[:3])

    def hot_right(images, classes):
        heat = np.zeros(images.shape[:3])
        heat[:, :, 12:] = 1
        return heat

    plot_misclassified(x, y, probs, ["a", "b"], tmp_path / "cold.png", "test", heatmaps=cold)
    plot_misclassified(x, y, probs, ["a", "b"], tmp_path / "hot.png", "test", heatmaps=hot_right)
    assert coloured_pixels(tmp_path / "cold.png") == 0
    assert coloured_pixels(tmp_path / "hot.png") > 4 * 1000  # half of each ~192-pixel tile


def fake_run(root, name, state=None, metrics=None, history=None):
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text("data: {loader: mnist}\nmodel: {builder: mlp}\n")
    if state is not None:
        (run / "state.json").write_text(json.dumps(state))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    if history is not None:
        pd.DataFrame(history).to_csv(run / "history.csv", index=False)
    return run


def test_compare_shows_finished_failed_and_partial_runs(run_dir, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    fake_run(root, "failed-run", {"state": "failed", "reason": "data.csv:3: empty cell"})
    fake_run(  # its process (an impossible pid) is gone: killed mid-training
        root, "killed-run", {"state": "running", "pid": 2**22 + 7, "host": os.uname().nodename},
        history={"epoch": [0, 1], "val_accuracy": [0.5, 0.75], "accuracy": [0.4, 0.6]},
    )  # fmt: skip
    fake_run(root, "old-run")  # no state.json, no metrics
    csv = tmp_path / "table.csv"
    md = tmp_path / "table.md"
    result = invoke("compare", run_dir, root, "--csv", csv, "--markdown", md)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(csv)
    assert list(table.columns) == COLUMNS
    rows = table.set_index("run")
    assert rows.loc[run_dir.name, "state"] == "completed"
    assert rows.loc[run_dir.name, "params"] == 104_202
    assert rows.loc["failed-run", "state"] == "failed: data.csv:3: empty cell"
    assert rows.loc["killed-run", "state"] == "interrupted"
    assert rows.loc["killed-run", "best_val_accuracy"] == 0.75
    assert rows.loc["killed-run", "epochs"] == 2
    assert rows.loc["old-run", "state"] == "interrupted"
    assert table["run"].iloc[0] == run_dir.name  # the only test accuracy sorts first
    actual, predicted, count = pd.read_csv(run_dir / "most_confused.csv").iloc[0]
    assert rows.loc[run_dir.name, "most_confused"] == f"{actual}->{predicted} {count}"
    assert rows["most_confused"].drop(run_dir.name).isna().all()  # no report, no pair
    assert f"| {actual}->{predicted} {count} |" in md.read_text()
    assert md.read_text().startswith("| run | state | dataset |")
    for name in ("failed-run", "killed-run", "old-run", run_dir.name):
        assert name in result.output


def test_compare_sorting_and_errors(run_dir, tmp_path):
    bad = invoke("compare", run_dir, "--sort", "speed")
    assert bad.exit_code == 1 and "--sort speed: not a column" in bad.output
    empty = invoke("compare", tmp_path)
    assert empty.exit_code == 1 and "no run directories" in empty.output
    assert invoke("compare", tmp_path / "nope").exit_code == 1


def test_compare_lists_a_run_whose_config_is_a_yaml_bomb_as_unreadable(tmp_path):
    run = fake_run(tmp_path, "bomb-run")
    levels = ["a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    levels += [f"a{n}: &a{n} [{','.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    (run / "config.yaml").write_text("\n".join([*levels, "data: {loader: *a9}"]) + "\n")
    result = invoke("compare", tmp_path, "--csv", tmp_path / "table.csv")
    assert result.exit_code == 0, result.output
    row = pd.read_csv(tmp_path / "table.csv").iloc[0]
    assert row["state"] == "interrupted (unreadable config.yaml)" and pd.isna(row["dataset"])


def test_failed_training_records_why(kaggle_dir, tmp_path):
    broken = tmp_path / "test.csv"
    broken.write_text((kaggle_dir / "test.csv").read_text().replace(",0,", ",,", 1))
    result = invoke(
        "train", CONFIGS / "mnist_kaggle_deep_cnn.yaml", "--set", f"output_dir={tmp_path / 'o'}",
        "--set", f"data.train={kaggle_dir / 'train.csv'}", "--set", f"data.test={broken}",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.startswith(f"cnnlab: run directory {tmp_path / 'o'}")
    assert f"error: {broken}:2: column" in result.output and "empty cell" in result.output
    (run,) = (tmp_path / "o").iterdir()
    state = json.loads((run / "state.json").read_text())
    assert state["state"] == "failed" and "empty cell" in state["reason"]


def test_summary_prints_layers_parameters_and_flops():
    result = invoke("summary", CONFIGS / "mnist_deep_cnn.yaml", "--set", "data.max_samples=100")
    assert result.exit_code == 0, result.output
    assert "parameters: 936,426 (936,426 trainable, 0 non-trainable)" in result.output
    # 2 x multiply-adds of the four convolutions and three dense layers, per 28x28 image
    assert "FLOPs per image (conv and dense layers): 38.32 M" in result.output


def test_check_passes_on_a_good_config():
    result = invoke("check", CONFIGS / "mnist_lenet5.yaml", "--set", "data.max_samples=200")
    assert result.exit_code == 0, result.output
    assert "train: 180 images (0:" in result.output
    assert "model: lenet5, 61,706 parameters" in result.output
    import tensorflow as tf

    # What auto must pick, worked out here from the CPU's flags and the visible GPUs.
    gpus = len(tf.config.list_physical_devices("GPU"))
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    if gpus == 0 and ("avx512_bf16" in flags or "amx_bf16" in flags):
        expected = "precision mixed_bfloat16 (auto: CPU has AVX512_BF16/AMX)"
    elif gpus == 0:
        expected = "precision float32 (auto: CPU without native bfloat16)"
    else:
        expected = "precision mixed_"  # by the GPU's compute capability
    assert expected in result.output
    replicas = gpus if gpus >= 2 else 1  # one per GPU on a multi-GPU machine
    assert f"{replicas} replica(s), global batch 128 ({128 / replicas:g} per" in result.output
    assert result.output.strip().splitlines()[-1].startswith("ok: `cnnlab train")


def test_check_fails_clearly_on_broken_inputs(kaggle_dir, tmp_path):
    bad_config = invoke("check", CONFIGS / "mnist_lenet5.yaml", "--set", "train.epoch=3")
    assert bad_config.exit_code == 2 and "did you mean 'epochs'" in bad_config.output

    broken = tmp_path / "train.csv"
    broken.write_text((kaggle_dir / "train.csv").read_text().replace("\n5,", "\n15,", 1))
    bad_data = invoke(
        "check",
        CONFIGS / "mnist_kaggle_deep_cnn.yaml",
        "--set",
        f"data.train={broken}",
        "--set",
        f"data.test={kaggle_dir / 'test.csv'}",
    )
    assert bad_data.exit_code == 1
    assert "column 'label' (column 1): 15 is not a class index 0-9" in bad_data.output
    assert "ok:" not in bad_data.output

    blocker = tmp_path / "file"
    blocker.write_text("")
    bad_out = invoke("check", CONFIGS / "mnist_lenet5.yaml", "--set", f"output_dir={blocker}/runs")
    assert bad_out.exit_code == 1 and "cannot create run directories there" in bad_out.output


def purple_pixels(path) -> int:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    return int(((rgb[..., 0] > 100) & (rgb[..., 1] < 50) & (rgb[..., 2] > 100)).sum())


def test_curves_mark_phase_boundaries(tmp_path):
    from cnnlab.reports import plot_curves

    frame = pd.DataFrame(
        {
            "epoch": range(6), "phase": [1, 1, 1, 2, 2, 2],
            "loss": [1.0, 0.8, 0.7, 0.5, 0.4, 0.35], "val_loss": [1.1, 0.9, 0.8, 0.6, 0.5, 0.52],
            "accuracy": [0.6, 0.7, 0.75, 0.8, 0.85, 0.86],
            "val_accuracy": [0.55, 0.65, 0.7, 0.8, 0.82, 0.81],
        }
    )  # fmt: skip
    frame.to_csv(tmp_path / "phased.csv", index=False)
    frame.drop(columns="phase").to_csv(tmp_path / "plain.csv", index=False)
    plot_curves(tmp_path / "phased.csv", tmp_path / "phased.png", best_epoch=5)
    plot_curves(tmp_path / "plain.csv", tmp_path / "plain.png", best_epoch=5)
    assert purple_pixels(tmp_path / "plain.png") == 0
    assert purple_pixels(tmp_path / "phased.png") > 50  # the dotted phase line and its label


def test_metrics_say_where_the_time_went(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timings = metrics["timings"]
    assert list(timings) == ["setup", "decode", "health", "fit", "score", "reports"]
    assert all(seconds >= 0 for seconds in timings.values()) and timings["fit"] > 0
    assert timings["fit"] >= metrics["train_seconds"] * 0.9
    # 450 training images: all of them scored, one view; validation and test with the TTA.
    assert metrics["scored"]["train"] == {"images": 450, "views": 1}
    page = (run_dir / "report.html").read_text()
    assert "fit seconds" in page and "reports seconds" in page


def test_the_training_split_is_scored_on_a_sample_of_one_view(tmp_path):
    import keras

    from cnnlab.data import Dataset
    from cnnlab.scoring import score_run

    inputs = keras.Input((4, 4, 1))
    model = keras.Model(
        inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    )
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (40, 4, 4, 1), np.uint8), np.arange(40) % 2
    data = Dataset(images, labels, images[:8], labels[:8], None, None, ["a", "b"])
    results = score_run(tmp_path, model, data, "m.json", splits=("train", "val"),
                        tta="horizontal_flip", train_sample=10)  # fmt: skip
    assert results["scored"] == {"train": {"images": 10, "views": 1},
                                 "val": {"images": 8, "views": 2}}  # fmt: skip
