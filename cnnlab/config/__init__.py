"""The experiment schema and its YAML loading; errors name the file, line and key.

Nothing here imports TensorFlow or Keras, so a typo costs a fraction of a second and one line
of output. One module each: field types (base), data loaders' schemas (data), model builders'
schemas (models), training (training), experiment tracking (tracking), the whole experiment
(experiment), reading YAML and `--set` (loading), and turning validation errors into messages
(messages).
"""

from cnnlab.config.data import (
    DATA_SCHEMAS,
    ArrayData,
    Cifar10Data,
    Cifar100Data,
    DataSchema,
    ImageDirData,
    ImageFormat,
    InputNeeds,
    KaggleCsvData,
    MnistData,
)
from cnnlab.config.experiment import BACKENDS, Config
from cnnlab.config.loading import dump_config, flat_config, load_config, read_yaml_mapping
from cnnlab.config.models import (
    MODEL_SCHEMAS,
    AirbenchModel,
    AlexnetLiteModel,
    AugmentationConfig,
    ConvnetModel,
    DeepCnnModel,
    Lenet5Model,
    MlpModel,
    ModelSchema,
    SmallCnnModel,
    StridedCnnModel,
    Vgg16Model,
)
from cnnlab.config.tracking import MlflowConfig, TrackingConfig
from cnnlab.config.training import PHASE_KEYS, PhaseConfig, TrainConfig
from cnnlab.errors import ConfigError

__all__ = [
    "BACKENDS", "DATA_SCHEMAS", "MODEL_SCHEMAS", "PHASE_KEYS", "AirbenchModel", "AlexnetLiteModel",
    "ArrayData",
    "AugmentationConfig", "Cifar10Data", "Cifar100Data", "Config", "ConfigError",
    "ConvnetModel", "DataSchema", "DeepCnnModel", "ImageDirData", "ImageFormat", "InputNeeds",
    "KaggleCsvData", "Lenet5Model", "MlflowConfig", "MlpModel", "MnistData", "ModelSchema",
    "PhaseConfig", "SmallCnnModel", "StridedCnnModel", "TrackingConfig", "TrainConfig",
    "Vgg16Model", "dump_config", "flat_config", "load_config", "read_yaml_mapping",
]  # fmt: skip
