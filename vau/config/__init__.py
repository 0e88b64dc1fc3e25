"""Typed run configs: schema (dataclasses) and the loader that composes conf/ files."""

from vau.config.loader import (
    GROUPS,
    ConfigError,
    compose,
    compose_tool,
    compose_tool_args,
    conf_dir,
    config_diff,
    list_experiments,
    save_config,
    saved_yaml,
    to_container,
    to_yaml,
)
from vau.config.schema import RunConfig

__all__ = [
    "GROUPS", "ConfigError", "RunConfig", "compose", "compose_tool", "compose_tool_args", "conf_dir", "config_diff",
    "list_experiments", "save_config", "saved_yaml", "to_container", "to_yaml",
]
