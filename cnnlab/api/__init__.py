"""cnnlab's Python API: what a notebook or a script calls, and what every `cnnlab` command
calls underneath (the CLI parses, calls one of these, and prints).

    import cnnlab

    run = cnnlab.train("configs/mnist_mlp.yaml", {"train.epochs": 2})
    run.metrics["test"]["accuracy"]
    run.predict("digits/")  # a DataFrame: path, predicted, probability, a column per class
    run.export("onnx")

Nothing here imports TensorFlow or Keras until a function needs them.
"""

from cnnlab.api.backend import open_finished_run, open_runs, start_backend
from cnnlab.api.configs import check, init, load, lr_find, summary, tune
from cnnlab.api.infer import (
    compare,
    evaluate,
    explain,
    export,
    predict,
    predict_csv,
    predictions,
    serve,
    submission,
)
from cnnlab.api.run import Run, load_run, train

__all__ = [
    "Run", "check", "compare", "evaluate", "explain", "export", "init", "load", "load_run",
    "lr_find", "open_finished_run", "open_runs", "predict", "predict_csv", "predictions",
    "serve", "start_backend", "submission", "summary", "train", "tune",
]  # fmt: skip
