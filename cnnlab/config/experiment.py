"""The whole experiment: a data loader, a model builder and training, checked against each other."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Union

from pydantic import Field, model_validator

from cnnlab.config.base import DirPath, Schema
from cnnlab.config.data import DATA_SCHEMAS
from cnnlab.config.models import MODEL_SCHEMAS
from cnnlab.config.tracking import TrackingConfig
from cnnlab.config.training import TrainConfig

DataConfig = Annotated[Union[tuple(DATA_SCHEMAS.values())], Field(discriminator="loader")]  # noqa: UP007
ModelConfig = Annotated[Union[tuple(MODEL_SCHEMAS.values())], Field(discriminator="builder")]  # noqa: UP007


class Config(Schema):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None = None
    seed: int = 42
    deterministic: bool = False  # identical results for the same seed (slower on some ops)
    output_dir: DirPath = Path("outputs")
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()

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
