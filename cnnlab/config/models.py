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

    # alternating: airbench's horizontal flips, each image mirrored at random in the first
    # epoch and then every other epoch relative to that (done by the training batches).
    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical", "alternating"] = (
        "none"
    )
    rotation: Annotated[float, Field(ge=0, le=180)] = 0.0  # up to ± this many degrees
    zoom: Dropout = 0.0  # up to ± this fraction of the size
    translation: Dropout = 0.0  # up to ± this fraction of the height and width
    # Whole-pixel shifts of up to ± this many pixels (airbench: 2), without resampling.
    shift: Annotated[int, Field(ge=0, le=64)] = 0
    contrast: Dropout = 0.0  # contrast scaled by a random factor in [1 - c, 1 + c]
    # How pixels moved in from outside the image are filled: `constant` (black) suits digits on
    # a black background, `reflect` photos.
    fill_mode: Literal["reflect", "constant", "nearest", "wrap"] = "reflect"


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

    augmentation: AugmentationConfig | None = None
    # Test-time augmentation: horizontal_flip averages the class probabilities of each image
    # and its mirror image wherever a run predicts (training's scores, evaluate, predict,
    # predict-csv). Suits photos; not digits or text, which a mirror changes.
    # flip_and_shift: airbench's six views, the mirror average of the image (weight 1/2) and
    # of it shifted one pixel up-left and down-right (1/4 each, edges reflected).
    tta: Literal["none", "horizontal_flip", "flip_and_shift"] = "none"

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
    head_filters: Count = 128
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
    dense_units: list[Count] = []  # hidden dense layers before the output
    dropout: Dropout = 0.0  # before the dense layers (0.5 in the augmented recipe)


class AirbenchModel(ModelSchema):
    """Keller Jordan's airbench CIFAR-10 net: a 2x2 conv, then per block conv3x3, max pooling,
    BatchNorm and GELU, conv3x3, BatchNorm and GELU; global max pooling and the classifier."""

    builder: Literal["airbench"]
    # The first layer, a 2x2 convolution on the pixels. conv: trained, `stem_filters` of them;
    # whitening: airbench's frozen patch-whitening filters (2 x 2 x 2 x channels of them),
    # computed from the training images before fit, with a trained bias.
    stem: Literal["conv", "whitening"] = "conv"
    stem_filters: Count = 24  # stem: conv only
    filters: PositiveInts = [64, 256, 256]  # one block per entry
    # BatchNorm's moving-average momentum: lower than Keras' 0.99 so that the statistics used
    # for validation keep up with weights that change fast in short schedules.
    bn_momentum: Annotated[float, Field(gt=0, lt=1)] = 0.9
    bn_scale: bool = True  # false: BatchNorm learns a shift only (airbench)
    # The pooled features are multiplied by this before the classifier (airbench: 1/9), which
    # scales the logits and so how fast the classifier's weights move them.
    head_scale: Annotated[float, Field(gt=0)] = 1.0
    head_bias: bool = True  # false: the classifier has weights only (airbench94_muon's head)
    # How the 3x3 convolutions start. glorot: Keras' default. dirac: airbench's (PyTorch's
    # uniform init, the first in-channels filters set to pass their channel through), so each
    # block starts near the identity.
    conv_init: Literal["glorot", "dirac"] = "glorot"


class Vgg16Model(ModelSchema):
    """VGG16's convolutional base (no top) with a new classifier head.

    The base computes with VGG16's own preprocessing, inside the model, and in inference mode.
    It starts frozen; `train.phases[*].unfreeze` makes its top layers trainable for fine-tuning.
    """

    # The smallest image an ImageNet base takes (five 2x2 poolings), and its channels.
    INPUT_NEEDS = InputNeeds(min_size=32, channels=3)
    PRETRAINED_BASE = True

    builder: Literal["vgg16"]
    # imagenet: Keras downloads them once (~58 MB) into ~/.keras/models; none: random; or the
    # path of a weights file (vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5).
    weights: Literal["imagenet", "none"] | FilePath = "imagenet"
    pooling: Literal["flatten", "avg", "max"] = "flatten"  # base output to a vector
    dense_units: list[Count] = [256]
    dropout: Dropout = 0.5  # before the output layer
    # Run the frozen base once over the data and train the head on the stored features: far
    # faster on a CPU. Needs a base frozen in every phase and no augmentation.
    cache_features: bool = False

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
