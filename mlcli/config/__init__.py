"""Config reading, merging and validation. No TensorFlow import anywhere in this package."""

from mlcli.config.checks import check_config, computed_metrics
from mlcli.config.load import LoadedConfig, config_hash, differences, load_config, to_dict
from mlcli.config.schema import Config

__all__ = [
    "Config", "LoadedConfig", "check_config", "computed_metrics", "config_hash", "differences",
    "load_config", "to_dict",
]
