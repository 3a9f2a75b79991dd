"""Model builders' schemas: the `builder` key picks one; cnnlab.models.BUILDERS builds each."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from cnnlab.config.base import (
    Activation,
    Count,
    Dropout,
    FilePath,
    PositiveInts,
    Schema,
    register_schema,
)
from cnnlab.config.data import InputNeeds
from cnnlab.config.training import TrainConfig


class AugmentationConfig(Schema):
    """Random transforms of training batches, as Keras layers inside the model.

    They act only while training (fit); evaluate, predict and validation see the images as they
    are. Each transform left at its default is not added.
    """

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical", "alternating"] = (
        Field(
            "none",
            description="Random mirroring, as Keras' RandomFlip. `alternating`: airbench's "
            "horizontal flips, each image mirrored at random (seeded) in the first epoch and "
            "then mirrored or not in turn, so that every image is seen both ways every two "
            "epochs (done by the training batches; nothing is added to the model).",
        )
    )
    rotation: Annotated[float, Field(ge=0, le=180)] = Field(
        0.0, description="A random rotation of up to ± this many degrees."
    )
    zoom: Dropout = Field(0.0, description="A random zoom of up to ± this fraction of the size.")
    translation: Dropout = Field(
        0.0,
        description="A random shift of up to ± this fraction of the height and width "
        "(bilinear, by fractions of a pixel).",
    )
    shift: Annotated[int, Field(ge=0, le=64)] = Field(
        0,
        description="A random shift by whole pixels, up to ± this many down and across, "
        "without resampling (airbench's random crops of a padded image; airbench: 2).",
    )
    contrast: Dropout = Field(
        0.0, description="Contrast scaled by a random factor in [1 - c, 1 + c]."
    )
    fill_mode: Literal["reflect", "constant", "nearest", "wrap"] = Field(
        "reflect",
        description="How pixels moved in from outside the image are filled: `constant` "
        "(black) suits digits on a black background, `reflect` photos.",
    )


# Each builder's schema by its `builder` name, filed as the class is defined (cnnlab.models
# registers a function of the same name for each).
MODEL_SCHEMAS: dict[str, type[ModelSchema]] = {}


class ModelSchema(Schema):
    """What every builder takes besides its own keys, and what it asks of data and training."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs):
        super().__pydantic_init_subclass__(**kwargs)
        register_schema(MODEL_SCHEMAS, cls, "builder")

    # The images the model needs, when it cannot take any size and channel count.
    INPUT_NEEDS: ClassVar[InputNeeds | None] = None
    # Whether the model has pretrained layers that train.phases[*].unfreeze can unfreeze.
    PRETRAINED_BASE: ClassVar[bool] = False

    augmentation: AugmentationConfig | None = Field(
        None,
        description="Random transforms of the training images, inside the model; e.g. "
        "`{rotation: 10, zoom: 0.1, translation: 0.1}`. null: none.",
    )
    tta: Literal["none", "horizontal_flip", "flip_and_shift"] = Field(
        "none",
        description="Test-time augmentation wherever the run predicts (the scores `train` "
        "writes, `evaluate`, `predict`, `predict-csv`, `serve` and exported files). "
        "`horizontal_flip`: the mean of the class probabilities of each image and its mirror "
        "image. `flip_and_shift`: airbench's six views, that mirror average weighing 1/2 and "
        "the same for the image shifted one pixel down-right and one up-left (edges "
        "reflected) 1/4 each. Both suit photos, not digits or text (a mirrored 2 is no 2).",
    )

    def check_training(self, train: TrainConfig) -> None:
        """Raise ValueError (naming the key) when `train` asks what this model cannot do."""
        unfrozen = [i for i, p in enumerate(train.phases or []) if p.unfreeze]
        if unfrozen and not self.PRETRAINED_BASE:
            bases = ", ".join(n for n, schema in MODEL_SCHEMAS.items() if schema.PRETRAINED_BASE)
            raise ValueError(
                f"train.phases.{unfrozen[0]}.unfreeze: only a pretrained base (builder "
                f"{bases}) has layers to unfreeze; {self.builder} trains all its layers"
            )


