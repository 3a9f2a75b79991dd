"""cnnlab: image-classification experiments with Keras, from one YAML file to a trained run.

The Python API (`cnnlab.train`, `cnnlab.Run`, `cnnlab.evaluate`, `cnnlab.predict`, ...) is
loaded on first use: `import cnnlab` imports neither TensorFlow nor Keras.
"""

import os
import platform

from cnnlab.utils.errors import CnnlabError, ConfigError, DataError, RunDirError

__version__ = "0.1.0"

# Keras 3 picks its backend at first import: TensorFlow unless KERAS_BACKEND says otherwise;
# a command sets a config's `backend` before it loads Keras (environment.start_backend_quietly).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up chatter (oneDNN notices, CUDA probing) hides the messages that matter.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow runs its CPU kernels through oneDNN by default on Linux only where the CPU has
# AVX512-VNNI, AVX-VNNI, AVX512_BF16 or AMX; elsewhere (AVX2-only x86-64 CPUs) it uses Eigen's,
# which train these convnets slower (bench/cpu_kernels.py; its figures in docs/performance.md).
# TF_ENABLE_ONEDNN_OPTS=0 keeps Eigen's.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

_API = ("Run", "load_run", "train", "evaluate", "predict", "compare", "check", "summary", "tune",
        "lr_find", "explain", "export", "predict_csv", "submission", "serve", "init")  # fmt: skip

__all__ = ["CnnlabError", "ConfigError", "DataError", "RunDirError", "__version__", *_API]


def __getattr__(name: str):
    # The API on first use: `import cnnlab` stays minimal, and the modules below the API that
    # read __version__ from here do not depend on it (import-linter's layers).
    if name in _API:
        import importlib

        return getattr(importlib.import_module("cnnlab.api"), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
