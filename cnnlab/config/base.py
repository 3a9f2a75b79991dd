"""What every schema shares: strictness, and the field types of paths, sizes and fractions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo


class Schema(BaseModel):
    # Strict: `epochs: "10"` or `dropout: true` are mistakes, not values to coerce.
    model_config = ConfigDict(extra="forbid", strict=True)


def register_schema(table: dict[str, Any], schema: type[BaseModel], tag: str) -> None:
    """File `schema` in `table` under the value of its `tag` field, a one-value Literal (the
    name a YAML file picks it by); a schema without that field is a base, not filed."""
    field = schema.model_fields.get(tag)
    if field is None:
        return
    (name,) = get_args(field.annotation)
    if name in table:
        raise TypeError(f"{tag} {name!r} is defined by {table[name].__name__} already")
    table[name] = schema


def checks_files(info: ValidationInfo) -> bool:
    """Whether input files must exist: `load_config(..., need_data=False)` skips that check
    (`cnnlab summary` builds a model from the config alone)."""
    return not (info.context or {}).get("skip_file_checks", False)


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except (RuntimeError, OSError):  # a loop of symbolic links (RuntimeError before Python 3.13)
        raise ValueError(f"a loop of symbolic links: {path}") from None


def _existing(path: Path, info: ValidationInfo) -> Path:
    path = _resolved(path)
    if checks_files(info) and not path.exists():
        raise ValueError(f"not found: {path}")
    return path


def _existing_file(path: Path, info: ValidationInfo) -> Path:
    path = _resolved(path)
    if checks_files(info) and not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


def _existing_dir(path: Path, info: ValidationInfo) -> Path:
    path = _existing(path, info)
    if checks_files(info) and not path.is_dir():
        raise ValueError(f"not a folder: {path}")
    return path


# Paths come from YAML as strings (strict mode would refuse them) and are stored absolute, so a
# run directory's config.yaml still finds its data from any working directory.
FilePath = Annotated[Path, Field(strict=False), AfterValidator(_existing_file)]
ExistingPath = Annotated[Path, Field(strict=False), AfterValidator(_existing)]
ExistingDir = Annotated[Path, Field(strict=False), AfterValidator(_existing_dir)]
DirPath = Annotated[Path, Field(strict=False, validate_default=True), AfterValidator(_resolved)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Dropout = Annotated[float, Field(ge=0, lt=1)]
Count = Annotated[int, Field(ge=1)]
Activation = Literal["relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish"]
PositiveInts = Annotated[list[Count], Field(min_length=1)]
Size = Annotated[tuple[Count, Count], Field(strict=False)]
