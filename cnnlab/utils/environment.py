"""What a run ran on: the Keras backend (chosen before Keras loads), library versions, devices."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from cnnlab import __version__
from cnnlab.utils.console import echo
from cnnlab.utils.errors import CnnlabError

# What TensorFlow's C++ side prints while it starts, before its logging honours
# TF_CPP_MIN_LOG_LEVEL: notices about oneDNN, CPU instructions and absent CUDA drivers, each
# printed once per loaded library. Anything else printed meanwhile is shown.
STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"cudart_stub\.cc|Could not find cuda drivers|cpu_feature_guard\.cc|"
    r"To enable the following instructions|failed call to cuInit|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"TF-TRT Warning: Could not find TensorRT"
)
_started = False
_start_seconds = 0.0  # how long loading Keras (and TensorFlow) took in this process
# JAX's compiled steps are kept under the cache folder, at most this many bytes (least recently
# used entries go first): a repeated run loads them instead of compiling again.
JAX_CACHE_BYTES = 2 * 2**30


def cache_root() -> Path | None:
    """cnnlab's cache folder (decoded data, JAX's compiled steps): `~/.cache/cnnlab`, or
    CNNLAB_CACHE_DIR; None when CNNLAB_CACHE_DIR is set empty (no caching)."""
    value = os.environ.get("CNNLAB_CACHE_DIR")
    if value == "":
        return None
    return Path(value) if value else Path.home() / ".cache" / "cnnlab"


@contextmanager
def stderr_without(noise: re.Pattern) -> Iterator[None]:
    """Capture what is written to stderr (file descriptor 2, so C++ libraries' output too)
    and pass on every line that `noise` does not match when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            shown = [line for line in text.splitlines() if not noise.search(line)]
            if shown:
                echo("\n".join(shown), err=True)


def start_backend_quietly(backend: str, deterministic: bool = False, quiet: bool = True) -> None:
    """Load Keras on `backend` (and TensorFlow, when it is the backend), with TensorFlow's
    start-up notices kept off stderr; every other line written meanwhile (a real error) is
    passed on.

    Keras picks its backend when first imported, so this must run first; a process that
    already runs Keras on another backend cannot switch. `deterministic` on JAX asks XLA for
    deterministic GPU kernels, which must be set before JAX starts. On JAX, compiled steps are
    kept in `cache_root()/jax` (unless JAX_COMPILATION_CACHE_DIR names another folder).
    """
    global _started, _start_seconds
    running = sys.modules.get("keras")
    if running is not None and running.backend.backend() != backend:
        raise CnnlabError(
            f"this process already runs Keras on {running.backend.backend()}; backend {backend} "
            "needs a new process"
        )
    if _started:
        return
    os.environ["KERAS_BACKEND"] = backend
    cache = cache_root()
    if backend == "jax" and cache is not None and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache / "jax")
        if importlib.util.find_spec("filelock") is not None:  # JAX bounds the cache with it
            os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(JAX_CACHE_BYTES))
    if backend == "jax" and deterministic:
        flag = "--xla_gpu_deterministic_ops=true"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    began = time.monotonic()
    try:
        with stderr_without(STARTUP_NOISE) if quiet else contextlib.nullcontext():
            import keras  # noqa: F401

            if backend == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices("GPU")
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != backend:
            raise
        other = "jax" if backend == "tensorflow" else "tensorflow"
        raise CnnlabError(
            f"backend {backend} is not installed: pip install {backend} (or 'cnnlab[jax]'), "
            f"or use backend: {other}"
        ) from None
    _started = True
    _start_seconds = time.monotonic() - began


def claim_backend_start_seconds() -> float:
    """How long starting the Keras backend took in this process, once: 0 before it started
    and after the first call (the first run of a process counts it, later ones do not)."""
    global _start_seconds
    seconds, _start_seconds = _start_seconds, 0.0
    return seconds


def backend_name() -> str:
    import keras

    return keras.backend.backend()


def gpus() -> list[tuple[str, tuple[int, int] | None]]:
    """The visible GPUs as (name, compute capability), as the running backend sees them."""
    if backend_name() == "jax":
        import jax

        found = []
        for device in jax.devices():
            if device.platform != "gpu":
                continue
            capability = str(getattr(device, "compute_capability", "") or "")
            parsed = tuple(int(v) for v in capability.split(".")[:2]) if capability else None
            found.append((device.device_kind, parsed))
        return found
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append((details.get("device_name", "unknown"), details.get("compute_capability")))
    return found


