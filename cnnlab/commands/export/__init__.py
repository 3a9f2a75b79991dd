"""`cnnlab export`: a run's best model as a SavedModel, a TFLite (LiteRT) file or an ONNX file,
checked against the .keras model before it is called done.

What is exported is the run's model made portable (`convert.portable_model`): uint8 pixels in,
class probabilities out, float32 weights and maths, no augmentation layers. The converters are
Keras' own (`Model.export`: the TFLite converter, tf2onnx); each file is then run in its own
runtime (`runtimes`: TensorFlow, the LiteRT interpreter, onnxruntime) on the run's validation
images and compared with the Keras model. The results go to export.json beside the file, one
entry per file.

This module only checks a request, so that `cnnlab export` fails fast without TensorFlow.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cnnlab.runs import RunDir
from cnnlab.utils.errors import CnnlabError, RunDirError

FORMATS = {"savedmodel": "", "tflite": ".tflite", "onnx": ".onnx"}
# What each format needs beyond TensorFlow: the converter and the runtime that checks the file.
NEEDS = {"savedmodel": (), "tflite": ("ai_edge_litert",), "onnx": ("tf2onnx", "onnxruntime")}
QUANTIZATIONS = ("float16", "int8")
RECORD = "export.json"
# A float32 export may differ from the Keras model by rounding only (other kernels, another
# order of summation); beyond this, something was converted wrongly.
TOLERANCE = 1e-4


def check_request(
    run_dir: Path, fmt: str, quantize: str | None, output: Path | None, overwrite: bool
) -> Path:
    """The output path of an export, or a one-line error, before anything heavy is loaded."""
    if fmt not in FORMATS:
        raise CnnlabError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if quantize is not None:
        if fmt != "tflite":
            raise CnnlabError(f"--quantize is for --format tflite, not {fmt}")
        if quantize not in QUANTIZATIONS:
            raise CnnlabError(f"--quantize: {quantize!r} is not one of {', '.join(QUANTIZATIONS)}")
    missing = [m for m in NEEDS[fmt] if importlib.util.find_spec(m) is None]
    if missing:
        raise CnnlabError(
            f"--format {fmt} needs {', '.join(missing)}: pip install 'cnnlab[export]'"
        )
    if output is None:
        output = RunDir(run_dir).export_file(FORMATS[fmt], quantize)
    elif FORMATS[fmt] and output.suffix != FORMATS[fmt]:
        raise CnnlabError(f"--output {output}: a {fmt} file's name ends in {FORMATS[fmt]}")
    if output.exists() and not overwrite:
        raise RunDirError(f"{output} exists; pass --overwrite to replace it")
    if output.name == RECORD:
        raise CnnlabError(f"--output {output}: {RECORD} is the name of the export record")
    return output
