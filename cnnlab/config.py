"""The experiment schema, and YAML loading whose errors name the file, line and key.

Everything here is validated before TensorFlow is imported, so a typo costs a fraction of a
second and one line of output.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cnnlab.errors import ConfigError


class Schema(BaseModel):
    # Strict: `epochs: "10"` or `dropout: true` are mistakes, not values to coerce.
    model_config = ConfigDict(extra="forbid", strict=True)


def _existing_file(path: Path) -> Path:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


# Paths come from YAML as strings (strict mode would refuse them) and are stored absolute, so a
# run directory's config.yaml still finds its data from any working directory.
FilePath = Annotated[Path, Field(strict=False), AfterValidator(_existing_file)]
DirPath = Annotated[
    Path,
    Field(strict=False, validate_default=True),
    AfterValidator(lambda p: p.expanduser().resolve()),
]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Dropout = Annotated[float, Field(ge=0, lt=1)]
Activation = Literal["relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish"]
PositiveInts = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]

DEFAULT_MNIST_PATH = Path("data/mnist.npz")


# ---------------------------------------------------------------------------------------------
# Data loaders: the `loader` key picks one schema; cnnlab.data.LOADERS has a function per name.


class MnistData(Schema):
    """MNIST from a local .npz in keras.datasets' layout; downloaded when the default is absent."""

    loader: Literal["mnist"]
    # Default data/mnist.npz (shipped with cnnlab); null downloads with keras.datasets.
    path: FilePath | None = DEFAULT_MNIST_PATH
    validation_split: Fraction = 0.1
    max_samples: Annotated[int, Field(ge=1)] | None = None  # first N of train and test: quick runs

    @model_validator(mode="after")
    def _locate_default(self) -> MnistData:
        # Defaults skip validation: resolve the shipped file, or download when it is absent
        # (cnnlab run outside its checkout). A path the user gives must exist.
        if "path" not in self.model_fields_set:
            default = DEFAULT_MNIST_PATH.resolve()
            self.path = default if default.is_file() else None
        return self


class KaggleCsvData(Schema):
    """Kaggle Digit Recognizer CSVs: `label` plus one column per pixel, one image per row."""

    loader: Literal["kaggle_csv"]
    train: FilePath
    validation: FilePath | None = None  # labelled; replaces validation_split when given
    test: FilePath | None = None  # labelled → test metrics; unlabelled → a submission.csv
    validation_split: Fraction = 0.1
    image_shape: Annotated[
        tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)], Literal[1, 3]],
        Field(strict=False),
    ] = (28, 28, 1)
    num_classes: Annotated[int, Field(ge=2)] = 10
    max_samples: Annotated[int, Field(ge=1)] | None = None


DATA_SCHEMAS: dict[str, type[Schema]] = {"mnist": MnistData, "kaggle_csv": KaggleCsvData}
DataConfig = Annotated[Union[tuple(DATA_SCHEMAS.values())], Field(discriminator="loader")]  # noqa: UP007


# ---------------------------------------------------------------------------------------------
# Model builders: the `builder` key picks one schema; cnnlab.models.BUILDERS has a function each.


class AugmentationConfig(Schema):
    """Random transforms of training batches, as Keras layers inside the model.

    They act only while training (fit); evaluate, predict and validation see the images as they
    are. Each transform left at its default is not added.
    """

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = "none"
    rotation: Annotated[float, Field(ge=0, le=180)] = 0.0  # up to ± this many degrees
    zoom: Dropout = 0.0  # up to ± this fraction of the size
    translation: Dropout = 0.0  # up to ± this fraction of the height and width
    contrast: Dropout = 0.0  # contrast scaled by a random factor in [1 - c, 1 + c]
    # How pixels moved in from outside the image are filled: `constant` (black) suits digits on
    # a black background, `reflect` photos.
    fill_mode: Literal["reflect", "constant", "nearest", "wrap"] = "reflect"


class ModelSchema(Schema):
    """What every builder takes besides its own keys."""

    augmentation: AugmentationConfig | None = None


class MlpModel(ModelSchema):
    """Fully connected layers on the flattened image (784-512-512-10 on MNIST)."""

    builder: Literal["mlp"]
    units: PositiveInts = [512, 512]
    activation: Activation = "relu"
    dropout: Dropout = 0.0  # after each hidden layer


class SmallCnnModel(ModelSchema):
    """Chollet's MNIST convnet: 3x3 convs with 2x2 max pooling between them, one dense layer."""

    builder: Literal["small_cnn"]
    filters: PositiveInts = [32, 64, 128]
    dropout: Dropout = 0.0  # before the output layer


