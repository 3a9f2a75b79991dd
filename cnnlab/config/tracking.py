"""Experiment tracking: where a run's parameters, metrics and files are logged besides its run
directory."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from pydantic import Field, field_validator

from cnnlab.config.base import Schema

# A URI with a scheme (http://, https://, sqlite:///, postgresql://, databricks, ...) is
# MLflow's own; anything else is a local folder.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//|$)|^databricks")


class MlflowConfig(Schema):
    """Log the run to MLflow: parameters, per-epoch metrics, scores, tags and files."""

    uri: str = Field(
        description="A tracking server (`http://host:5000`), a database URL, or a local "
        "folder: cnnlab keeps a SQLite store (`mlflow.db`) and the logged files "
        "(`artifacts/`) in it."
    )
    experiment: str | None = Field(
        None, description="The MLflow experiment. Default: the config's name."
    )

    @field_validator("uri")
    @classmethod
    def _folder_made_absolute(cls, uri: str) -> str:
        if importlib.util.find_spec("mlflow") is None:
            raise ValueError("needs the mlflow package: pip install 'cnnlab[mlflow]'")
        if not uri.strip():
            raise ValueError("give a tracking server URL or a folder")
        if _SCHEME.match(uri) and not uri.startswith("file:"):
            return uri
        return str(Path(uri.removeprefix("file://").removeprefix("file:")).expanduser().resolve())


class TrackingConfig(Schema):
    """Where a run is logged besides its run directory."""

    mlflow: MlflowConfig | None = Field(
        None, description="MLflow tracking (`pip install 'cnnlab[mlflow]'`); null: none."
    )


def is_folder(uri: str) -> bool:
    """Whether a validated MlflowConfig.uri names a local folder rather than an MLflow URI."""
    return not _SCHEME.match(uri)
