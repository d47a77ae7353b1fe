"""Typed configuration: the schema with the reference defaults and its YAML loader."""

from fasterrcnn.config.loader import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    default_config,
    dump_config,
    load_config,
)
from fasterrcnn.config.packaged import packaged_config_names, packaged_config_path
from fasterrcnn.config.schema import Config

__all__ = [
    "Config",
    "ConfigError",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "default_config",
    "dump_config",
    "load_config",
    "packaged_config_names",
    "packaged_config_path",
]
