"""Causal LM loading (local HF directories or random-init configs) and PEFT LoRA wrapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from vau.errors import ConfigError, NotFoundError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """Maps a config dtype name to a torch dtype, with a clear error for unknown names."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise ConfigError(f"dtype {name!r}: expected one of {', '.join(_DTYPES)}") from None


def load_pretrained_lm(path: str | Path, dtype: str, gguf_file: str | None = None, trust_remote_code: bool = False,
                       key: str = "model.llm.pretrained", **kwargs: Any) -> nn.Module:
    """A causal LM from a *local* HF directory (offline; safetensors, or ``gguf_file`` inside it).

    Args:
        path: The model folder.
        dtype: Weights dtype name (float32, bfloat16, float16).
        gguf_file: A GGUF file in ``path`` to load instead of safetensors.
        trust_remote_code: Allow model code from the folder.
        key: The config key that named ``path`` (for the error message).
        **kwargs: More ``from_pretrained`` arguments (``attn_implementation``).

    Raises:
        FileNotFoundError: ``path`` is not a directory.
    """
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.is_dir():
        raise NotFoundError(f"{key}={path}: not a directory (expected a local HF model dir)")
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code,
                                                local_files_only=True, **kwargs)


def build_causal_lm(cfg: Any) -> nn.Module:
    """Builds a Hugging Face causal LM from a ``CausalLMSection``.

    With ``cfg.pretrained`` set, loads it with ``from_pretrained`` from a *local* directory
    (offline; ``trust_remote_code`` only if the config says so). Otherwise builds a randomly
    initialised model of type ``cfg.arch`` from the size fields (tests, demos).
    LoRA is applied when ``cfg.lora.enabled``.

    Args:
        cfg: A ``vau.models.settings.CausalLMSection`` (or DictConfig of it).

    Returns:
        The model (a ``peft.PeftModel`` when LoRA is on).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.pretrained:
        model = load_pretrained_lm(cfg.pretrained, cfg.dtype, cfg.gguf_file, cfg.trust_remote_code, **kwargs)
    else:
        hf_cfg = AutoConfig.for_model(
            cfg.arch,
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_hidden_layers,
            num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_key_value_heads,
            vocab_size=cfg.vocab_size,
            max_position_embeddings=cfg.max_position_embeddings,
            tie_word_embeddings=False,
        )
        model = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch_dtype(cfg.dtype), **kwargs)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora)
    return model


def apply_lora(model: nn.Module, lora: Any) -> nn.Module:
    """Wraps ``model`` with a PEFT LoRA adapter configured by a ``LoraSection``."""
    from peft import LoraConfig, get_peft_model

    targets = list(lora.target_modules)
    target: Any = "all-linear" if targets == ["all-linear"] else targets
    peft_cfg = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=target, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, peft_cfg)


def answer_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy averaged within each answer (a run of supervised labels), then over answers.

    HF's loss averages over every supervised token of the batch, so a paragraph outweighs a
    one-word answer by its length (50x under a byte tokenizer); here each answer weighs the same.
    """
    from vau.constants import IGNORE_INDEX

    target = labels[:, 1:]
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2).float(), target,
                                           ignore_index=IGNORE_INDEX, reduction="none")
    mask = target != IGNORE_INDEX
    if not mask.any():
        return ce.sum() * 0.0  # no supervised token: a zero that keeps the graph
    starts = mask & ~torch.nn.functional.pad(mask[:, :-1], (1, 0), value=False)
    row = torch.arange(mask.shape[0], device=mask.device)[:, None] * mask.shape[1]
    answer = (starts.long().cumsum(1) + row)[mask]  # an id per answer, batch-wide
    _, index = answer.unique(return_inverse=True)
    n = int(index.max()) + 1
    sums = ce.new_zeros(n).index_add_(0, index, ce[mask])
    counts = ce.new_zeros(n).index_add_(0, index, torch.ones_like(ce[mask]))
    return (sums / counts).mean()
