"""The whole experiment: a data loader, a model builder and training, checked against each other."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import Field, field_validator, model_validator

from cnnlab.config import images  # noqa: F401  (registers the image loaders' schemas)
from cnnlab.config.base import DirPath, Schema
from cnnlab.config.data import DATA_SCHEMAS
from cnnlab.config.models import MODEL_SCHEMAS
from cnnlab.config.tracking import TrackingConfig
from cnnlab.config.training import TrainConfig

DataConfig = Annotated[Union[tuple(DATA_SCHEMAS.values())], Field(discriminator="loader")]  # noqa: UP007
ModelConfig = Annotated[Union[tuple(MODEL_SCHEMAS.values())], Field(discriminator="builder")]  # noqa: UP007


Backend = Literal["tensorflow", "jax"]
BACKENDS = get_args(Backend)
TORCH_REFUSED = (
    "torch is not supported yet: its wheels bring about 4 GB of CUDA libraries into every "
    "install, and Keras 3.15's fit does not synchronise gradients under torch.distributed "
    "(keras-team/keras#23316); use tensorflow or jax"
)


def default_backend() -> str:
    """The backend of a config without `backend`: KERAS_BACKEND if set, else TensorFlow."""
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


class Config(Schema):
    """The whole experiment: a few keys of its own, and the `data`, `model`, `train` and
    `tracking` sections. Only `data.loader` and `model.builder` must be given."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None = Field(
        None,
        description="The run's name: its run directory is `<name>-<timestamp>` under "
        "`output_dir`. Default: the config file's name.",
    )
    seed: int = Field(42, description="Seeds the weights, the shuffling and the validation split.")
    deterministic: bool = Field(
        False,
        description="true: deterministic ops (TensorFlow's; on JAX GPUs XLA's deterministic "
        "kernels), so the same seed repeats exactly; slower on some ops.",
    )
    backend: Annotated[
        Backend,
        Field(
            default_factory=default_backend,
            validate_default=True,
            description="The Keras engine: `tensorflow` (the fastest on CPU for these models, "
            "and the engine of `export`) or `jax` (GPUs, and training across processes and "
            "hosts with `train.distribute: data_parallel`). Default: `$KERAS_BACKEND` if set, "
            "else `tensorflow`. A saved `.keras` model is backend-neutral: a run scores the "
            "same under either. `torch` is refused, with the reason.",
        ),
    ]
    output_dir: DirPath = Field(
        Path("outputs"),
        description="The folder that run directories are made in (relative: from the "
        "current folder).",
    )
    data: DataConfig = Field(description="The data loader and its keys: `data.loader` picks one.")
    model: ModelConfig = Field(
        description="The model builder and its keys: `model.builder` picks one."
    )
    train: TrainConfig = Field(
        TrainConfig(), description="How the model is trained: optimizer, schedule, devices."
    )
    tracking: TrackingConfig = Field(
        TrackingConfig(),
        description="Where the run is logged besides its run directory (MLflow).",
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, value: Any) -> Any:
        if value == "torch":
            raise ValueError(TORCH_REFUSED)
        return value

    @model_validator(mode="after")
    def _distribute_fits_backend(self) -> Config:
        needs = {"mirrored": "tensorflow", "data_parallel": "jax"}.get(self.train.distribute)
        if needs is not None and self.backend != needs:
            raise ValueError(
                f"train.distribute {self.train.distribute} runs on the {needs} backend; this "
                f"config's backend is {self.backend} (set backend: {needs}, or train.distribute: "
                f"{'data_parallel' if needs == 'tensorflow' else 'mirrored'})"
            )
        return self

    @model_validator(mode="after")
    def _monitor_fits_labels(self) -> Config:
        if self.data.multi_label and self.train.monitor == "val_accuracy":
            raise ValueError(
                "train.monitor: val_accuracy with several labels per image is the share of "
                "image-class decisions right at 0.5, mostly absent classes; set train.monitor: "
                "val_loss"
            )
        return self

    @model_validator(mode="after")
    def _xla_can_compile_the_model(self) -> Config:
        augmentation = self.model.augmentation
        if self.backend != "tensorflow" or self.train.jit_compile is not True or not augmentation:
            return self
        moving = [
            k for k in ("rotation", "zoom", "translation", "shift") if getattr(augmentation, k)
        ]
        if moving:
            keys = ", ".join(f"model.augmentation.{k}" for k in moving)
            layer = "random_shift" if moving == ["shift"] else "random_affine"
            raise ValueError(
                f"train.jit_compile: true cannot compile the {layer} layer that {keys} "
                "adds: on TensorFlow it is ImageProjectiveTransformV3, which has no XLA kernel; "
                "set train.jit_compile: auto (XLA off for this model) or false, or backend: jax"
            )
        return self

    @model_validator(mode="after")
    def _model_fits_data(self) -> Config:
        # Each side answers for itself: what the model needs, how the loader can give it.
        self.model.check_training(self.train)
        needs = self.model.INPUT_NEEDS
        if needs is None:
            return self
        height, width, channels = self.data.input_shape
        if min(height, width) < needs.min_size or channels != needs.channels:
            colour = "colour images" if needs.channels == 3 else f"{needs.channels}-channel images"
            raise ValueError(
                f"model.builder {self.model.builder} needs {colour} of at least "
                f"{needs.min_size}x{needs.min_size}; the data gives "
                f"{'x'.join(map(str, self.data.input_shape))}: {self.data.how_to_give(needs)}"
            )
        return self