class MlpModel(ModelSchema):
    """Fully connected layers on the flattened image (784-512-512-10 on MNIST).

    Parameters: 669,706 on MNIST.
    """

    builder: Literal["mlp"] = Field(description="`mlp`: this builder.")
    units: PositiveInts = Field([512, 512], description="The hidden layers' widths.")
    activation: Activation = Field("relu", description="The hidden layers' activation.")
    dropout: Dropout = Field(0.0, description="Dropout after each hidden layer.")


class SmallCnnModel(ModelSchema):
    """Chollet's MNIST convnet: 3x3 convs with 2x2 max pooling between them, one dense layer.

    conv32-pool-conv64-pool-conv128-flatten-dense. Parameters: 104,202 on MNIST.
    """

    builder: Literal["small_cnn"] = Field(description="`small_cnn`: this builder.")
    filters: PositiveInts = Field(
        [32, 64, 128], description="One 3x3 convolution per entry, with its filter count."
    )
    dropout: Dropout = Field(0.0, description="Dropout before the output layer.")


class DeepCnnModel(ModelSchema):
    """The Kaggle deep CNN: blocks of two 3x3 'same' convs and max pooling, then dense layers.

    Parameters: 936,426 on MNIST.
    """

    builder: Literal["deep_cnn"] = Field(description="`deep_cnn`: this builder.")
    filters: PositiveInts = Field(
        [32, 64], description="One block per entry, with its convolutions' filter count."
    )
    dense_units: PositiveInts = Field(
        [256, 256], description="The dense layers' widths, after the blocks."
    )
    conv_dropout: Dropout = Field(0.25, description="Dropout after every block but the last.")
    dropout: Dropout = Field(0.5, description="Dropout before the output layer.")


class Lenet5Model(ModelSchema):
    """LeCun's LeNet-5: conv6-avgpool-conv16-avgpool-120-84 with tanh.

    Parameters: 61,706 on MNIST.
    """

    builder: Literal["lenet5"] = Field(description="`lenet5`: this builder.")
    activation: Activation = Field("tanh", description="Every hidden layer's activation.")


class StridedCnnModel(ModelSchema):
    """Chris Deotte's Kaggle MNIST net: per block conv3-conv3-conv5/2, BatchNorm after each.

    Downsampling is a stride-2 5x5 convolution instead of pooling; dropout after each block; a
    4x4-kernel convolution to `head_filters` features before the classifier (flattened).
    Parameters: 327,242 on MNIST.
    """

    builder: Literal["strided_cnn"] = Field(description="`strided_cnn`: this builder.")
    filters: PositiveInts = Field(
        [32, 64], description="One block per entry, with its convolutions' filter count."
    )
    head_filters: Count = Field(
        128, description="The filters of the 4x4 convolution before the classifier."
    )
    dropout: Dropout = Field(0.4, description="Dropout after each block and before the classifier.")


class AlexnetLiteModel(ModelSchema):
    """A small AlexNet for 32x32 colour images: 3 conv + 2 dense layers, max pooling.

    Per block: a conv (5x5, 5x5, 3x3 by default) with 'same' padding, ReLU and overlapping 3x3
    max pooling of stride 2; then dense layers with dropout. Parameters: 1,465,930 on
    CIFAR-10.
    """

    builder: Literal["alexnet_lite"] = Field(description="`alexnet_lite`: this builder.")
    filters: PositiveInts = Field(
        [64, 128, 256], description="One block per entry, with its convolution's filter count."
    )
    kernel_sizes: PositiveInts = Field(
        [5, 5, 3], description="Each block's convolution kernel size: one per entry of filters."
    )
    dense_units: PositiveInts = Field([384, 192], description="The dense layers' widths.")
    dropout: Dropout = Field(0.5, description="Dropout after each dense layer.")
    batch_norm: bool = Field(False, description="true: BatchNormalization after each conv.")

    @model_validator(mode="after")
    def _kernel_per_filter(self) -> AlexnetLiteModel:
        if len(self.kernel_sizes) != len(self.filters):
            raise ValueError(
                f"kernel_sizes has {len(self.kernel_sizes)} entries and filters "
                f"{len(self.filters)}; give one kernel size per conv layer"
            )
        return self