def describe_device() -> str:
    """'GPU:0 (NVIDIA H100 ...)' for each visible GPU, else 'CPU (N threads)'."""
    found = gpus()
    if found:
        return ", ".join(f"GPU:{i} ({name})" for i, (name, _) in enumerate(found))
    described = f"CPU ({os.cpu_count()} threads"
    if backend_name() == "jax":
        import jax

        if jax.local_device_count() > 1:
            described += f", {jax.local_device_count()} devices"
    else:
        described += f", {tensorflow_cpu_kernels()} kernels"
    return described + ")"


def tensorflow_cpu_kernels() -> str:
    """'oneDNN' or 'Eigen': the library TensorFlow's CPU kernels run on in this process
    (cnnlab sets TF_ENABLE_ONEDNN_OPTS=1 on x86-64 unless it is set; see cnnlab/__init__.py)."""
    from tensorflow.python.util import _pywrap_util_port

    return "oneDNN" if _pywrap_util_port.IsMklEnabled() else "Eigen"


CPUINFO = "/proc/cpuinfo"
# 1: `precision: auto` resolves as on a CPU with native bfloat16, 0: as on one without, whatever
# this CPU has. TensorFlow runs bfloat16 ops on any x86-64 CPU (emulated, slower, on AVX2), so
# the tests see on one machine what either kind of machine would give.
BF16_VARIABLE = "CNNLAB_CPU_BF16"


def bf16_override() -> bool | None:
    """What $CNNLAB_CPU_BF16 says of the CPU: True, False, or None when it is not set."""
    value = os.environ.get(BF16_VARIABLE, "").strip()
    if not value:
        return None
    if value not in ("0", "1"):
        raise CnnlabError(f"{BF16_VARIABLE}={value!r}: give 1 (bfloat16 CPU) or 0 (float32 CPU)")
    return value == "1"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX), per /proc/cpuinfo,
    unless $CNNLAB_CPU_BF16 says otherwise."""
    forced = bf16_override()
    if forced is not None:
        return forced
    try:
        with open(CPUINFO) as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(choice: str) -> tuple[str, str]:
    """The Keras dtype policy for a `train.precision` value, and why it was picked."""
    if choice != "auto":
        return choice, "as configured"
    found = gpus()
    if found:
        capability = found[0][1]
        if capability and capability >= (8, 0):
            return "mixed_bfloat16", f"auto: GPU compute capability {capability[0]}.{capability[1]}"
        if capability and capability >= (7, 0):
            return "mixed_float16", f"auto: GPU compute capability {capability[0]}.{capability[1]}"
        return "float32", "auto: GPU without fast half precision"
    forced = bf16_override()
    if not cpu_has_bf16():
        why = "CPU without native bfloat16" if forced is None else f"{BF16_VARIABLE}=0"
        return "float32", f"auto: {why}"
    if backend_name() != "tensorflow":
        # bfloat16 is not known to be faster on JAX's CPU backend (XLA): float32 unless asked.
        return "float32", "auto: bfloat16 on CPU is only chosen on TensorFlow"
    why = "CPU has AVX512_BF16/AMX" if forced is None else f"{BF16_VARIABLE}=1"
    return "mixed_bfloat16", f"auto: {why}"


@contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build and train under Keras dtype policy `name`; the previous policy is restored after."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextmanager
def op_determinism(enabled: bool) -> Iterator[None]:
    """TensorFlow's deterministic ops for one run (`deterministic: true`). The setting is
    process-wide, so it is restored after: a later run in the same process (a tuning trial, a
    test) is neither slowed nor refused XLA by an earlier one. JAX's XLA is deterministic on
    CPU, and on GPUs with the flag start_backend_quietly sets."""
    if not enabled or backend_name() != "tensorflow":
        yield
        return
    # The public API can turn it on, not read or undo it; Keras reads it from here too.
    from tensorflow.python.framework import config as tf_config

    previous = tf_config.is_op_determinism_enabled()
    tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if not previous:
            tf_config.disable_op_determinism()


def precision_policy() -> str:
    """The Keras dtype policy in force (float32 unless mixed precision is set)."""
    import keras

    return keras.mixed_precision.global_policy().name


def environment(seed: int, device: str) -> dict:
    """The record written to environment.json at the start of a run."""
    import keras
    import numpy as np

    engine = sys.modules.get(keras.backend.backend())
    return {
        "cnnlab": __version__,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        keras.backend.backend(): getattr(engine, "__version__", None),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": device,
        "precision": precision_policy(),
        "seed": seed,
        "command": sys.argv,
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
