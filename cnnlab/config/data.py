"""Data loaders' schemas: the `loader` key picks one; cnnlab.data.LOADERS has a function each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, NamedTuple

from pydantic import Field, model_validator

from cnnlab.config.base import (
    Count,
    ExistingPath,
    FilePath,
    Fraction,
    Schema,
    Size,
    register_schema,
)

# The MNIST that ships with cnnlab: data/mnist.npz in its checkout.
BUNDLED_MNIST = Path(__file__).resolve().parents[2] / "data" / "mnist.npz"


CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


# How a photo of another aspect ratio than the images' size is fitted to it (ImageDirData).
ResizeMode = Literal["squash", "crop", "pad"]


class ImageFormat(NamedTuple):
    """How image files become a model's input: size, colour mode, resampling, and how a photo
    of another aspect ratio is fitted to the size."""

    height: int
    width: int
    color_mode: str  # grayscale, rgb or rgba
    interpolation: str = "bilinear"
    resize_mode: ResizeMode = "squash"

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, CHANNELS[self.color_mode]


class InputNeeds(NamedTuple):
    """What a model asks of its input images (e.g. an ImageNet base: 3 channels, 32x32)."""

    min_size: int
    channels: int


# Each loader's schema by its `loader` name, filed as the class is defined (cnnlab.data.LOADERS
# holds a function of the same name for each).
DATA_SCHEMAS: dict[str, type[DataSchema]] = {}


class DataSchema(Schema):
    """What every loader's schema answers: the images' shape and, when fixed, the classes."""

    sampling: Literal["shuffle", "balanced"] = Field(
        "shuffle",
        description="How each epoch's training images are drawn. `shuffle`: every image once. "
        "`balanced`: as many images, drawn with repeats so that every class is equally likely "
        "(for imbalanced classes).",
    )
    on_leak: Literal["warn", "error", "drop_from_test"] = Field(
        "warn",
        description="What to do when data health (at the start of `train`, and in `check`) "
        "finds images of one split that copy images of another: `warn`; `error` (stop before "
        "training); `drop_from_test` (train and score without the test images that copy train "
        "or validation ones).",
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs):
        super().__pydantic_init_subclass__(**kwargs)
        register_schema(DATA_SCHEMAS, cls, "loader")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the images the model receives."""
        raise NotImplementedError

    @property
    def fixed_classes(self) -> int | None:
        """The number of classes when the config fixes it; None when only the data tells."""
        return None

    @property
    def multi_label(self) -> bool:
        """Several labels per image (one sigmoid per class) rather than exactly one."""
        return False

    def how_to_give(self, needs: InputNeeds) -> str:
        """The settings that make this loader give images a model with `needs` takes."""
        raise NotImplementedError

    @property
    def image_format(self) -> ImageFormat:
        """How an image file is decoded to look like this loader's images as stored (before
        `resize`/`to_rgb`, which cnnlab.data.adapt_images applies to files and arrays alike)."""
        raise NotImplementedError


class DefaultPath(Schema):
    """A `path` that, left out, is the first of DEFAULT_PATHS that exists (else None: the
    loader downloads). A path the user gives must exist."""

    DEFAULT_PATHS: ClassVar[tuple[Path, ...]] = ()

    @model_validator(mode="after")
    def _locate_default(self):
        # Defaults skip validation, so they are looked up here; relative ones from the
        # current directory.
        if "path" not in self.model_fields_set:
            found = [p.resolve() for p in self.DEFAULT_PATHS if p.exists()]
            self.path = found[0] if found else None
        return self


class ArrayData(DataSchema):
    """Options of the loaders whose images have a fixed size (everything but image_dir).

    ImageNet bases such as VGG16 need 3 channels and at least 32x32 pixels; `resize` and
    `to_rgb` adapt small grayscale images to them. The same change is made to CSVs given to
    evaluate and predict-csv.
    """

    validation_split: Fraction = Field(
        0.1,
        description="The fraction of the training images held out for validation: stratified, "
        "seeded by `seed`.",
    )
    max_samples: Count | None = Field(
        None, description="The first N training and test images only, for quick runs."
    )
    resize: Size | None = Field(
        None,
        description="`[height, width]`: every image resized to it (bilinear), e.g. for a model "
        "that needs larger images than the data has (VGG16: at least 32x32).",
    )
    to_rgb: bool = Field(
        False,
        description="true: a single channel repeated three times, for models that need colour "
        "images (VGG16).",
    )

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        """The shape of the images as stored, before `resize` and `to_rgb`."""
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, int, int]:
        height, width, channels = self.raw_shape
        if self.resize is not None:
            height, width = self.resize
        return height, width, 3 if self.to_rgb else channels

    @property
    def image_format(self) -> ImageFormat:
        height, width, channels = self.raw_shape
        return ImageFormat(height, width, "grayscale" if channels == 1 else "rgb")

    def how_to_give(self, needs: InputNeeds) -> str:
        fix = f"set data.resize: [{needs.min_size}, {needs.min_size}] (or larger)"
        if self.raw_shape[-1] == 1 and needs.channels == 3:
            fix += " and data.to_rgb: true"
        return fix

    @model_validator(mode="after")
    def _to_rgb_needs_gray(self) -> ArrayData:
        if self.to_rgb and self.raw_shape[-1] != 1:
            raise ValueError(
                f"to_rgb: true needs single-channel images; these have {self.raw_shape[-1]}"
            )
        return self


