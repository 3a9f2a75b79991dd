"""What a run ran on: library versions and the device TensorFlow will use."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime

from cnnlab import __version__


def describe_device() -> str:
    """'GPU:0 (NVIDIA H100 ...)' for each visible GPU, else 'CPU (N threads)'."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} threads)"
    names = []
    for i, gpu in enumerate(gpus):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(f"GPU:{i} ({details.get('device_name', 'unknown')})")
    return ", ".join(names)


def precision_policy() -> str:
    """The Keras dtype policy training will use (float32 unless mixed precision is set)."""
    import keras

    return keras.mixed_precision.global_policy().name


def environment(seed: int, device: str) -> dict:
    """The record written to environment.json at the start of a run."""
    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "cnnlab": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": device,
        "precision": precision_policy(),
        "seed": seed,
        "command": sys.argv,
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
