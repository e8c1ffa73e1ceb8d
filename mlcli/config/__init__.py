"""Config reading, merging and validation, Keras names included (against the Keras index). No
TensorFlow import, but where the Keras index is written or is out of date (keras_index_build)."""

from mlcli.config.checks import check_config, computed_metrics
from mlcli.config.load import LoadedConfig, config_hash, differences, load_config, to_dict
from mlcli.config.schema import Config

__all__ = [
    "Config", "LoadedConfig", "check_config", "computed_metrics", "config_hash", "differences",
    "load_config", "to_dict",
]
