"""LightningModule of the `lm` family: next-token loss on a Hugging Face causal LM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vau.data.tokenizer import build_tokenizer
from vau.lit.base import VauModule
from vau.models.llm import build_causal_lm
from vau.models.trainable import apply_trainable


class LMModule(VauModule):
    """Trains ``vau.models.llm.build_causal_lm(cfg.model.llm)`` (optionally with LoRA)."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.model = build_causal_lm(cfg.model.llm)
        apply_trainable(self.model, cfg.model.trainable)

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch).loss
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=self.batch_size(batch))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self(batch).loss
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, prog_bar=True, batch_size=self.batch_size(batch))

    def export_extra(self, folder: Path) -> None:
        if self.save_adapter(self.model, folder):
            return
        if all(p.requires_grad for p in self.model.parameters()):
            # A fully trained LM is also written as a plain HF folder (+ its tokenizer), so later
            # runs can load it as `model.llm.pretrained` (e.g. the tiny AnomShield demo's LLM).
            self.model.save_pretrained(str(folder / "hf"))
            build_tokenizer(self.cfg.model.llm).save(folder / "hf")
