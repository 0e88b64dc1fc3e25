"""Config of the `lm` family: a causal LM fine-tuned on token sequences (two data pipelines)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vau.config.data import ShardDataConfig
from vau.config.schema import DataConfig, ModelConfig, RunConfig
from vau.models.settings import CausalLMSection


@dataclass
class LMModelConfig(ModelConfig):
    """Model section of the `lm` family."""

    llm: CausalLMSection = field(default_factory=CausalLMSection)
    """The causal LM."""


@dataclass
class TokenDataConfig(DataConfig):
    """Synthetic token-pattern data: sequences a model can learn (loss falls)."""

    num_train: int = 256
    """Training sequences per epoch."""
    num_val: int = 32
    """Validation sequences."""
    seq_len: int = 32
    """Tokens per sequence."""
    vocab_size: int = 128
    """Token ids are drawn from [0, vocab_size)."""


@dataclass
class TextShardDataConfig(ShardDataConfig):
    """Annotation text from tar shards (e.g. `vau synth` captions) as LM training sequences."""

    text: str = "caption"
    """Annotation field to train on: a top-level string (caption, scene, query) or list (captions, key_sentences: joined)."""
    seq_len: int = 64
    """Tokens per sequence (padded/truncated)."""


@dataclass
class LMRunConfig(RunConfig):
    """Run config of the `lm` family (its data section is typed by ``data.pipeline``: tokens or text)."""

    model: LMModelConfig = field(default_factory=LMModelConfig)
    """Causal LM model section."""