class DeepCnnModel(ModelSchema):
    """The Kaggle deep CNN: blocks of two 3x3 'same' convs and max pooling, then dense layers."""

    builder: Literal["deep_cnn"]
    filters: PositiveInts = [32, 64]  # one block per entry
    dense_units: PositiveInts = [256, 256]
    conv_dropout: Dropout = 0.25  # after every block but the last
    dropout: Dropout = 0.5  # before the output layer


class Lenet5Model(ModelSchema):
    """LeCun's LeNet-5: conv6-avgpool-conv16-avgpool-120-84 with tanh."""

    builder: Literal["lenet5"]
    activation: Activation = "tanh"


class StridedCnnModel(ModelSchema):
    """Chris Deotte's Kaggle MNIST net: per block conv3-conv3-conv5/2, BatchNorm after each.

    Downsampling is a stride-2 5x5 convolution instead of pooling; dropout after each block; a
    4x4-kernel convolution to `head_filters` features before the classifier (flattened).
    """

    builder: Literal["strided_cnn"]
    filters: PositiveInts = [32, 64]  # one block per entry
    head_filters: Annotated[int, Field(ge=1)] = 128
    dropout: Dropout = 0.4  # after each block and before the classifier


MODEL_SCHEMAS: dict[str, type[Schema]] = {
    "mlp": MlpModel,
    "small_cnn": SmallCnnModel,
    "deep_cnn": DeepCnnModel,
    "lenet5": Lenet5Model,
    "strided_cnn": StridedCnnModel,
}
ModelConfig = Annotated[Union[tuple(MODEL_SCHEMAS.values())], Field(discriminator="builder")]  # noqa: UP007


# ---------------------------------------------------------------------------------------------
# Training.


class EarlyStoppingConfig(Schema):
    patience: Annotated[int, Field(ge=1)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class ReduceLrConfig(Schema):
    """Keras ReduceLROnPlateau on the monitored metric."""

    factor: Fraction = 0.5
    patience: Annotated[int, Field(ge=1)] = 2
    min_lr: Annotated[float, Field(ge=0)] = 1e-6


class TrainConfig(Schema):
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=1)] = 128
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0  # sgd and rmsprop only
    # cosine: decay from learning_rate to 0 over all the epochs' steps
    lr_schedule: Literal["constant", "cosine"] = "constant"
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    early_stopping: EarlyStoppingConfig | None = EarlyStoppingConfig()  # null: run every epoch
    reduce_lr_on_plateau: ReduceLrConfig | None = None
    # Keras dtype policy. auto: mixed_bfloat16 on CPUs with AVX512_BF16 or AMX and on GPUs of
    # compute capability 8.0 or more, mixed_float16 on older GPUs (7.x), float32 otherwise.
    # The output layer always computes in float32.
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "auto"
    # XLA compilation of the training step. auto: Keras' choice, on for GPUs, off on CPU-only
    # machines (where it is several times slower).
    jit_compile: Literal["auto"] | bool = "auto"
    # Batches run per call into the compiled step; more cuts per-step Python overhead.
    steps_per_execution: Annotated[int, Field(ge=1)] = 1
    verbose: Literal[0, 1, 2] = 1  # Keras' fit verbosity: 1 is the progress bar
    tensorboard: bool = False  # write TensorBoard logs to <run dir>/tensorboard

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard_installed(cls, wanted: bool) -> bool:
        if wanted and importlib.util.find_spec("tensorboard") is None:
            raise ValueError("needs the tensorboard package: pip install 'cnnlab[tensorboard]'")
        return wanted

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.momentum and self.optimizer == "adam":
            raise ValueError(
                "momentum applies to sgd and rmsprop only; remove it or change optimizer"
            )
        if self.lr_schedule != "constant" and self.reduce_lr_on_plateau is not None:
            raise ValueError(
                "reduce_lr_on_plateau needs lr_schedule: constant (a schedule already sets the "
                "learning rate); remove one of them"
            )
        return self


class Config(Schema):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None = None
    seed: int = 42
    deterministic: bool = False  # identical results for the same seed (slower on some ops)
    output_dir: DirPath = Path("outputs")
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = TrainConfig()


# ---------------------------------------------------------------------------------------------
# YAML with line numbers, duplicate-key detection and YAML 1.2 floats.


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.1 insists on a dot)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

Key = tuple[str | int, ...]


