"""LightningModule of the `anomshield` family: one module for all three stages (stages are config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vau.data.tokenizer import build_tokenizer
from vau.lit.base import VauModule
from vau.models.anomshield import AnomShield
from vau.models.trainable import apply_trainable

BATCH_KEYS = ("input_ids", "attention_mask", "labels", "pixel_values")


class AnomShieldModule(VauModule):
    """Trains :class:`AnomShield` with next-token loss on the answers."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.model = AnomShield(cfg.model)
        apply_trainable(self.model, cfg.model.trainable)

    def forward(self, batch: dict[str, Any]) -> Any:
        return self.model(**{k: batch[k] for k in BATCH_KEYS})

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self(batch).loss
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=self.batch_size(batch))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss = self(batch).loss
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, prog_bar=True, batch_size=self.batch_size(batch))

    def export_extra(self, folder: Path) -> None:
        # The tokenizer the data pipeline used, so an export is self-contained for inference.
        self.save_adapter(self.model.llm, folder)
        build_tokenizer(self.cfg.model.llm).save(folder / "tokenizer")
