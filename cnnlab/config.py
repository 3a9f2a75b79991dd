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
# Where the official CIFAR archives are looked for when no path is given (then downloaded).
DEFAULT_CIFAR_PATHS = {
    "cifar10": (Path("data/cifar-10-python.tar.gz"), Path("data/cifar-10-batches-py")),
    "cifar100": (Path("data/cifar-100-python.tar.gz"), Path("data/cifar-100-python")),
}
Size = Annotated[
    tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]], Field(strict=False)
]


def _existing(path: Path) -> Path:
    path = path.expanduser().resolve()
    if not path.exists():
        raise ValueError(f"not found: {path}")
    return path


def _existing_dir(path: Path) -> Path:
    path = _existing(path)
    if not path.is_dir():
        raise ValueError(f"not a folder: {path}")
    return path


ExistingPath = Annotated[Path, Field(strict=False), AfterValidator(_existing)]
ExistingDir = Annotated[Path, Field(strict=False), AfterValidator(_existing_dir)]


# ---------------------------------------------------------------------------------------------
# Data loaders: the `loader` key picks one schema; cnnlab.data.LOADERS has a function per name.


class ArrayData(Schema):
    """Options of the loaders whose images have a fixed size (everything but image_dir).

    ImageNet bases such as VGG16 need 3 channels and at least 32x32 pixels; these adapt small
    grayscale images to them. The same change is made to CSVs given to evaluate and predict-csv.
    """

    resize: Size | None = None  # [height, width], bilinear
    to_rgb: bool = False  # repeat a single channel three times

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        """The shape of the images as stored, before `resize` and `to_rgb`."""
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of the images the model receives."""
        height, width, channels = self.raw_shape
        if self.resize is not None:
            height, width = self.resize
        return height, width, 3 if self.to_rgb else channels

    @model_validator(mode="after")
    def _to_rgb_needs_gray(self) -> ArrayData:
        if self.to_rgb and self.raw_shape[-1] != 1:
            raise ValueError(
                f"to_rgb: true needs single-channel images; these have {self.raw_shape[-1]}"
            )
        return self


class MnistData(ArrayData):
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

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        return 28, 28, 1


class KaggleCsvData(ArrayData):
    """Kaggle Digit Recognizer CSVs: `label` plus one column per pixel, one image per row."""

    loader: Literal["kaggle_csv"]
    train: FilePath
    validation: FilePath | None = None  # labelled; replaces validation_split when given
    test: FilePath | None = None  # labelled → test metrics; unlabelled → a submission.csv
    validation_split: Fraction = 0.1
    # (height, width, channels) of the images in the file: height*width*channels pixel columns
    image_shape: Annotated[
        tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)], Literal[1, 3]],
        Field(strict=False),
    ] = (28, 28, 1)
    num_classes: Annotated[int, Field(ge=2)] = 10
    max_samples: Annotated[int, Field(ge=1)] | None = None

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        return self.image_shape


class _CifarData(ArrayData):
    """The official CIFAR python archive (.tar.gz) or its extracted folder.

    Without `path`, data/ is searched for the archive or folder under its official name, and
    the data is downloaded with keras.datasets when neither is there.
    """

    path: ExistingPath | None = None
    validation_split: Fraction = 0.1
    max_samples: Annotated[int, Field(ge=1)] | None = None  # first N of train and test

    @model_validator(mode="after")
    def _locate_default(self) -> _CifarData:
        if "path" not in self.model_fields_set:
            found = [p.resolve() for p in DEFAULT_CIFAR_PATHS[self.loader] if p.exists()]
            self.path = found[0] if found else None
        return self

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        return 32, 32, 3


class Cifar10Data(_CifarData):
    """CIFAR-10: 50,000 train and 10,000 test colour images of 32x32, 10 classes."""

    loader: Literal["cifar10"]


class Cifar100Data(_CifarData):
    """CIFAR-100: like CIFAR-10 with 100 fine classes, grouped into 20 coarse ones."""

    loader: Literal["cifar100"]
    label_mode: Literal["fine", "coarse"] = "fine"


class ImageDirData(Schema):
    """A folder of class sub-folders of image files (jpg, jpeg, png, bmp, gif).

    Either `root/train/<class>/...` with optional `root/validation/` and `root/test/` (missing
    validation is split off train), or `root/<class>/...` split by `validation_split` and
    `test_split`. Every file is decoded before training; see `on_bad_file`.
    """

    loader: Literal["image_dir"]
    root: ExistingDir
    image_size: Size = (180, 180)  # [height, width] every image is resized to
    color_mode: Literal["grayscale", "rgb", "rgba"] = "rgb"  # files are converted to it
    interpolation: Literal["bilinear", "nearest", "bicubic", "lanczos", "box", "hamming"] = (
        "bilinear"
    )
    # Split off train when there is no validation/ (or test/) folder; seeded by `seed`.
    validation_split: Fraction = 0.2
    test_split: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # Files that cannot be used (empty, truncated, not an image, macOS `._` files, other
    # extensions, files outside a class folder): `error` stops and lists them, `skip` trains
    # without them. Both write the list to bad_files.csv in the run directory.
    on_bad_file: Literal["error", "skip"] = "error"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels = {"grayscale": 1, "rgb": 3, "rgba": 4}[self.color_mode]
        return *self.image_size, channels

    raw_shape = input_shape


DATA_SCHEMAS: dict[str, type[Schema]] = {
    "mnist": MnistData,
    "kaggle_csv": KaggleCsvData,
    "cifar10": Cifar10Data,
    "cifar100": Cifar100Data,
    "image_dir": ImageDirData,
}
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


class AlexnetLiteModel(ModelSchema):
    """A small AlexNet for 32x32 colour images: 3 conv + 2 dense layers, max pooling.

    Per block: a conv (5x5, 5x5, 3x3 by default) with 'same' padding, ReLU and overlapping 3x3
    max pooling of stride 2; then dense layers with dropout.
    """

    builder: Literal["alexnet_lite"]
    filters: PositiveInts = [64, 128, 256]
    kernel_sizes: PositiveInts = [5, 5, 3]  # one per entry of filters
    dense_units: PositiveInts = [384, 192]
    dropout: Dropout = 0.5  # after each dense layer
    batch_norm: bool = False  # BatchNormalization after each conv

    @model_validator(mode="after")
    def _kernel_per_filter(self) -> AlexnetLiteModel:
        if len(self.kernel_sizes) != len(self.filters):
            raise ValueError(
                f"kernel_sizes has {len(self.kernel_sizes)} entries and filters "
                f"{len(self.filters)}; give one kernel size per conv layer"
            )
        return self


class ConvnetModel(ModelSchema):
    """Chollet's cats-vs-dogs convnet: 3x3 conv + 2x2 max pooling per entry of `filters`."""

    builder: Literal["convnet"]
    filters: PositiveInts = [32, 64, 128, 256, 256]  # the last conv has no pooling after it
    dense_units: list[Annotated[int, Field(ge=1)]] = []  # hidden dense layers before the output
    dropout: Dropout = 0.0  # before the dense layers (0.5 in the augmented recipe)


