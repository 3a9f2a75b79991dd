"""Exported files loaded in the runtimes they are made for: TensorFlow for a SavedModel, the
LiteRT interpreter for a .tflite file, onnxruntime for an .onnx file."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

LATENCY_RUNS = 50


class Runtime:
    """An exported file loaded in the runtime it is made for; `predict` gives probabilities."""

    def __init__(self, predict_batch, batch_size: int = 256):
        self._predict_batch, self._batch_size = predict_batch, batch_size

    def predict(self, x: np.ndarray) -> np.ndarray:
        parts = [
            np.asarray(self._predict_batch(x[i : i + self._batch_size]), np.float64)
            for i in range(0, len(x), self._batch_size)
        ]
        return np.concatenate(parts)


def load_runtime(fmt: str, path: Path) -> Runtime:
    """Load an exported file with TensorFlow, the LiteRT interpreter or onnxruntime."""
    if fmt == "savedmodel":
        import tensorflow as tf

        # Keep the loaded object: its functions refer to variables it owns.
        loaded = tf.saved_model.load(str(path))
        return Runtime(lambda x: loaded.serve(tf.constant(x)).numpy())
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return Runtime(lambda x: session.run(None, {name: x})[0])
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()

    def predict(x: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(source["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return Runtime(predict)


def latency_ms(predict, one: np.ndarray) -> float:
    """Median milliseconds of `predict` on one image, after a few warm-up calls."""
    for _ in range(5):
        predict(one)
    times = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        predict(one)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)
