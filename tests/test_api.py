"""The Python API on a tiny real run: the CLI stands on it, so both give the same results and
the same errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import cnnlab

from .helpers import CONFIGS, ROOT, invoke

SMALL = {
    "data.max_samples": 300, "train.epochs": 1, "train.verbose": 0, "model.filters": [8, 16],
}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> cnnlab.Run:
    out = tmp_path_factory.mktemp("out")
    return cnnlab.train(CONFIGS / "mnist_small_cnn.yaml", {**SMALL, "output_dir": out})


@pytest.fixture(scope="module")
def digits(tmp_path_factory, mnist_arrays):
    folder = tmp_path_factory.mktemp("digits")
    images = mnist_arrays["x_test"][:6]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    return folder, images


def test_import_cnnlab_loads_neither_tensorflow_nor_keras():
    code = (
        "import sys, cnnlab; cnnlab.Run; cnnlab.train; import cnnlab.cli; "
        "assert not {'tensorflow', 'keras'} & set(sys.modules), 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_a_run_tells_what_it_is(run):
    assert isinstance(run, cnnlab.Run) and run == cnnlab.load_run(run.path)
    assert run.state["state"] == "completed"
    assert run.config.train.epochs == 1 and run.config.model.filters == [8, 16]
    assert 0 <= run.metrics["test"]["accuracy"] <= 1 and run.metrics["epochs_run"] == 1
    assert list(run.history["epoch_seconds"].notna()) == [True]
    assert run.classes == [str(i) for i in range(10)]
    page = run._repr_html_()
    assert "completed" in page and "test accuracy" in page and "data:image/png;base64" in page


def test_predict_matches_the_cli_for_files_images_and_arrays(run, digits, tmp_path):
    folder, images = digits
    csv = tmp_path / "cli.csv"
    assert invoke("predict", run.path, folder, "-o", csv).exit_code == 0
    from_cli = pd.read_csv(csv)
    from_files = run.predict(folder)
    assert list(from_files.columns) == ["path", "predicted", "probability", *run.classes]
    pd.testing.assert_frame_equal(from_files.astype({"predicted": str}),
                                  from_cli.astype({"predicted": str}))  # fmt: skip
    # The same pixels in memory: decoded as files are, so the same probabilities.
    expected = from_files[run.classes].to_numpy()
    for pictures in ([Image.fromarray(a) for a in images], images, list(images[..., None])):
        frame = run.predict(pictures)
        assert list(frame["path"]) == [f"image-{i}" for i in range(len(images))]
        np.testing.assert_allclose(frame[run.classes].to_numpy(), expected, atol=1e-6)
    # An ensemble of one run twice is that run.
    twice = cnnlab.predict([run, run.path], folder)
    np.testing.assert_allclose(twice[run.classes].to_numpy(), expected, atol=1e-6)


def test_evaluate_gives_what_the_cli_prints(run):
    import json

    result = invoke("evaluate", run.path)
    assert result.exit_code == 0, result.output
    assert run.evaluate() == cnnlab.evaluate([run]) == json.loads(result.stdout)


def test_explain_writes_a_heatmap_per_image(run, digits, tmp_path):
    folder, _ = digits
    result = run.explain(folder, output=tmp_path / "cams")
    assert len(result["images"]) == 6 and result["skipped"] == []
    assert (tmp_path / "cams" / "gradcam.png").is_file()


def test_a_config_as_a_dict_and_overrides_as_strings(tmp_path):
    from cnnlab.api import load

    data = yaml.safe_load((CONFIGS / "mnist_small_cnn.yaml").read_text())
    data["train"]["learning_rate"] = 0.001  # YAML 1.1 reads 1e-3 as a string
    cfg = load(data, ["train.epochs=3"])
    assert (cfg.name, cfg.train.epochs) == ("experiment", 3)
    assert load(cfg) is cfg and load(cfg, {"train.epochs": 4}).train.epochs == 4


@pytest.mark.parametrize(
    ("call", "error", "cli_args"),
    [
        (lambda: cnnlab.train("missing.yaml"), cnnlab.ConfigError, ["train", "missing.yaml"]),
        (
            lambda: cnnlab.train(CONFIGS / "mnist_mlp.yaml", {"train.epochs": 0}),
            cnnlab.ConfigError,
            ["train", CONFIGS / "mnist_mlp.yaml", "--set", "train.epochs=0"],
        ),
        (lambda: cnnlab.Run("no-such-run"), cnnlab.RunDirError, ["evaluate", "no-such-run"]),
    ],
)
def test_errors_are_the_ones_the_cli_prints(call, error, cli_args):
    with pytest.raises(error) as raised:
        call()
    assert isinstance(raised.value, cnnlab.CnnlabError)
    result = invoke(*cli_args)
    assert result.exit_code != 0 and result.output.strip() == f"error: {raised.value}"
