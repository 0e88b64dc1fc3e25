"""Settings of the shared model blocks, one dataclass per block (no torch import here).

Families nest these in their model sections; the blocks read them: ``CausalLMSection`` and
``LoraSection`` -> :func:`vau.models.llm.build_causal_lm`, ``VisionSection`` ->
:func:`vau.models.vision.build_clip_vision`, ``ConnectorSection`` ->
:func:`vau.models.blocks.connector.build_connector`. The config loader imports this module, so
it stays free of torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class LoraSection:
    """PEFT LoRA adapter settings (shared by every family with an LLM)."""

    enabled: bool = False
    """Wrap the LLM with a PEFT LoRA adapter."""
    r: int = 8
    """LoRA rank."""
    alpha: int = 16
    """LoRA alpha (scaling = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA branch."""
    target_modules: List[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt; ['all-linear'] = every linear layer but the LM head (PEFT)."""


@dataclass
class CausalLMSection:
    """A Hugging Face causal LM: a local checkpoint or a config to build from scratch."""

    pretrained: Optional[str] = None
    """Local HF model directory (from_pretrained); null = random init from `arch`."""
    gguf_file: Optional[str] = None
    """GGUF file inside `pretrained` to load instead of safetensors."""
    arch: str = "mistral"
    """HF model_type used when `pretrained` is null (random init, tests and demos)."""
    hidden_size: int = 32
    """Hidden size of a random-init model."""
    intermediate_size: int = 64
    """MLP width of a random-init model."""
    num_hidden_layers: int = 2
    """Layers of a random-init model."""
    num_attention_heads: int = 4
    """Attention heads of a random-init model."""
    num_key_value_heads: int = 2
    """KV heads of a random-init model."""
    vocab_size: int = 128
    """Vocabulary of a random-init model."""
    max_position_embeddings: int = 512
    """Context length of a random-init model."""
    dtype: str = "float32"
    """Weights dtype at load (float32, bfloat16, float16)."""
    trust_remote_code: bool = False
    """Allow model code from the checkpoint directory (off unless you trust it)."""
    attn_implementation: Optional[str] = None
    """HF attention backend (eager, sdpa, flash_attention_2); null = HF default."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory."""
    lora: LoraSection = field(default_factory=LoraSection)
    """LoRA adapter on this LM."""


@dataclass
class VisionSection:
    """The CLIP vision tower."""

    pretrained: Optional[str] = None
    """Local HF CLIP directory (CLIPVisionModel.from_pretrained); null = random init from the sizes below."""
    select_layer: int = -2
    """Hidden layer whose patch tokens are used (CLS dropped); -2 as LLaVA/ECVA."""
    image_size: int = 224
    """Input side of a random-init tower (a pretrained one reads its own)."""
    patch_size: int = 14
    """Patch side of a random-init tower."""
    hidden_size: int = 1024
    """Width of a random-init tower."""
    intermediate_size: int = 4096
    """MLP width of a random-init tower."""
    num_hidden_layers: int = 24
    """Layers of a random-init tower."""
    num_attention_heads: int = 16
    """Heads of a random-init tower."""
    dtype: str = "float32"
    """Weights dtype at load."""


@dataclass
class ConnectorSection:
    """The sequence connector between vision tokens and the projector (ECVA Eqs. 2-10)."""

    kind: str = "bimamba"
    """Variant: a key of ``vau.models.blocks.connector.CONNECTORS`` (bimamba, mamba, mlp)."""
    depth: int = 1
    """Number of (Bi)Mamba blocks."""
    d_state: int = 16
    """SSM state size N."""
    d_conv: int = 4
    """Causal depthwise conv width."""
    expand: int = 2
    """Inner width = expand x vision width."""
    drop_path: float = 0.1
    """Stochastic-depth rate of the blocks (training only)."""
