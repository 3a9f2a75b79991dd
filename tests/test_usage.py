"""cnnlab as a new user meets it: run from any folder, output to a log file, files others can
read, a summary without data, a quiet stderr."""

from __future__ import annotations

import importlib
import os
import platform
import re
import stat
import subprocess
import sys

import pytest

import cnnlab
from cnnlab.config import load_config
from cnnlab.utils.errors import ConfigError

from .helpers import CONFIGS, MNIST_NPZ


@pytest.mark.subprocess
def test_a_run_from_another_folder_logged_to_files(tmp_path):
    # As CI, nohup and Slurm run it: stdout and stderr are files, the folder is not the
    # checkout, and the umask is the usual 022.
    out, err = tmp_path / "train.log", tmp_path / "train.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        result = subprocess.run(
            [
                sys.executable, "-m", "cnnlab", "train", str(CONFIGS / "mnist_mlp.yaml"),
                "--set", "data.max_samples=300", "--set", "train.epochs=2",
                "--set", f"output_dir={tmp_path / 'runs'}",
            ],
            cwd=tmp_path, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: os.umask(0o022), timeout=240,
        )  # fmt: skip
    log = out.read_text()
    assert result.returncode == 0, log + err.read_text()
    # The bundled MNIST was found although ./data/mnist.npz does not exist here.
    assert "270 train, 30 validation, 300 test images of 28x28x1" in log
    # verbose: auto in a file is one line per epoch, not a progress bar redrawn with \r.
    assert "\r" not in log and "\b" not in log
    assert len(re.findall(r"^\d+/\d+ - .*val_loss: ", log, flags=re.M)) == 2
    # TensorFlow's start-up notices (oneDNN, CUDA drivers, absl) are not shown.
    assert err.read_text() == ""
    (run_dir,) = (tmp_path / "runs").iterdir()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run_dir.iterdir() if p.is_file()}
    assert {"report.html", "model.keras", "metrics.json", "config.yaml"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


@pytest.mark.skipif(platform.machine() != "x86_64", reason="oneDNN is asked for on x86-64 only")
@pytest.mark.parametrize("value, kept", [(None, "1"), ("0", "0"), ("false", "false")])
def test_onednn_is_asked_for_unless_the_variable_is_set(monkeypatch, value, kept):
    # TensorFlow's own default is Eigen on x86-64 CPUs without VNNI, bfloat16 or AMX.
    if value is None:
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    else:
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", value)
    importlib.reload(cnnlab)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == kept


@pytest.mark.skipif(platform.machine() != "x86_64", reason="oneDNN is asked for on x86-64 only")
def test_the_device_line_names_the_kernels_tensorflow_runs():
    # This process imported cnnlab before TensorFlow, as `cnnlab` does: the variable is set,
    # TensorFlow honoured it, and the line that a run prints and records says so.
    from cnnlab.utils.environment import describe_device, gpus, start_backend_quietly

    start_backend_quietly("tensorflow")
    if gpus():
        pytest.skip("the device line names the GPUs here")
    kernels = "Eigen" if os.environ["TF_ENABLE_ONEDNN_OPTS"] in ("0", "false") else "oneDNN"
    assert describe_device() == f"CPU ({os.cpu_count()} threads, {kernels} kernels)"


def test_the_bundled_mnist_is_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(CONFIGS / "mnist_mlp.yaml")
    assert cfg.data.path == MNIST_NPZ.resolve()
    # One in ./data is preferred to the bundled copy.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist.npz").write_bytes(b"")
    assert load_config(CONFIGS / "mnist_mlp.yaml").data.path == tmp_path / "data" / "mnist.npz"


def test_a_missing_file_named_explicitly_is_still_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.path: file not found: .*nope\.npz"):
        load_config(CONFIGS / "mnist_mlp.yaml", [f"data.path={tmp_path / 'nope.npz'}"])


def test_summary_needs_no_data_but_check_does(cli, tmp_path, monkeypatch):
    # A fresh clone: the Kaggle CSVs the config names have not been made.
    monkeypatch.chdir(tmp_path)
    summary = cli("summary", CONFIGS / "mnist_kaggle_deep_cnn.yaml")
    assert summary.exit_code == 0, summary.output
    assert "parameters: 936,426 (936,426 trainable, 0 non-trainable)" in summary.output
    check = cli("check", CONFIGS / "mnist_kaggle_deep_cnn.yaml")
    assert check.exit_code == 2
    assert f"data.train: file not found: {tmp_path / 'data' / 'kaggle' / 'train.csv'}" in (
        check.output
    )


def test_summary_of_an_image_folder_config_without_the_folder(cli, tmp_path):
    result = cli(
        "summary", CONFIGS / "catsdogs_convnet.yaml", "--set", f"data.root={tmp_path / 'none'}"
    )
    assert result.exit_code == 0, result.output
    assert "its classes are unknown: assumed 2" in result.output
    assert "parameters: 991,041" in result.output


def test_new_files_follow_the_umask(tmp_path):
    from cnnlab.utils.atomic import atomic_write

    previous = os.umask(0o077)
    try:
        atomic_write(tmp_path / "private.txt", "x")
        os.umask(0o002)
        atomic_write(tmp_path / "shared.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o664


def test_verbose_auto_is_the_bar_in_a_terminal_and_lines_in_a_file(monkeypatch):
    from cnnlab.config import TrainConfig

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert TrainConfig().fit_verbose() == 1
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert TrainConfig().fit_verbose() == 2
    assert TrainConfig(verbose=0).fit_verbose() == 0


def test_only_tensorflow_notices_are_kept_off_stderr(capfd):
    from cnnlab.utils.environment import STARTUP_NOISE, stderr_without

    with stderr_without(STARTUP_NOISE):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                    b"written to STDERR\n")  # fmt: skip
        os.write(2, b"I0000 00:00:1 2120 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:1 2120 cuda_dnn.cc:1] could not create cudnn handle\n")
        os.write(2, b"I0000 00:00:1 2120 cudart_stub.cc:31] Could not find cuda drivers\n")
        os.write(2, b"Traceback: a real Python error\n")
    assert capfd.readouterr().err == (
        "E0000 00:00:1 2120 cuda_dnn.cc:1] could not create cudnn handle\n"
        "Traceback: a real Python error\n"
    )


def test_a_damaged_resume_model_is_named_when_resuming(cli, tmp_path):
    from cnnlab.config import dump_config
    from cnnlab.runs import epoch_model_file
    from cnnlab.training.resume_record import ResumeRecord

    cfg = load_config(
        CONFIGS / "mnist_mlp.yaml",
        [f"output_dir={tmp_path}", "data.max_samples=100", "train.epochs=3"],
    )
    run = tmp_path / "mnist_mlp-20260101-000000"
    (run / ".resume").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "state.json").write_text('{"state": "interrupted"}')
    ResumeRecord(epoch=1, model_file=epoch_model_file(1), phases=[{"name": "phase1"}]).save(run)
    (run / ".resume" / epoch_model_file(1)).write_bytes(b"PK\x03\x04 cut short")
    result = cli("train", "--resume", run)
    assert result.exit_code == 1
    assert f"{run / '.resume' / 'epoch-0001.keras'}: damaged: not a complete .keras file" in (
        result.output
    )
    assert "not found" not in result.output.lower()