class ConvnetModel(ModelSchema):
    """Chollet's cats-vs-dogs convnet: 3x3 conv + 2x2 max pooling per entry of `filters`.

    Needs images of at least 78x78. Parameters: 991,041 on 180x180x3 with 2 classes.
    """

    builder: Literal["convnet"] = Field(description="`convnet`: this builder.")
    filters: PositiveInts = Field(
        [32, 64, 128, 256, 256],
        description="One 3x3 convolution per entry, with 2x2 max pooling between them (none "
        "after the last).",
    )
    dense_units: list[Count] = Field(
        [], description="Hidden dense layers' widths, before the output."
    )
    dropout: Dropout = Field(
        0.0, description="Dropout before the dense layers (0.5 in the augmented recipe)."
    )


class AirbenchModel(ModelSchema):
    """Keller Jordan's airbench CIFAR-10 net: a 2x2 conv, then per block conv3x3, max pooling,
    BatchNorm and GELU, conv3x3, BatchNorm and GELU; global max pooling and the classifier.

    Its BatchNorm and GELU train through fused kernels on TensorFlow (cnnlab's own layers), so
    its saved model loads where cnnlab is installed. Parameters: 1,975,106 on CIFAR-10
    (1,973,954 with `stem: whitening` and `bn_scale: false`).
    """

    builder: Literal["airbench"] = Field(description="`airbench`: this builder.")
    stem: Literal["conv", "whitening"] = Field(
        "conv",
        description="The first layer, a 2x2 convolution on the pixels. `conv`: trained, "
        "`stem_filters` of them. `whitening`: airbench's frozen patch-whitening filters "
        "(2 x 2 x 2 x channels of them), set from 5,000 training images before fit, with a "
        "trained bias.",
    )
    stem_filters: Count = Field(24, description="The stem's filters (`stem: conv` only).")
    filters: PositiveInts = Field(
        [64, 256, 256], description="One block per entry, with its convolutions' filter count."
    )
    bn_momentum: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.9,
        description="BatchNorm's moving-average momentum: lower than Keras' 0.99 so that the "
        "statistics used for validation keep up with weights that change fast in short "
        "schedules.",
    )
    bn_scale: bool = Field(True, description="false: BatchNorm learns a shift only (airbench).")
    head_scale: Annotated[float, Field(gt=0)] = Field(
        1.0,
        description="The pooled features are multiplied by this before the classifier "
        "(airbench: 1/9), which scales the logits and so how fast the classifier's weights "
        "move them.",
    )
    head_bias: bool = Field(
        True, description="false: the classifier has weights only (airbench94_muon's head)."
    )
    conv_init: Literal["glorot", "dirac"] = Field(
        "glorot",
        description="How the 3x3 convolutions start. `glorot`: Keras' default. `dirac`: "
        "airbench's (PyTorch's uniform init, the first in-channels filters set to pass their "
        "channel through), so that each block starts near the identity.",
    )


# keras.applications' image classifiers by their own names: the smallest side each takes and
# how its pixels are prepared (its `preprocess_input` mode; "none": the model itself rescales).
BACKBONES: dict[str, tuple[int, str]] = {
    **{name: (32, "caffe") for name in ("VGG16", "VGG19", "ResNet50", "ResNet101", "ResNet152")},
    **{
        name: (32, "tf")
        for name in (
            "ResNet50V2",
            "ResNet101V2",
            "ResNet152V2",
            "MobileNet",
            "MobileNetV2",
            "NASNetMobile",
            "NASNetLarge",
        )
    },  # fmt: skip
    "Xception": (71, "tf"),
    "InceptionV3": (75, "tf"),
    "InceptionResNetV2": (75, "tf"),
    **{name: (32, "torch") for name in ("DenseNet121", "DenseNet169", "DenseNet201")},
    **{
        name: (32, "none")
        for name in (
            "MobileNetV3Small",
            "MobileNetV3Large",
            *(f"EfficientNetB{i}" for i in range(8)),
            *(f"EfficientNetV2{v}" for v in ("B0", "B1", "B2", "B3", "S", "M", "L")),
            *(f"ConvNeXt{v}" for v in ("Tiny", "Small", "Base", "Large", "XLarge")),
        )
    },  # fmt: skip
}


