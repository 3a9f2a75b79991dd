"""Data loaders' schemas: the `loader` key picks one; cnnlab.data.LOADERS has a function each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, NamedTuple

from pydantic import Field, model_validator

from cnnlab.config.base import (
    Count,
    ExistingDir,
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


class ImageFileData(DataSchema):
    """What the loaders of image files share: how every file is decoded (before training, and
    cached), what happens to files that cannot be used, and the splits taken from train."""

    image_size: Size = Field(
        (180, 180), description="`[height, width]` that every image is resized to."
    )
    color_mode: Literal["grayscale", "rgb", "rgba"] = Field(
        "rgb",
        description="The colour mode every file is converted to (grayscale, RGBA, CMYK and "
        "palette files alike).",
    )
    interpolation: Literal["bilinear", "nearest", "bicubic", "lanczos", "box", "hamming"] = Field(
        "bilinear", description="The resampling filter that resizes the images."
    )
    resize_mode: ResizeMode = Field(
        "squash",
        description="How a photo of another aspect ratio than `image_size` is fitted to it, as "
        "Keras' `image_dataset_from_directory` does. `squash`: stretched to `image_size`. "
        "`crop`: the largest centred part of `image_size`'s aspect ratio, resized (the edges of "
        "the longer side are cut off; `crop_to_aspect_ratio`). `pad`: black bars added evenly "
        "to both ends of the shorter side up to that aspect ratio, then resized (nothing is cut "
        "off; `pad_to_aspect_ratio`). Applied to the upright photo (EXIF orientation), and the "
        "same way wherever a run's images are decoded: train, evaluate, predict, explain, serve.",
    )
    validation_split: Fraction = Field(
        0.2,
        description="The fraction of train held out for validation when the data has no "
        "validation set of its own (image_dir: a validation folder; image_csv: a `validation` "
        "CSV); seeded by `seed`, stratified when each image has one label. With `test_split` "
        "too, it is taken from what the test split leaves: 0.15 and 0.15 of 1,000 photos give "
        "150 test and 128 validation (the counts are printed as training starts).",
    )
    test_split: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0,
        description="The fraction of train held out as the test set when the data has no test "
        "set of its own (image_dir: a test folder; image_csv: a `test` CSV); seeded by `seed`. "
        "A test folder or CSV, when there is one, is the test set whatever this says.",
    )
    on_bad_file: Literal["error", "skip"] = Field(
        "error",
        description="Files that cannot be used (empty, truncated, not an image; for image_dir "
        "also other extensions and files outside a class folder; for image_csv image files "
        "that no row of the CSVs names): `error` stops with a one-line summary, `skip` trains "
        "without them. Both write the list to `bad_files.csv` in the run directory. Hidden and "
        "system files (.DS_Store, Thumbs.db, names starting with '.') are ignored without a "
        "word.",
    )

    @property
    def image_format(self) -> ImageFormat:
        return ImageFormat(*self.image_size, self.color_mode, self.interpolation, self.resize_mode)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.image_format.shape

    def how_to_give(self, needs: InputNeeds) -> str:
        mode = next(mode for mode, n in CHANNELS.items() if n == needs.channels)
        return (
            f"set data.image_size to at least [{needs.min_size}, {needs.min_size}] "
            f"and data.color_mode: {mode}"
        )


class ImageDirData(ImageFileData):
    """A folder of class sub-folders of image files (jpg, jpeg, png, bmp, gif, webp, tif, tiff).

    Either `root/train/<class>/...` with optional `root/validation/` and `root/test/` (split
    folders by their usual names: training_set, val, test_set, ...; a missing validation
    folder is split off train, a missing test folder is `test_split` of train), or
    `root/<class>/...` split by `validation_split` and `test_split`. A folder (or train/
    folder) without class folders whose files are all named `<class>.<id>.<ext>`, as Kaggle's
    Dogs vs. Cats `train/` (cat.0.jpg, dog.12.jpg), takes its classes from those names.
    Every file is decoded before training (and cached); see `on_bad_file`.
    """

    loader: Literal["image_dir"] = Field(description="`image_dir`: this loader.")
    root: ExistingDir = Field(
        description="The folder of class folders, or of split folders holding class folders; "
        "or a flat folder of files all named `<class>.<id>.<ext>` (cat.0.jpg, dog.12.jpg), "
        "whose classes are the names' first parts."
    )


class ImageCsvData(ImageFileData):
    """A flat folder of image files and a CSV that labels them by file name, as Kaggle ships
    most image competitions (`train/` and `train.csv`).

    Each row names one file in its id column (the name with or without its extension) and
    gives its labels in one of three ways: one class (`label_column`), a 0/1 column per class
    (`label_columns`: several labels per image) or a list of tags in one column
    (`tags_column`: several labels per image). Every file is decoded before training (and
    cached), as with image_dir; see `on_bad_file`.
    """

    loader: Literal["image_csv"] = Field(description="`image_csv`: this loader.")
    images: ExistingDir = Field(
        description="The folder of image files, flat (sub-folders are not read). The files of "
        "`labels`, `validation` and `test` all lie in it."
    )
    labels: FilePath = Field(
        description="The training CSV: a header row, then one row per image with its id and "
        "labels. Read as text, so an id `0001` stays `0001`."
    )
    id_column: str | None = Field(
        None,
        description="The column that names each row's image file, with or without its "
        "extension (`0001` or `0001.jpg`; decided once for the whole column). Default: the "
        "CSV's first column.",
    )
    label_column: str | None = Field(
        None,
        description="One class per image: the column that holds it. The classes are its "
        "distinct values, sorted as text (`10` before `2`).",
    )
    label_columns: list[str] | None = Field(
        None,
        description="Several labels per image: one column per class, each 0 or 1 (1: the "
        "image shows it). The classes are these columns' names, in this order.",
    )
    tags_column: str | None = Field(
        None,
        description="Several labels per image: the column that lists each image's classes "
        "(`haze primary water`), split at `tags_separator`. The classes are the distinct "
        "tags, sorted.",
    )
    tags_separator: str = Field(
        " ",
        min_length=1,
        description="What separates the tags of `tags_column` (a space; `|` or `,` in some "
        "files); empty pieces (two spaces) are ignored.",
    )
    validation: FilePath | None = Field(
        None,
        description="A second CSV, with the same columns, as the validation set instead of "
        "`validation_split` of train; its images lie in `images` too.",
    )
    test: FilePath | None = Field(
        None,
        description="A labelled CSV, with the same columns, as the test set instead of "
        "`test_split` of train; its images lie in `images` too.",
    )

    @model_validator(mode="after")
    def _one_way_of_labelling(self) -> ImageCsvData:
        given = [
            key for key in ("label_column", "label_columns", "tags_column")
            if getattr(self, key) is not None
        ]  # fmt: skip
        if len(given) != 1:
            found = f"{' and '.join(given)} are both given" if given else "none is given"
            raise ValueError(
                "give exactly one of label_column (one class per image), label_columns (a 0/1 "
                f"column per class) or tags_column (a list of classes per image); {found}"
            )
        # (A resolved config holds the default separator whatever was given.)
        if self.tags_separator != " " and self.tags_column is None:
            raise ValueError("tags_separator splits tags_column, which is not given")
        if self.label_columns is not None:
            if len(self.label_columns) < 2:
                raise ValueError(
                    "label_columns needs a column for each of two or more classes; for one "
                    "class per image give label_column"
                )
            twice = next((c for c in self.label_columns if self.label_columns.count(c) > 1), None)
            if twice is not None:
                raise ValueError(f"label_columns names '{twice}' twice")
        return self

    @property
    def multi_label(self) -> bool:
        return self.label_column is None

    @property
    def fixed_classes(self) -> int | None:
        return None if self.label_columns is None else len(self.label_columns)
