"""Config of the `anomshield` family (ECVA §IV): CLIP-L -> BiMamba connector -> MLP -> Mistral + LoRA."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vau.config.data import ShardDataConfig
from vau.config.schema import ModelConfig, RunConfig
from vau.errors import ConfigError
from vau.models.settings import CausalLMSection, ConnectorSection, VisionSection

TURNS = ("all", "one")
"""Values of ``data.turns``."""
LOSS_REDUCTIONS = ("token", "answer")
"""Values of ``model.loss``: over all answer tokens of a batch, or per answer first."""


@dataclass
class AnomShieldModelConfig(ModelConfig):
    """Model section of the `anomshield` family."""

    vision: VisionSection = field(default_factory=VisionSection)
    """CLIP vision tower."""
    connector: ConnectorSection = field(default_factory=ConnectorSection)
    """Connector over the flattened ``(t h w)`` token sequence."""
    max_frames: int = 32
    """Length of the temporal embedding table (frames per clip at most)."""
    st_embed: bool = True
    """Add the Eq. 1 spatio-temporal embeddings; false (with connector.kind=mlp) = Tab. VIII "- soft prompt"."""
    pool: int = 4
    """AvgPool3d((1, pool, pool)) over each frame's patch grid: 16x16 patches -> 16 tokens."""
    llm: CausalLMSection = field(default_factory=CausalLMSection)
    """The language model (+ LoRA)."""
    template: str = "plain"
    """Conversation template: plain (stages 1-2) or mistral (stage 3)."""
    loss: str = "token"
    """token: HF's mean over the batch's answer tokens (as ECVA); answer: each answer averaged first, so "Yes." weighs as a paragraph."""


@dataclass
class AnomShieldDataConfig(ShardDataConfig):
    """Shards of images/videos with captions or conversations."""

    target: str = "conversations"
    """What is learned: conversations, caption (short) or long_caption (last of captions)."""
    caption_prompt: str = "<image>\nDescribe the visual content briefly."
    """Human prompt paired with caption targets (unused by the plain template)."""
    max_length: int = 3000
    """Tokens per example at most (visual tokens included)."""
    turns: str = "all"
    """all: a conversation is one example; one: one of its question/answer pairs (drawn per sample and epoch), asked alone as `vau infer` asks."""


@dataclass
class AnomShieldRunConfig(RunConfig):
    """Run config of the `anomshield` family."""

    model: AnomShieldModelConfig = field(default_factory=AnomShieldModelConfig)
    """AnomShield model section."""

    @classmethod
    def check(cls, cfg: Any) -> None:
        """Also: a clip fits the temporal embedding table (checked before the model is built)."""
        super().check(cfg)
        if cfg.model.loss not in LOSS_REDUCTIONS:
            raise ConfigError(f"model.loss={cfg.model.loss!r}: expected one of {', '.join(LOSS_REDUCTIONS)}")
        if cfg.data.turns not in TURNS:
            raise ConfigError(f"data.turns={cfg.data.turns!r}: expected one of {', '.join(TURNS)}")
        frames, table = cfg.data.decode.frames, cfg.model.max_frames
        if frames > table:
            raise ConfigError(f"data.decode.frames={frames} exceeds model.max_frames={table} (the temporal "
                              "embedding table): lower data.decode.frames or raise model.max_frames")
