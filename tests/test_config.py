"""Config loading: every mistake is one line naming the file, line and key."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cnnlab.config import DATA_SCHEMAS, MODEL_SCHEMAS, Config, dump_config, load_config
from cnnlab.utils.errors import ConfigError

from .helpers import CONFIGS, ROOT, SHIPPED_CONFIGS, invoke

GOOD = """\
data:
  loader: mnist
model:
  builder: small_cnn
train:
  epochs: 3
  learning_rate: 1e-3
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides or [])
    return str(info.value)


def test_good_config_fills_defaults(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.name == "exp"  # the file's stem
    assert cfg.train.learning_rate == 0.001  # YAML 1.1 would have read the string '1e-3'
    assert cfg.train.optimizer == "adam" and cfg.train.batch_size == 128
    assert cfg.data.path == (ROOT / "data" / "mnist.npz").resolve()
    assert cfg.output_dir.is_absolute()


@pytest.mark.parametrize("text", ["1e-3", "1E-3", "2.5e+2", "+3e1", "1.0e-4", "5e0"])
def test_exponent_floats(tmp_path, text):
    cfg = load_config(write(tmp_path, GOOD.replace("1e-3", text)))
    assert cfg.train.learning_rate == float(text)


def test_misspelt_key_suggests_the_right_one_with_line(tmp_path):
    path = write(tmp_path, GOOD.replace("  epochs: 3", "  epoch: 3"))
    assert error_of(path) == f"{path}:6: unknown key 'train.epoch'; did you mean 'epochs'?"


def test_misspelt_key_inside_a_loader_schema(tmp_path):
    path = write(tmp_path, GOOD.replace("loader: mnist", "loader: mnist\n  validaton_split: 0.2"))
    assert error_of(path) == (
        f"{path}:3: unknown key 'data.validaton_split'; did you mean 'validation_split'?"
    )


def test_unrelated_unknown_key_lists_valid_keys(tmp_path):
    path = write(tmp_path, GOOD + "wibble: 1\n")
    message = error_of(path)
    assert message.startswith(f"{path}:8: unknown key 'wibble'; valid keys: name, seed,")


def test_unknown_builder_lists_choices_and_suggests(tmp_path):
    path = write(tmp_path, GOOD.replace("small_cnn", "smal_cnn"))
    assert error_of(path) == (
        f"{path}:4: unknown builder 'smal_cnn' at 'model.builder'; did you mean 'small_cnn'? "
        "(choose one of: airbench, alexnet_lite, convnet, deep_cnn, lenet5, mlp, pretrained, "
        "small_cnn, strided_cnn, vgg16)"
    )


def test_unknown_loader_lists_choices(tmp_path):
    path = write(tmp_path, GOOD.replace("loader: mnist", "loader: imagenet"))
    message = error_of(path)
    assert message.startswith(f"{path}:2: unknown loader 'imagenet' at 'data.loader'")
    assert "(choose one of: cifar10, cifar100, image_csv, image_dir, kaggle_csv, mnist)" in message


def test_missing_loader_key(tmp_path):
    path = write(tmp_path, GOOD.replace("  loader: mnist\n", "  validation_split: 0.2\n"))
    assert (
        "'data' needs a 'loader' key; choose one of: cifar10, cifar100, image_csv, image_dir, "
        "kaggle_csv, mnist" in error_of(path)
    )


def test_missing_required_section(tmp_path):
    path = write(tmp_path, "data:\n  loader: mnist\n")
    assert error_of(path) == f"{path}: missing required key 'model'"


def test_wrong_type_names_expected_type_and_value(tmp_path):
    path = write(tmp_path, GOOD.replace("epochs: 3", "epochs: ten"))
    assert error_of(path) == (
        f"{path}:6: train.epochs: Input should be a valid integer; got str 'ten'"
    )


def test_bool_is_not_a_number(tmp_path):
    path = write(tmp_path, GOOD.replace("epochs: 3", "epochs: true"))
    assert "train.epochs: Input should be a valid integer; got bool True" in error_of(path)


def test_out_of_range_value(tmp_path):
    path = write(tmp_path, GOOD.replace("loader: mnist", "loader: mnist\n  validation_split: 1.5"))
    assert error_of(path) == f"{path}:3: data.validation_split: Input should be less than 1"


def test_bad_choice_suggests(tmp_path):
    path = write(tmp_path, GOOD + "  optimizer: adma\n")
    assert error_of(path) == (
        f"{path}:8: train.optimizer: 'adma' is not one of 'adam', 'rmsprop', 'sgd' or 'muon'; "
        "did you mean 'adam'?"
    )


def test_monitor_must_be_a_metric_training_produces(tmp_path):
    path = write(tmp_path, GOOD + "  monitor: val_acc\n")
    assert "train.monitor: 'val_acc' is not one of 'val_loss' or 'val_accuracy'" in error_of(path)


def test_every_problem_is_reported_one_per_line(tmp_path):
    path = write(tmp_path, GOOD.replace("epochs: 3", "epochs: 0\n  batch_size: -1"))
    lines = error_of(path).splitlines()
    assert lines == [
        f"{path}:6: train.epochs: Input should be greater than or equal to 1",
        f"{path}:7: train.batch_size: Input should be greater than or equal to 1",
    ]


def test_list_item_error_names_its_index(tmp_path):
    path = write(
        tmp_path, GOOD.replace("builder: small_cnn", "builder: small_cnn\n  filters: [32, x]")
    )
    assert error_of(path) == (
        f"{path}:5: model.filters.1: Input should be a valid integer; got str 'x'"
    )


def test_duplicate_keys_are_an_error(tmp_path):
    path = write(tmp_path, GOOD + "  epochs: 4\n")
    assert error_of(path) == f"{path}:8: duplicate key 'train.epochs' (first set on line 6)"


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = write(tmp_path, "data:\n  loader: [mnist\nmodel: x\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3:") and "invalid YAML" in message


def test_python_tags_are_refused(tmp_path):
    path = write(tmp_path, GOOD + "  batch_size: !!python/object/apply:os.system ['echo hi']\n")
    message = error_of(path)
    assert message.startswith(f"{path}:8:") and "invalid YAML" in message


def laughs(depth: int) -> list[str]:
    """The anchored values of a "billion laughs" YAML: &a0 holds 9 items, each further level 9
    aliases of the one before, so &aN expands to 9**(N+1) items."""
    levels = ["&a0 [x,x,x,x,x,x,x,x,x]"]
    return levels + [f"&a{n} [{','.join([f'*a{n - 1}'] * 9)}]" for n in range(1, depth + 1)]


def laughs_yaml(depth: int) -> str:
    """Lines `aN: &aN [...]` (line N+1 defines aN), each anchor under a key of its own."""
    return "".join(f"a{n}: {level}\n" for n, level in enumerate(laughs(depth)))


# Loads a config in a process of its own that may use 1 GB at most: without bounds a YAML bomb
# fills memory in seconds. Prints the one-line error, the seconds taken and the peak MB.
BOUNDED_LOAD = """
import resource, sys, time
from cnnlab.config import load_config
from cnnlab.utils.errors import ConfigError
resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))
before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
try:
    load_config(sys.argv[1], sys.argv[2:])
except ConfigError as e:
    print(e)
seconds = time.perf_counter() - start
print(seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def load_bounded(path: Path, *overrides: str) -> tuple[str, float, float]:
    """load_config(path, overrides) in a process of its own: (its error, seconds, peak MB)."""
    done = subprocess.run(
        [sys.executable, "-c", BOUNDED_LOAD, str(path), *overrides],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    *lines, measured = done.stdout.splitlines() or [""]
    assert done.returncode == 0 and lines, done.stdout + done.stderr
    seconds, megabytes = map(float, measured.split())
    return "\n".join(lines), seconds, megabytes


@pytest.mark.subprocess
@pytest.mark.parametrize("depth", [9, 30])
def test_a_yaml_bomb_is_refused_at_once_in_bounded_memory(tmp_path, depth):
    path = write(tmp_path, laughs_yaml(depth) + f"name: *a{depth}\n")
    message, seconds, megabytes = load_bounded(path)
    # a5 is the first anchor past 100,000 values (9**6): its line, not a walk of the rest.
    assert message == (
        f"{path}:6: '&a5' expands through its aliases to 597,871 values, more than the "
        "100,000 a config may hold"
    )
    assert seconds < 1 and megabytes < 100


@pytest.mark.subprocess
def test_a_yaml_bomb_in_a_set_value_is_refused_at_once(tmp_path):
    bomb = "[" + ", ".join(laughs(9)) + "]"  # one line: a --set value
    message, seconds, megabytes = load_bounded(write(tmp_path, GOOD), f"name={bomb}")
    assert message == (
        "--set name=...:1: '&a5' expands through its aliases to 597,871 values, more than the "
        "100,000 a config may hold"
    )
    assert seconds < 1 and megabytes < 100


def test_a_yaml_bomb_in_a_run_config_fails_each_command_in_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(laughs_yaml(9) + "name: *a9\n")
    (tmp_path / "a.png").write_bytes(b"")
    for command in (["evaluate", run], ["predict", run, tmp_path / "a.png"], ["explain", run, "x"]):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert result.output == (
            f"error: {run / 'config.yaml'}:6: '&a5' expands through its aliases to 597,871 "
            "values, more than the 100,000 a config may hold\n"
        )


def test_large_values_are_quoted_by_their_start(tmp_path):
    # 9**4 items under `name`, and the same under a choice: allowed sizes, shown shortened.
    path = write(tmp_path, laughs_yaml(3) + GOOD + "  optimizer: *a3\nname: *a3\n")
    name, optimizer, *unknown = error_of(path).splitlines()
    assert name.startswith(f"{path}:13: name: Input should be a valid string; got list [[[...], ")
    assert optimizer.startswith(f"{path}:12: train.optimizer: [[[...], [...], [...], [...], ...],")
    assert optimizer.endswith("...] is not one of 'adam', 'rmsprop', 'sgd' or 'muon'")
    assert len(name) < 300 and len(optimizer) < 300 and len(unknown) == 4


def test_alias_loops_and_list_keys_are_one_line(tmp_path):
    path = write(tmp_path, GOOD + "loop: &a [x, *a]\n")
    assert error_of(path) == f"{path}:8: alias *a repeats a value that contains it (a loop)"
    path = write(tmp_path, GOOD + "? [a, b]\n: 1\n")
    assert (
        error_of(path)
        == f"{path}:8: a key under '<top level>' is a list or mapping; keys are names"
    )


def test_deep_nesting_and_huge_files_are_refused(tmp_path):
    path = write(tmp_path, GOOD + "name: " + "[" * 100 + "]" * 100 + "\n")
    assert error_of(path) == f"{path}:8: nested more than 64 levels deep"
    path = write(tmp_path, GOOD + "# " + "x" * 1_000_000 + "\n")
    assert error_of(path) == f"{path}: over 1,000,000 bytes, too large for a config"


def test_missing_config_file(tmp_path):
    assert error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: config file not found"


def test_top_level_must_be_a_mapping(tmp_path):
    path = write(tmp_path, "- data\n- model\n")
    assert "the top level must be a mapping" in error_of(path)


def test_missing_data_file_is_named(tmp_path):
    path = write(tmp_path, GOOD.replace("loader: mnist", "loader: mnist\n  path: nowhere.npz"))
    assert error_of(path) == (
        f"{path}:3: data.path: file not found: {(Path.cwd() / 'nowhere.npz').resolve()}"
    )


def test_a_loop_of_symbolic_links_is_named_by_its_key(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    path = write(
        tmp_path, f"data: {{loader: image_dir, root: {tmp_path / 'a'}}}\nmodel: {{builder: mlp}}\n"
    )
    assert error_of(path) == f"{path}:1: data.root: a loop of symbolic links: {tmp_path / 'a'}"
    result = invoke("check", path)
    assert result.exit_code == 2
    assert (
        result.output == f"error: {path}:1: data.root: a loop of symbolic links: {tmp_path / 'a'}\n"
    )


def test_momentum_with_adam_is_refused(tmp_path):
    path = write(tmp_path, GOOD + "  momentum: 0.9\n")
    assert "momentum applies to sgd, muon and rmsprop only" in error_of(path)


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    path = write(tmp_path, GOOD)
    cfg = load_config(path, ["train.epochs=7", "train.learning_rate=3e-4", "model.filters=[8, 16]"])
    assert (cfg.train.epochs, cfg.train.learning_rate, cfg.model.filters) == (7, 3e-4, [8, 16])
    assert error_of(path, ["train.epochs=abc"]) == (
        "--set train.epochs=abc: train.epochs: Input should be a valid integer; got str 'abc'"
    )
    assert error_of(path, ["train.epohcs=3"]) == (
        "--set train.epohcs=3: unknown key 'train.epohcs'; did you mean 'epochs'?"
    )
    assert "expected KEY.PATH=VALUE" in error_of(path, ["train.epochs"])
    assert "'train.epochs' is not a mapping" in error_of(path, ["train.epochs.x=1"])


def test_override_can_switch_builder(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), ["model={builder: mlp, units: [64]}"])
    assert cfg.model.builder == "mlp" and cfg.model.units == [64]


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), ["train.epochs=2"])
    saved = tmp_path / "run" / "config.yaml"
    saved.parent.mkdir()
    saved.write_text(dump_config(cfg))
    assert load_config(saved) == cfg


def reads_kaggle_csv(path: Path) -> bool:
    return yaml.safe_load(path.read_text())["data"]["loader"] == "kaggle_csv"


def load_shipped(path: Path, kaggle_dir: Path) -> Config:
    """A shipped config; Kaggle ones point at files `cnnlab data mnist-to-kaggle` makes and
    image-folder ones at a folder users make, so point them at test copies."""
    loader = yaml.safe_load(path.read_text())["data"]["loader"]
    overrides = {
        "kaggle_csv": [
            f"data.train={kaggle_dir / 'train.csv'}",
            f"data.test={kaggle_dir / 'test.csv'}",
        ],
        "image_dir": [f"data.root={kaggle_dir}"],
    }
    return load_config(path, overrides.get(loader, []))


def test_every_shipped_config_validates(kaggle_dir):
    shipped = SHIPPED_CONFIGS
    assert len(shipped) >= 5
    for path in shipped:
        cfg = load_shipped(path, kaggle_dir)
        assert isinstance(cfg, Config)
        assert cfg.name == (f"study_{path.stem}" if path.parent.name == "study" else path.stem)


# Builders for colour photos and CIFAR (too small or wrong-shaped for MNIST's 28x28x1).
COLOUR_BUILDERS = {"airbench", "alexnet_lite", "convnet", "pretrained", "vgg16"}


def test_the_study_covers_every_mnist_builder_with_one_budget():
    study = [load_config(p) for p in sorted((CONFIGS / "study").glob("*.yaml"))]
    assert {cfg.model.builder for cfg in study} == set(MODEL_SCHEMAS) - COLOUR_BUILDERS
    assert len({cfg.train.model_dump_json() for cfg in study}) == 1  # same training budget


def test_each_builder_has_a_shipped_mnist_config(kaggle_dir):
    builders = {load_shipped(p, kaggle_dir).model.builder for p in CONFIGS.glob("mnist_*.yaml")}
    assert builders == set(MODEL_SCHEMAS) - COLOUR_BUILDERS


def test_registry_names_match_schema_names():
    from cnnlab.data import LOADERS
    from cnnlab.models import BUILDERS

    assert set(LOADERS) == set(DATA_SCHEMAS)
    assert set(BUILDERS) == set(MODEL_SCHEMAS)
    for name, fn in {**LOADERS, **BUILDERS}.items():
        assert fn.__name__ == name


def test_config_errors_do_not_import_tensorflow(tmp_path):
    bad = write(tmp_path, GOOD.replace("epochs: 3", "epochs: ten"))
    code = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from cnnlab.cli import app
        result = CliRunner().invoke(app, ["train", {str(bad)!r}])
        assert result.exit_code == 2, result.output
        assert "train.epochs" in result.output
        heavy = sorted(m for m in ("tensorflow", "keras", "pandas", "sklearn") if m in sys.modules)
        assert not heavy, heavy
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_help_does_not_import_tensorflow():
    code = (
        "import sys, cnnlab.cli; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(cnnlab.cli.app, ['--help']); assert r.exit_code == 0; "
        "assert 'train' in r.output; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_schedule_and_reduce_on_plateau_conflict(tmp_path):
    path = write(tmp_path, GOOD + "  lr_schedule: cosine\n  reduce_lr_on_plateau: {factor: 0.5}\n")
    assert "reduce_lr_on_plateau needs lr_schedule: constant" in error_of(path)
    cfg = load_config(write(tmp_path, GOOD + "  lr_schedule: cosine\n"))
    assert cfg.train.lr_schedule == "cosine"


def test_null_where_a_path_is_needed(tmp_path):
    path = write(tmp_path, "data: {loader: kaggle_csv, train: null}\nmodel: {builder: mlp}\n")
    assert error_of(path) == f"{path}:1: data.train: expected a file path; got null"


def test_tracking_takes_a_server_url_as_given_and_a_folder_made_absolute(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.chdir(tmp_path)
    folder = load_config(path, ["tracking.mlflow.uri=mlruns"]).tracking.mlflow
    assert folder.uri == str(tmp_path / "mlruns") and folder.experiment is None
    for uri in ("http://127.0.0.1:5000", "https://mlflow.example.org", "sqlite:///x.db"):
        assert load_config(path, [f"tracking.mlflow.uri={uri}"]).tracking.mlflow.uri == uri
    assert load_config(path, ["tracking.mlflow.uri=file:///tmp/x"]).tracking.mlflow.uri == "/tmp/x"
    assert load_config(path).tracking.mlflow is None
    assert "unknown key 'tracking.mlflow.url'; did you mean 'uri'?" in error_of(
        path, ["tracking.mlflow.uri=x", "tracking.mlflow.url=y"]
    )
    assert "tracking.mlflow.uri" in error_of(path, ["tracking.mlflow.uri="])


def test_the_backend_defaults_to_keras_backend_and_torch_is_refused_with_its_reason(
    tmp_path, monkeypatch
):
    path = write(tmp_path, GOOD)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert load_config(path).backend == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert load_config(path).backend == "jax"
    assert load_config(path, ["backend=tensorflow"]).backend == "tensorflow"
    torch = error_of(write(tmp_path, GOOD + "backend: torch\n", "torch.yaml"))
    assert torch.startswith(f"{tmp_path / 'torch.yaml'}:8: backend: torch is not supported yet")
    assert "keras-team/keras#23316" in torch
    assert "--set backend=torch: backend: torch is not" in error_of(path, ["backend=torch"])
    assert error_of(path, ["backend=jaxx"]).endswith(
        "backend: 'jaxx' is not one of 'tensorflow' or 'jax'; did you mean 'jax'?"
    )


@pytest.mark.parametrize(
    ("backend", "distribute", "suggested"),
    [("tensorflow", "data_parallel", "train.distribute: mirrored"),
     ("jax", "mirrored", "train.distribute: data_parallel")],
)  # fmt: skip
def test_each_distribute_choice_names_the_backend_it_runs_on(
    tmp_path, backend, distribute, suggested
):
    message = error_of(
        write(tmp_path, GOOD), [f"backend={backend}", f"train.distribute={distribute}"]
    )
    assert f"train.distribute {distribute} runs on the" in message and suggested in message
    assert load_config(write(tmp_path, GOOD), ["backend=jax", "train.distribute=data_parallel"])


def test_multi_worker_is_refused_with_the_upstream_issue_and_what_to_use(tmp_path):
    message = error_of(write(tmp_path, GOOD), ["train.distribute=multi_worker"])
    assert "train.distribute: TensorFlow's multi-worker training fails" in message
    assert "keras-team/keras#20585" in message
    assert message.endswith("use backend: jax with train.distribute: data_parallel")


def test_xla_with_an_affine_augmentation_on_tensorflow_is_one_line(tmp_path):
    path = write(tmp_path, GOOD + "  jit_compile: true\n")
    error = error_of(path, ["model.augmentation={translation: 0.1, flip: horizontal}"])
    # The line of the key that asks for XLA.
    assert error.startswith(
        f"{path}:8: train.jit_compile: true cannot compile the random_affine layer that "
        "model.augmentation.translation adds"
    )
    assert "ImageProjectiveTransformV3" in error and "\n" not in error
    # Flips compile; so does everything on JAX, and auto leaves XLA off for the affine layer.
    load_config(path, ["model.augmentation={flip: horizontal}"])
    load_config(path, ["model.augmentation={rotation: 5}", "backend=jax"])
    load_config(path, ["model.augmentation={rotation: 5}", "train.jit_compile=auto"])


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("  nesterov: true\n", "nesterov needs optimizer: sgd or muon with a momentum above 0"),
        ("  warmup: 0.2\n", "warmup needs lr_schedule: cosine or linear"),
        ("  lr_schedule: cosine\n  lr_end: 1.5\n", "train.lr_end: Input should be less than"),
        ("  lr_multipliers: {beta: -1}\n", "train.lr_multipliers.beta: Input should be greater"),
    ],
)
def test_airbench_training_keys_are_checked(tmp_path, keys, message):
    assert message in error_of(write(tmp_path, GOOD + keys))


def test_airbench_training_keys_fill_every_phase(tmp_path):
    cfg = load_config(write(tmp_path, GOOD.replace("  epochs: 3\n", """\
  optimizer: sgd
  momentum: 0.85
  nesterov: true
  weight_decay: 0.0089
  lr_multipliers: {beta: 64.0}
  lr_schedule: linear
  warmup: 0.23
  warmup_from: 0.2
  lr_end: 0.07
  ema: {momentum: 0.9}
  phases: [{epochs: 2}, {epochs: 1, learning_rate: 0.1}]
""")))  # fmt: skip
    first, second = cfg.train.stages()
    for phase in (first, second):
        assert (phase.nesterov, phase.lr_multipliers, phase.warmup) == (True, {"beta": 64.0}, 0.23)
        assert phase.ema.overwrite_every == 5
    assert (first.learning_rate, second.learning_rate) == (1e-3, 0.1)
