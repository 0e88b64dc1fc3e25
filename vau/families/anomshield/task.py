"""Task of the `anomshield` family: next-token loss on the answers, one task for all three stages."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from vau.families.task import LLMTask


class AnomShieldTask(LLMTask):
    """Trains :class:`~vau.families.anomshield.model.AnomShield`; stages differ only in config."""

    batch_keys = ("input_ids", "attention_mask", "labels", "pixel_values")

    def build_model(self) -> nn.Module:
        from vau.families.anomshield.model import AnomShield

        return AnomShield(self.cfg.model)

    def losses(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": model(**{k: batch[k] for k in self.batch_keys}).loss}
