"""Task of the `lm` family: next-token loss on a causal LM."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from vau.families.task import LLMTask
from vau.models.llm import build_causal_lm


class LMTask(LLMTask):
    """Trains ``build_causal_lm(cfg.model.llm)`` (optionally with LoRA) on ``labels``."""

    batch_keys = ("input_ids", "attention_mask", "labels")

    def build_model(self) -> nn.Module:
        return build_causal_lm(self.cfg.model.llm)

    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        return {"loss": out.loss}

    def export_extra(self, model: nn.Module, folder: Path) -> None:
        from vau.data.text.tokenizer import build_tokenizer

        if self.save_adapter(model, folder):
            return
        if all(p.requires_grad for p in model.parameters()):
            # A fully trained LM is also written as a plain HF folder (+ its tokenizer), so later
            # runs can load it as `model.llm.pretrained` (e.g. the tiny AnomShield demo's LLM).
            model.save_pretrained(str(folder / "hf"))
            build_tokenizer(self.cfg.model.llm).save(folder / "hf")
