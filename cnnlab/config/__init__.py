"""The experiment schema and its YAML loading; errors name the file, line and key.

Nothing here imports TensorFlow or Keras, so a typo costs a fraction of a second and one line
of output. One module each: field types (base), data loaders' schemas (data; those of image
files in images), model builders' schemas (models), training (training), experiment tracking
(tracking), the whole experiment (experiment), reading YAML and `--set` (loading), and turning
validation errors into messages (messages). A loader's or builder's own schema is imported from
its module (config.data, config.images, config.models); DATA_SCHEMAS and MODEL_SCHEMAS list them
by name.
"""

from cnnlab.config.data import DATA_SCHEMAS, ImageFormat, InputNeeds
from cnnlab.config.experiment import BACKENDS, Config
from cnnlab.config.loading import (
    dump_config,
    flat_config,
    load_config,
    override_items,
    read_yaml_mapping,
)
from cnnlab.config.models import MODEL_SCHEMAS, AugmentationConfig
from cnnlab.config.tracking import MlflowConfig, TrackingConfig
from cnnlab.config.training import PHASE_KEYS, MuonConfig, PhaseConfig, TrainConfig
from cnnlab.utils.errors import ConfigError

__all__ = [
    "BACKENDS", "DATA_SCHEMAS", "MODEL_SCHEMAS", "PHASE_KEYS", "AugmentationConfig", "Config",
    "ConfigError", "ImageFormat", "InputNeeds", "MlflowConfig", "MuonConfig", "PhaseConfig",
    "TrackingConfig", "TrainConfig", "dump_config", "flat_config", "load_config",
    "override_items", "read_yaml_mapping",
]  # fmt: skip