class _OnPretrainedBase(ModelSchema):
    """What the builders on a pretrained base share: the base's layers can be unfrozen, and its
    features can be computed once (`cache_features`)."""

    PRETRAINED_BASE = True

    cache_features: bool = Field(
        False,
        description="true: run the frozen base once over the training and validation images "
        "and fit only the head on the stored features: many times faster on a CPU. Needs a "
        "base frozen in every phase and no augmentation. The saved model still takes raw "
        "images.",
    )

    def check_training(self, train: TrainConfig) -> None:
        super().check_training(train)
        if not self.cache_features:
            return
        if self.augmentation is not None:
            raise ValueError(
                "model.cache_features: features computed once cannot be augmented; remove "
                "model.augmentation or set cache_features: false"
            )
        unfrozen = [i for i, p in enumerate(train.phases or []) if p.unfreeze]
        if unfrozen:
            raise ValueError(
                f"model.cache_features needs the base frozen in every phase, but "
                f"train.phases.{unfrozen[0]}.unfreeze is set; set cache_features: false"
            )


class PretrainedModel(_OnPretrainedBase):
    """An ImageNet classifier of keras.applications (its convolutional base, no top) under a
    new head: Chollet's feature extraction, then fine-tuning with `train.phases[*].unfreeze`.

    The base's own preprocessing is inside the model (a saved model takes raw pixels), and the
    base runs in inference mode, so its BatchNormalization statistics stay as trained even
    when its layers are unfrozen. It starts frozen.
    """

    builder: Literal["pretrained"] = Field(description="`pretrained`: this builder.")
    backbone: Literal[tuple(BACKBONES)] = Field(  # type: ignore[valid-type]
        description="The keras.applications network by its own name: "
        + ", ".join(f"`{name}`" for name in BACKBONES)
        + ". Xception needs images of at least 71x71, the Inception networks 75x75, the "
        "others 32x32; all need colour."
    )
    weights: Literal["imagenet", "none"] | FilePath = Field(
        "imagenet",
        description="The base's weights. `imagenet`: Keras downloads them once into "
        "`~/.keras/models` (without internet, put the file there or give its path). `none`: "
        "random. Or the path of a weights file of the base without its top.",
    )
    pooling: Literal["avg", "max", "flatten"] = Field(
        "avg", description="How the base's output becomes a vector."
    )
    dense_units: list[Count] = Field([], description="The head's hidden dense layers.")
    dropout: Dropout = Field(0.2, description="Dropout before the output layer.")

    @property
    def INPUT_NEEDS(self) -> InputNeeds:  # noqa: N802  (the class attribute of other builders)
        return InputNeeds(min_size=BACKBONES[self.backbone][0], channels=3)


class Vgg16Model(_OnPretrainedBase):
    """VGG16's convolutional base (no top) with a new classifier head.

    The base computes with VGG16's own preprocessing, inside the model, and in inference mode.
    It starts frozen; `train.phases[*].unfreeze` makes its top layers trainable for fine-tuning.
    Parameters: 16,812,353 on 150x150x3 with 2 classes.
    """

    # The smallest image an ImageNet base takes (five 2x2 poolings), and its channels.
    INPUT_NEEDS = InputNeeds(min_size=32, channels=3)

    builder: Literal["vgg16"] = Field(description="`vgg16`: this builder.")
    weights: Literal["imagenet", "none"] | FilePath = Field(
        "imagenet",
        description="The base's weights. `imagenet`: Keras downloads them once (~58 MB) into "
        "`~/.keras/models`. `none`: random. Or the path of a weights file "
        "(`vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`).",
    )
    pooling: Literal["flatten", "avg", "max"] = Field(
        "flatten", description="How the base's output becomes a vector."
    )
    dense_units: list[Count] = Field([256], description="The head's hidden dense layers.")
    dropout: Dropout = Field(0.5, description="Dropout before the output layer.")