def _dotted(path: Key) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _index(node: yaml.Node, path: Key, lines: dict[Key, str], source: str) -> None:
    """Record where each key is defined; refuse duplicate keys (PyYAML keeps the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{source}:{line}: duplicate key '{_dotted((*path, key))}' "
                    f"(first set on line {seen[key]})"
                )
            seen[key] = line
            lines[(*path, key)] = f"{source}:{line}"
            _index(value_node, (*path, key), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = f"{source}:{item.start_mark.line + 1}"
            _index(item, (*path, i), lines, source)


def _parse_yaml(text: str, source: str, lines: dict[Key, str]) -> Any:
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _index(node, (), lines, source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _apply_override(data: dict, item: str, lines: dict[Key, str]) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item}: expected KEY.PATH=VALUE, e.g. --set train.epochs=3")
    source = f"--set {item}"
    value = _parse_yaml(raw, source, {}) if raw.strip() else None
    parts = key.strip().split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: '{'.'.join(parts[: i + 1])}' is not a mapping")
        node = child
    node[parts[-1]] = value
    lines[tuple(parts)] = source


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate an experiment config.

    Args:
        path: the YAML file.
        overrides: `key.path=value` strings; values are parsed as YAML.

    Returns:
        The validated config with `name` filled in (the file's stem by default) and paths absolute.

    Raises:
        ConfigError: one line per problem, each naming the file and line (or --set) and the key.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: cannot read config: {e}") from None
    lines: dict[Key, str] = {}
    data = _parse_yaml(text, source, lines)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the top level must be a mapping (data:, model:, train:)")
    for item in overrides:
        _apply_override(data, item, lines)
    data.setdefault("name", path.stem)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        messages = dict.fromkeys(_describe(err, data, lines, source) for err in e.errors())
        raise ConfigError("\n".join(messages)) from None


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text that load_config reads back to an equal Config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Turning pydantic's errors into one line each.


def _data_path(loc: tuple, data: Any) -> Key:
    """Map pydantic's error location onto keys of the user's YAML (dropping union tags)."""
    out: list[str | int] = []
    cur = data
    for item in loc:
        if isinstance(cur, dict) and item in cur:
            out.append(item)
            cur = cur[item]
        elif isinstance(cur, list) and isinstance(item, int) and item < len(cur):
            out.append(item)
            cur = cur[item]
        elif isinstance(cur, dict) and item in (cur.get("loader"), cur.get("builder")):
            continue  # pydantic names the chosen union member; the YAML has no such key
        else:
            out.append(item)
            cur = None
    return tuple(out)


def _where(path: Key, lines: dict[Key, str], source: str) -> str:
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return source


def _schema_at(path: Key, data: Any) -> type[BaseModel] | None:
    """The schema class that validates the mapping at `path`, if there is one."""
    cls: type[BaseModel] = Config
    cur = data
    for key in path:
        field = cls.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            return None
        cur = cur.get(key) if isinstance(cur, dict) else None
        found = _model_class(field.annotation, cur)
        if found is None:
            return None
        cls = found
    return cls


def _model_class(annotation: Any, value: Any) -> type[BaseModel] | None:
    candidates: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            candidates.append(a)
        else:
            stack.extend(typing.get_args(a))
    if len(candidates) == 1:
        return candidates[0]
    if isinstance(value, dict):
        for schemas, tag in ((DATA_SCHEMAS, "loader"), (MODEL_SCHEMAS, "builder")):
            if value.get(tag) in schemas and schemas[value[tag]] in candidates:
                return schemas[value[tag]]
    return None


def _suggest(word: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _describe(err: dict, data: dict, lines: dict[Key, str], source: str) -> str:
    path = _data_path(err["loc"], data)
    where = _where(path, lines, source)
    key = _dotted(path)
    kind = err["type"]
    ctx = err.get("ctx", {})
    given = err.get("input")
    if kind == "extra_forbidden":
        schema = _schema_at(path[:-1], data)
        valid = list(schema.model_fields) if schema else []
        hint = _suggest(path[-1], valid) or (f"; valid keys: {', '.join(valid)}" if valid else "")
        return f"{where}: unknown key '{key}'{hint}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx.get("discriminator", "").strip("'")
        choices = sorted(DATA_SCHEMAS if tag == "loader" else MODEL_SCHEMAS)
        listed = ", ".join(choices)
        if kind == "union_tag_not_found":
            return f"{where}: '{key}' needs a '{tag}' key; choose one of: {listed}"
        chosen = ctx.get("tag")
        hint = _suggest(chosen, choices)
        at = _where((*path, tag), lines, source)
        return f"{at}: unknown {tag} '{chosen}' at '{key}.{tag}'{hint} (choose one of: {listed})"
    if kind == "missing":
        return f"{where}: missing required key '{key}'"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        return f"{where}: {key}: {given!r} is not one of {expected}{_suggest(given, choices)}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "path_type":
        msg = "expected a file path"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind.endswith("_strict"):
        got = "null" if given is None else f"{type(given).__name__} {given!r}"
        return f"{where}: {key}: {msg}; got {got}"
    return f"{where}: {key}: {msg}"