class Vgg16Model(ModelSchema):
    """VGG16's convolutional base (no top) with a new classifier head.

    The base computes with VGG16's own preprocessing, inside the model, and in inference mode.
    It starts frozen; `train.phases[*].unfreeze` makes its top layers trainable for fine-tuning.
    """

    builder: Literal["vgg16"]
    # imagenet: Keras downloads them once (~58 MB) into ~/.keras/models; none: random; or the
    # path of a weights file (vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5).
    weights: Literal["imagenet", "none"] | FilePath = "imagenet"
    pooling: Literal["flatten", "avg", "max"] = "flatten"  # base output to a vector
    dense_units: list[Annotated[int, Field(ge=1)]] = [256]
    dropout: Dropout = 0.5  # before the output layer
    # Run the frozen base once over the data and train the head on the stored features: far
    # faster on a CPU. Needs a base frozen in every phase and no augmentation.
    cache_features: bool = False


MODEL_SCHEMAS: dict[str, type[Schema]] = {
    "mlp": MlpModel,
    "small_cnn": SmallCnnModel,
    "deep_cnn": DeepCnnModel,
    "lenet5": Lenet5Model,
    "strided_cnn": StridedCnnModel,
    "alexnet_lite": AlexnetLiteModel,
    "convnet": ConvnetModel,
    "vgg16": Vgg16Model,
}
# The smallest image an ImageNet base takes (five 2x2 poolings), and its channels.
BASE_MIN_SIZE, BASE_CHANNELS = 32, 3
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


