"""The model-family registry: one entry per family, resolved lazily.

A family is three import paths: its typed run config (a ``RunConfig`` subclass with its own
``model``/``data`` sections), its LightningModule builder and its DataModule builder.
The config loader only imports the config class, so `vau config show` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

from vau.registry import Registry, import_object


@dataclass(frozen=True)
class Family:
    """Where a family's parts live (``module:attr`` import paths)."""

    config: str
    """RunConfig subclass with the family's model/data sections."""
    module: str
    """Callable(cfg) -> LightningModule."""
    datamodule: str
    """Callable(cfg) -> LightningDataModule."""

    def config_class(self) -> type:
        """Imports and returns the family's RunConfig subclass."""
        return import_object(self.config)

    def build_module(self, cfg):
        """Builds the family's LightningModule from a resolved config."""
        return import_object(self.module)(cfg)

    def build_datamodule(self, cfg):
        """Builds the family's LightningDataModule from a resolved config."""
        return import_object(self.datamodule)(cfg)


FAMILIES: Registry[Family] = Registry("model family")

FAMILIES.register(
    "lm",
    Family(
        config="vau.config.lm:LMRunConfig",
        module="vau.lit.lm:LMModule",
        datamodule="vau.data.tokens:TokenDataModule",
    ),
)
# The same LM trained on annotation text read from tar shards: the smallest consumer of the
# shard pipeline (exact resume of the data position is tested on it).
FAMILIES.register(
    "lm_text",
    Family(
        config="vau.config.lm:LMTextRunConfig",
        module="vau.lit.lm:LMModule",
        datamodule="vau.data.text:TextShardDataModule",
    ),
)
# ECVA's AnomShield video LLM; its three curriculum stages are configs
# (conf/experiment/anomshield/stage{1,2,3}.yaml and the tiny twins).
FAMILIES.register(
    "anomshield",
    Family(
        config="vau.config.anomshield:AnomShieldRunConfig",
        module="vau.lit.anomshield:AnomShieldModule",
        datamodule="vau.data.anomshield:AnomShieldDataModule",
    ),
)
