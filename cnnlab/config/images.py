"""The schemas of the loaders that decode image files: a folder of class folders (`image_dir`)
and a flat folder labelled by a CSV (`image_csv`), which share how files are decoded and split."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from cnnlab.config.base import ExistingDir, FilePath, Fraction, Size
from cnnlab.config.data import CHANNELS, DataSchema, ImageFormat, InputNeeds, ResizeMode


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