class _Optimization(Schema):
    """The keys a training phase may set for itself."""

    epochs: Annotated[int, Field(ge=1)] = 10
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0  # sgd and rmsprop only
    # cosine: decay from learning_rate to 0 over all the epochs' steps (of the phase)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    early_stopping: EarlyStoppingConfig | None = EarlyStoppingConfig()  # null: run every epoch
    reduce_lr_on_plateau: ReduceLrConfig | None = None

    @model_validator(mode="after")
    def _consistent(self):
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


PHASE_KEYS = tuple(_Optimization.model_fields)


class PhaseConfig(_Optimization):
    """One stage of training with its own optimizer and trainable layers.

    Keys left out take the value of the same key under `train`. The model is compiled again
    at the start of each phase (fresh optimizer state); the run's history, best model and
    checkpoints span all phases.
    """

    name: str | None = None  # default phase<N>
    # Layers of a pretrained base (vgg16) that train in this phase, counted from its top: 0
    # keeps it frozen, 4 is Chollet's block5 fine-tuning, all unfreezes every layer.
    unfreeze: Annotated[int, Field(ge=0)] | Literal["all"] = 0


class TrainConfig(_Optimization):
    batch_size: Annotated[int, Field(ge=1)] = 128
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    # Training in stages, e.g. a frozen base then fine-tuning; without it, one phase made of
    # the keys above.
    phases: Annotated[list[PhaseConfig], Field(min_length=1)] | None = None
    # Keras dtype policy. auto: mixed_bfloat16 on CPUs with AVX512_BF16 or AMX and on GPUs of
    # compute capability 8.0 or more, mixed_float16 on older GPUs (7.x), float32 otherwise.
    # The output layer always computes in float32.
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "auto"
    # XLA compilation of the training step. auto: Keras' choice, on for GPUs, off on CPU-only
    # machines (where it is several times slower).
    jit_compile: Literal["auto"] | bool = "auto"
    # Several devices with tf.distribute. auto: MirroredStrategy over all GPUs when there are
    # two or more, else one device; mirrored: all GPUs (or logical CPU devices); none. The
    # batch_size is global (split across replicas); the learning rate is not rescaled.
    distribute: Literal["auto", "none", "mirrored"] = "auto"
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

    @model_validator(mode="before")
    @classmethod
    def _phases_inherit(cls, data: Any) -> Any:
        # Fill each phase's missing keys from train's own, so that the config written into
        # the run directory spells every phase out (and reads back the same).
        if not isinstance(data, dict) or not isinstance(data.get("phases"), list):
            return data
        inherited = {k: data[k] for k in PHASE_KEYS if k in data}
        phases = [
            {**inherited, **phase} if isinstance(phase, dict) else phase for phase in data["phases"]
        ]
        return {**data, "phases": phases}

    def stages(self) -> list[PhaseConfig]:
        """The phases to train, in order: `phases`, or one made of train's own keys."""
        if self.phases:
            return [
                p if p.name else p.model_copy(update={"name": f"phase{i + 1}"})
                for i, p in enumerate(self.phases)
            ]
        return [PhaseConfig(name="phase1", **{k: getattr(self, k) for k in PHASE_KEYS})]

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.stages())