class MnistData(DefaultPath, ArrayData):
    """MNIST from a local .npz in keras.datasets' layout; downloaded when none is found.

    Without `path`: data/mnist.npz in the current folder, else the copy cnnlab ships.
    """

    DEFAULT_PATHS = (Path("data/mnist.npz"), BUNDLED_MNIST)

    loader: Literal["mnist"] = Field(description="`mnist`: this loader.")
    path: FilePath | None = Field(
        None,
        description="The .npz file; a path you give must exist. Default: `data/mnist.npz` in "
        "the current folder, else the copy bundled with cnnlab (so the shipped configs run "
        "from any folder), else downloaded by Keras.",
    )

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        return 28, 28, 1

    @property
    def fixed_classes(self) -> int:
        return 10


class KaggleCsvData(ArrayData):
    """Kaggle Digit Recognizer CSVs: `label` plus one column per pixel, one image per row."""

    loader: Literal["kaggle_csv"] = Field(description="`kaggle_csv`: this loader.")
    train: FilePath = Field(
        description="The training CSV: a `label` column and one column per pixel."
    )
    validation: FilePath | None = Field(
        None, description="A labelled CSV as the validation set, instead of `validation_split`."
    )
    test: FilePath | None = Field(
        None,
        description="A test CSV. Labelled: test metrics. Unlabelled: `submission.csv` in the run "
        "directory.",
    )
    image_shape: Annotated[tuple[Count, Count, Literal[1, 3]], Field(strict=False)] = Field(
        (28, 28, 1),
        description="`[height, width, channels]` of the images in the file, which has height x "
        "width x channels pixel columns.",
    )
    num_classes: Annotated[int, Field(ge=2)] = Field(
        10, description="How many classes: labels lie in 0 to num_classes - 1."
    )

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        return self.image_shape

    @property
    def fixed_classes(self) -> int:
        return self.num_classes


class _CifarData(DefaultPath, ArrayData):
    """The official CIFAR python archive (.tar.gz) or its extracted folder.

    Without `path`, data/ is searched for the archive or folder under its official name, and
    the data is downloaded with keras.datasets when neither is there.
    """

    path: ExistingPath | None = Field(
        None,
        description="The official python version's archive (`cifar-10-python.tar.gz`, "
        "`cifar-100-python.tar.gz`) or its extracted folder (`cifar-10-batches-py/`, "
        "`cifar-100-python/`). Default: that name under `data/`, else downloaded by Keras. "
        "Nothing but the arrays those files hold is unpickled: any other object in a pickle "
        "is refused before it is built.",
    )

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        return 32, 32, 3


class Cifar10Data(_CifarData):
    """CIFAR-10: 50,000 train and 10,000 test colour images of 32x32, 10 classes."""

    DEFAULT_PATHS = (Path("data/cifar-10-python.tar.gz"), Path("data/cifar-10-batches-py"))

    loader: Literal["cifar10"] = Field(description="`cifar10`: this loader.")

    @property
    def fixed_classes(self) -> int:
        return 10


class Cifar100Data(_CifarData):
    """CIFAR-100: like CIFAR-10 with 100 fine classes, grouped into 20 coarse ones."""

    DEFAULT_PATHS = (Path("data/cifar-100-python.tar.gz"), Path("data/cifar-100-python"))

    loader: Literal["cifar100"] = Field(description="`cifar100`: this loader.")
    label_mode: Literal["fine", "coarse"] = Field(
        "fine", description="`fine`: the 100 classes; `coarse`: the 20 groups of them."
    )

    @property
    def fixed_classes(self) -> int:
        return 100 if self.label_mode == "fine" else 20
