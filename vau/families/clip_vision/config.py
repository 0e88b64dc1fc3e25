"""Config of the `clip_vision` family: a CLIP vision tower + linear head over clip labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

from vau.config.data import ShardDataConfig
from vau.config.schema import ModelConfig, RunConfig
from vau.errors import ConfigError
from vau.models.settings import VisionSection

POOLS = ("max", "mean")
"""How a clip's patch features become one vector (``model.pool``)."""


@dataclass
class ClipVisionModelConfig(ModelConfig):
    """Model section of the `clip_vision` family."""

    vision: VisionSection = field(default_factory=VisionSection)
    """The CLIP vision tower (its ``select_layer`` features are the ones classified)."""
    pool: str = "max"
    """max or mean over all frames and patches of a clip (max: an anomaly is a small mark in some frames)."""
    grid_pool: int = 1
    """Average each frame's patch grid in grid_pool x grid_pool blocks first (AnomShield's ``model.pool``), so the features survive it."""


@dataclass
class ClipVisionDataConfig(ShardDataConfig):
    """Video (or image) shards whose annotation names the clip's anomaly class."""

    classes: List[str] = field(default_factory=list)
    """Class names in head order; a clip's label is its first ``anomaly.classes`` entry, or ``normal`` when not abnormal."""
    normal: str = "normal"
    """Label of a clip whose ``anomaly.abnormal`` is false (must be one of ``classes``)."""


@dataclass
class ClipVisionRunConfig(RunConfig):
    """Run config of the `clip_vision` family."""

    model: ClipVisionModelConfig = field(default_factory=ClipVisionModelConfig)
    """Vision tower + classifier head."""

    @classmethod
    def check(cls, cfg: Any) -> None:
        """Also: at least two classes, ``normal`` among them, a known pool."""
        super().check(cfg)
        classes = list(cfg.data.classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ConfigError(f"data.classes={classes}: expected two or more distinct class names")
        if cfg.data.normal not in classes:
            raise ConfigError(f"data.normal={cfg.data.normal!r} is not one of data.classes={classes}")
        if cfg.model.pool not in POOLS:
            raise ConfigError(f"model.pool={cfg.model.pool!r}: expected one of {', '.join(POOLS)}")