class Config(Schema):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None = None
    seed: int = 42
    deterministic: bool = False  # identical results for the same seed (slower on some ops)
    output_dir: DirPath = Path("outputs")
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _model_fits_data(self) -> Config:
        unfrozen = [i for i, p in enumerate(self.train.phases or []) if p.unfreeze]
        if self.model.builder != "vgg16":
            if unfrozen:
                raise ValueError(
                    f"train.phases.{unfrozen[0]}.unfreeze: only a pretrained base (builder "
                    f"vgg16) has layers to unfreeze; {self.model.builder} trains all its layers"
                )
            return self
        height, width, channels = self.data.input_shape
        if min(height, width) < BASE_MIN_SIZE or channels != BASE_CHANNELS:
            if self.data.loader == "image_dir":
                fix = (
                    f"set data.image_size to at least [{BASE_MIN_SIZE}, {BASE_MIN_SIZE}] "
                    "and data.color_mode: rgb"
                )
            else:
                fix = f"set data.resize: [{BASE_MIN_SIZE}, {BASE_MIN_SIZE}] (or larger)"
                if self.data.raw_shape[-1] == 1:
                    fix += " and data.to_rgb: true"
            raise ValueError(
                f"model.builder vgg16 needs colour images of at least {BASE_MIN_SIZE}x"
                f"{BASE_MIN_SIZE}; the data gives {'x'.join(map(str, self.data.input_shape))}: "
                f"{fix}"
            )
        if self.model.cache_features:
            if self.model.augmentation is not None:
                raise ValueError(
                    "model.cache_features: features computed once cannot be augmented; remove "
                    "model.augmentation or set cache_features: false"
                )
            if unfrozen:
                raise ValueError(
                    f"model.cache_features needs the base frozen in every phase, but "
                    f"train.phases.{unfrozen[0]}.unfreeze is set; set cache_features: false"
                )
        return self


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
    parts: list[str | int] = list(key.strip().split("."))
    node: Any = data
    for i, part in enumerate(parts):
        if isinstance(node, list):
            # A list entry by position: train.phases.1.unfreeze=4
            if not (isinstance(part, str) and part.isdigit() and int(part) < len(node)):
                raise ConfigError(
                    f"{source}: '{'.'.join(map(str, parts[:i]))}' has {len(node)} entries; "
                    f"'{part}' is not one of their positions 0-{len(node) - 1}"
                )
            parts[i] = part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"{source}: '{'.'.join(map(str, parts[:i]))}' is not a mapping")
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    lines[tuple(parts)] = source


def read_yaml_mapping(path: Path, what: str, example: str) -> tuple[dict, dict[Key, str]]:
    """A YAML file whose top level is a mapping, and where each key is defined ("file:line").

    Raises:
        ConfigError: a missing or unreadable file, invalid YAML, duplicate keys, or a top
            level that is not a mapping (`example` shows the keys expected there).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: cannot read {what}: {e}") from None
    lines: dict[Key, str] = {}
    data = _parse_yaml(text, source, lines)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the top level must be a mapping ({example})")
    return data, lines


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
    data, lines = read_yaml_mapping(path, "config", "data:, model:, train:")
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
    if not path:
        # Checks across sections start with the key they are about: point at its line.
        named = re.match(r"([A-Za-z_][\w]*(?:\.\w+)+)", msg)
        if named:
            parts = tuple(int(p) if p.isdigit() else p for p in named.group(1).split("."))
            return f"{_where(parts, lines, source)}: {msg}"
    if kind == "path_type":
        msg = "expected a file path"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind.endswith("_strict"):
        got = "null" if given is None else f"{type(given).__name__} {given!r}"
        return f"{where}: {key}: {msg}; got {got}"
    return f"{where}: {key}: {msg}"
