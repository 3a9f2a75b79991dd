"""What `cnnlab serve` runs: the runs' best models (or their ONNX exports), uploads decoded as
`cnnlab predict` decodes files, and the class probabilities averaged over the runs.

With `onnx`, each run's `export/model.onnx` runs in onnxruntime (the run's TTA is part of that
graph) and neither TensorFlow nor Keras is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlab.config import Config
from cnnlab.data.dataset import adapt_images
from cnnlab.data.images import read_image
from cnnlab.inference import Predicts, decoding, ensemble_probabilities, ensemble_thresholds
from cnnlab.runs import RunDir, open_run, read_class_names
from cnnlab.utils.errors import RunDirError


class OnnxMember(NamedTuple):
    """A run's ONNX export in onnxruntime: uint8 pixels in, probabilities (with TTA) out."""

    run_dir: Path
    cfg: Config
    session: object  # onnxruntime.InferenceSession
    class_names: list[str]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        name = self.session.get_inputs()[0].name
        probs = np.asarray(self.session.run(None, {name: x})[0], np.float64)
        if self.cfg.data.multi_label:  # a sigmoid per class: each its own probability
            return probs
        return probs / probs.sum(axis=1, keepdims=True)


def load_onnx_members(run_dirs: list[Path]) -> list[OnnxMember]:
    """Each run's `export/model.onnx` in onnxruntime, checked to tell the same classes apart.

    Raises:
        RunDirError: a run without that export, or runs of different tasks.
        CnnlabError: onnxruntime is not installed.
    """
    from cnnlab.utils.errors import CnnlabError

    try:
        import onnxruntime
    except ImportError:
        raise CnnlabError("--onnx needs onnxruntime: pip install 'cnnlab[serve-onnx]'") from None
    members = []
    for path in run_dirs:
        run_dir, cfg = open_run(path)
        model_path = RunDir(run_dir).onnx_export
        if not model_path.is_file():
            raise RunDirError(
                f"{run_dir}: no {model_path.relative_to(run_dir)}; make it with: "
                f"cnnlab export {run_dir} --format onnx"
            )
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # warnings of the graph optimiser are not the user's
        # Its threads sleep rather than spin between operators: they share the cores with the
        # server's decoding and HTTP, and spinning took them (12% more images/s without).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        count = int(session.get_outputs()[0].shape[-1])
        members.append(OnnxMember(run_dir, cfg, session, read_class_names(run_dir, count)))
    for member in members[1:]:
        if member.class_names != members[0].class_names:
            raise RunDirError(
                f"{member.run_dir}: its classes {member.class_names} differ from "
                f"{members[0].run_dir}'s {members[0].class_names}; an ensemble needs one task"
            )
    return members


class Predictor:
    """The runs behind the server, as one model: `decode` an upload, `probabilities` of many.

    `decode` turns image bytes into the arrays every run takes (one per distinct decoding);
    `probabilities` takes a list of those (a batch gathered from several requests) and gives
    the runs' mean class probabilities, one row per image. `thresholds`: the runs' per-class
    thresholds when they give several labels per image, else None.
    """

    def __init__(self, members: list[Predicts], runtime: str, backend: str | None):
        self.members, self.runtime, self.backend = members, runtime, backend
        self.class_names: list[str] = members[0].class_names
        self.run_dirs = [str(m.run_dir) for m in members]
        self.thresholds = ensemble_thresholds(members)
        self._keys = {decoding(m): m.cfg.data for m in members}

    def decode(self, data: bytes, max_pixels: int | None = None) -> dict[tuple, np.ndarray]:
        """One upload as each decoding's (1, H, W, C) uint8 array.

        Raises:
            cnnlab.data.images.TooManyPixels: more than `max_pixels` (from the header).
            cnnlab.data.images.Unusable: not an image, a damaged one, too many pixels.
        """
        return {
            key: adapt_images(read_image(data, key[0], max_pixels)[None], data_cfg)
            for key, data_cfg in self._keys.items()
        }

    def probabilities(self, images: list[dict[tuple, np.ndarray]]) -> np.ndarray:
        """(N, classes) mean probabilities of the runs for the decoded `images`."""
        batch = {key: np.concatenate([image[key] for image in images]) for key in self._keys}
        return np.mean(ensemble_probabilities(self.members, batch), axis=0)


def load_predictor(run_dirs: list[Path], onnx: bool) -> Predictor:
    """The runs' models (Keras, on the backend already started) or their ONNX exports."""
    if onnx:
        return Predictor(load_onnx_members(run_dirs), "onnxruntime", None)
    import keras

    from cnnlab.inference import load_members

    return Predictor(load_members(run_dirs), "keras", keras.backend.backend())
