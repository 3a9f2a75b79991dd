"""cnnlab tune: a search space checked against the config, trials as runs, a shared study."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cnnlab.commands.tune import load_space
from cnnlab.config import load_config
from cnnlab.utils.errors import ConfigError

from .helpers import CONFIGS, ROOT
from .tracked import check_logged

optuna = pytest.importorskip("optuna")

CONFIG = CONFIGS / "mnist_mlp.yaml"
TINY = [
    "data.max_samples=400", "train.epochs=2", "train.verbose=0", "model.units=[32]",
]  # fmt: skip
SPACE = """\
train.learning_rate: {log_uniform: [1e-4, 1e-2]}
model.dropout: {choice: [0.0, 0.25]}
model.units: {choice: [[32], [64, 32]]}
"""


def write_space(tmp_path, text=SPACE):
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train.learnin_rate: {uniform: [0.1, 0.2]}\n",
         ":1: train.learnin_rate: 0.1 does not fit .*unknown key 'train.learnin_rate'; did you "
         "mean 'learning_rate'"),
        ("\ntrain.optimizer: {choice: [adam, adamw]}\n",
         ":2: train.optimizer: 'adamw' does not fit .*not one of"),
        ("model.dropout: {uniform: [0.5, 0.1]}\n",
         ":1: model.dropout: uniform needs \\[low, high\\]"),
        ("train.epochs: {int: [1.5, 3]}\n", "int needs \\[low, high\\] integers"),
        ("train.learning_rate: {log_uniform: [0, 1]}\n", "log_uniform needs a low bound above 0"),
        ("train.learning_rate: {normal: [0, 1]}\n", "expected one of {log_uniform: ..."),
        ("model.dropout: {choice: []}\n", "choice needs a non-empty list"),
        ("", "empty search space"),
    ],
)  # fmt: skip
def test_space_mistakes_name_the_line_and_key(tmp_path, text, message):
    path = write_space(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_space(path, CONFIG, [])
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_tiny_study_makes_runs_a_best_config_and_a_compare_table(tmp_path, cli):
    space = write_space(tmp_path)
    out = tmp_path / "out"
    sets = [a for o in [*TINY, f"output_dir={out}"] for a in ("--set", o)]
    # Tracked in MLflow as well, in a local folder store.
    store = tmp_path / "mlruns"
    result = cli("tune", CONFIG, "--space", space, "--trials", 2, *sets, "--mlflow", store)
    assert result.exit_code == 0, result.output
    folder = out / "mnist_mlp-tune"
    runs = sorted(p.name for p in folder.iterdir() if (p / "config.yaml").is_file())
    assert [r.rsplit("-", 2)[0] for r in runs] == [f"mnist_mlp-tune-t000{i}" for i in range(2)]
    assert (folder / "study.db").is_file() and (folder / "trials.csv").is_file()
    study = optuna.load_study(
        study_name="mnist_mlp-tune", storage=f"sqlite:///{folder / 'study.db'}"
    )
    assert len(study.trials) == 2
    best = load_config(folder / "best.yaml")
    assert best.train.learning_rate == pytest.approx(study.best_params["train.learning_rate"])
    assert best.model.units in ([32], [64, 32]) and best.data.max_samples == 400
    # Each trial is a run with the parameters it was given.
    for trial in study.trials:
        cfg = load_config(
            next(folder.glob(f"mnist_mlp-tune-t{trial.number:04d}-*")) / "config.yaml"
        )
        assert cfg.train.learning_rate == pytest.approx(trial.params["train.learning_rate"])
        assert cfg.model.dropout == trial.params["model.dropout"]
    table = cli("compare", folder)
    assert table.exit_code == 0 and table.output.count("mnist_mlp-tune-t000") == 2

    # In MLflow: the study is a parent run, each trial a child run logged in full.
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name("mnist_mlp").experiment_id])
    (parent,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.run_name == "mnist_mlp-tune" and parent.info.status == "FINISHED"
    assert len(children) == 2 and len(found) == 3
    for child in children:
        check_logged(client, child, Path(child.data.tags["run_dir"]))
    best_child = max(children, key=lambda r: r.data.metrics["final_val_accuracy"])
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(study.best_value)
    assert best_child.data.metrics["final_val_accuracy"] == pytest.approx(study.best_value)
    assert float(parent.data.params["best.train.learning_rate"]) == pytest.approx(
        study.best_params["train.learning_rate"]
    )


def test_pruned_trials_stop_early_and_skip_later_phases(tmp_path):
    from cnnlab.commands.tune import tune

    space = write_space(tmp_path, "train.learning_rate: {log_uniform: [1e-4, 1e-2]}\n")
    phases = "train.phases=[{epochs: 2}, {epochs: 2, optimizer: sgd}]"
    # val_accuracy is never above 2: every trial is pruned after its first epoch.
    result = tune(CONFIG, space, 2, overrides=[*TINY, phases, f"output_dir={tmp_path / 'out'}"],
                  pruner=optuna.pruners.ThresholdPruner(lower=2.0))  # fmt: skip
    assert result["best"] is None
    study = optuna.load_study(study_name=result["study"], storage=result["storage"])
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    for trial in study.trials:
        history = (tmp_path / "out" / result["study"]).glob(f"*-t{trial.number:04d}-*/history.csv")
        assert len(next(history).read_text().splitlines()) == 2  # header + one epoch of two


@pytest.mark.subprocess
def test_two_processes_share_one_study(tmp_path):
    space = write_space(tmp_path)
    out = tmp_path / "out"
    sets = [a for o in [*TINY, f"output_dir={out}"] for a in ("--set", o)]
    cmd = [sys.executable, "-m", "cnnlab", "tune", str(CONFIG), "--space", str(space),
           "--trials", "1", "--study", "shared", *sets]  # fmt: skip
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    study = optuna.load_study(
        study_name="shared", storage=f"sqlite:///{out / 'shared' / 'study.db'}"
    )
    assert sorted(t.number for t in study.trials) == [0, 1]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    runs = [p for p in (out / "shared").iterdir() if (p / "metrics.json").is_file()]
    assert len(runs) == 2


def test_study_name_must_be_a_folder_name(tmp_path, cli):
    space = write_space(tmp_path)
    result = cli("tune", CONFIG, "--space", space, "--study", "../elsewhere")
    assert result.exit_code == 2
    assert result.output.startswith("error: --study '../elsewhere': use letters, digits")
