"""train.precision and train.jit_compile: what `auto` picks, and what a run records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlab.utils import environment
from cnnlab.utils.environment import cpu_has_bf16, resolve_precision

from .helpers import CONFIGS

pytestmark = pytest.mark.precision

ZEN4_FLAGS = "fpu vme sse sse2 avx2 avx512f avx512bw avx512_bf16 vaes"
SAPPHIRE_RAPIDS_FLAGS = "fpu sse avx512f amx_bf16 amx_tile amx_int8"
SKYLAKE_FLAGS = "fpu sse sse2 avx2 avx512f avx512bw avx512_vnni"


def fake_cpuinfo(tmp_path, monkeypatch, flags: str | None) -> None:
    path = tmp_path / "cpuinfo"
    if flags is not None:
        path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    monkeypatch.setattr(environment, "CPUINFO", str(path))
    monkeypatch.delenv(environment.BF16_VARIABLE, raising=False)


@pytest.mark.parametrize(
    ("flags", "native"),
    [(ZEN4_FLAGS, True), (SAPPHIRE_RAPIDS_FLAGS, True), (SKYLAKE_FLAGS, False), (None, False)],
)
def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch, flags, native):
    fake_cpuinfo(tmp_path, monkeypatch, flags)
    assert cpu_has_bf16() is native


@pytest.fixture
def cpu_only():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("auto picks by GPU here")


@pytest.mark.parametrize(
    ("flags", "policy"), [(ZEN4_FLAGS, "mixed_bfloat16"), (SKYLAKE_FLAGS, "float32")]
)
def test_auto_precision_on_cpu(cpu_only, tmp_path, monkeypatch, flags, policy):
    fake_cpuinfo(tmp_path, monkeypatch, flags)
    assert resolve_precision("auto")[0] == policy


@pytest.mark.parametrize(
    ("value", "policy", "why"),
    [
        ("1", "mixed_bfloat16", "auto: CNNLAB_CPU_BF16=1"),
        ("0", "float32", "auto: CNNLAB_CPU_BF16=0"),
    ],
)
def test_the_variable_decides_auto_whatever_the_cpu(cpu_only, tmp_path, monkeypatch, value,
                                                    policy, why):  # fmt: skip
    # On an AVX2 CPU as on an AMX one: the variable wins over the flags.
    for flags in (SKYLAKE_FLAGS, SAPPHIRE_RAPIDS_FLAGS):
        fake_cpuinfo(tmp_path, monkeypatch, flags)
        monkeypatch.setenv(environment.BF16_VARIABLE, value)
        assert resolve_precision("auto") == (policy, why)


def test_a_garbled_variable_is_one_clear_error(monkeypatch):
    from cnnlab.utils.errors import CnnlabError

    monkeypatch.setenv(environment.BF16_VARIABLE, "yes")
    with pytest.raises(CnnlabError, match=r"CNNLAB_CPU_BF16='yes': give 1 .* or 0"):
        cpu_has_bf16()


@pytest.mark.parametrize("choice", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_explicit_precision_is_kept(choice):
    assert resolve_precision(choice) == (choice, "as configured")


@pytest.mark.parametrize(
    ("precision", "jit_compile", "expected_jit"),
    [("mixed_bfloat16", "false", False), ("float32", "true", True)],
)
def test_a_run_records_its_precision_and_xla(cli, quick, tmp_path, precision, jit_compile,
                                             expected_jit, mnist_arrays):  # fmt: skip
    import keras

    result = cli(
        "train", CONFIGS / "mnist_mlp.yaml", *quick(tmp_path, samples=200, epochs=1),
        "--set", f"train.precision={precision}", "--set", f"train.jit_compile={jit_compile}",
        "--set", "model.units=[32]",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"precision {precision} (as configured)" in result.output
    (run_dir,) = [p.parent for p in tmp_path.glob("*/metrics.json")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["precision"] == precision
    assert metrics["jit_compile"] is expected_jit
    assert json.loads((run_dir / "environment.json").read_text())["precision"] == precision
    # The policy was the run's alone; the saved model keeps it per layer.
    assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.models.load_model(run_dir / "model.keras")
    assert model.layers[2].dtype_policy.name == precision
    assert model.get_layer("predictions").compute_dtype == "float32"
    if precision == "mixed_bfloat16":
        # TFLite converts no bfloat16 ops: the export is a float32 copy with the same weights.
        from cnnlab.commands.export.runtimes import load_runtime

        exported = cli("export", run_dir, "--format", "tflite")
        assert exported.exit_code == 0, exported.output
        assert "(to the saved mixed_bfloat16 model: " in exported.output
        record = json.loads((run_dir / "export" / "export.json").read_text())["model.tflite"]
        # Checked against the float32 copy it was made from; the saved model rounds to bfloat16.
        assert record["precision"] == "mixed_bfloat16" and record["max_abs_diff"] < 1e-4
        assert 0 < record["max_abs_diff_to_saved"] < 0.02
        assert record["top1_agreement_to_saved"] >= 0.95
        x = mnist_arrays["x_test"][:40, ..., None]
        expected = model.predict(x, verbose=0)
        got = load_runtime("tflite", run_dir / "export" / "model.tflite").predict(x)
        # The Keras model computes in bfloat16 (8 bits of mantissa); the export in float32.
        np.testing.assert_allclose(got, expected, atol=0.02)
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95


def test_auto_xla_stays_off_on_cpu(cpu_only, cli, quick, tmp_path):
    result = cli(
        "train", CONFIGS / "mnist_mlp.yaml", *quick(tmp_path, samples=200, epochs=1),
        "--set", "model.units=[32]",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run_dir,) = [p.parent for p in tmp_path.glob("*/metrics.json")]
    assert json.loads((run_dir / "metrics.json").read_text())["jit_compile"] is False
