"""Base LightningModule: optimizer/schedule from config, config in checkpoints, exports."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import lightning as L
from torch import nn

from vau.config import to_container, to_yaml
from vau.lit.checkpoint import write_export
from vau.lit.optim import build_optimizer, build_scheduler


@contextlib.contextmanager
def gathered(params: list[nn.Parameter]) -> Iterator[None]:
    """Materialises ZeRO-3-partitioned parameters on every rank for the duration."""
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            yield
    else:
        yield


class VauModule(L.LightningModule):
    """Shared behaviour of every family's LightningModule.

    Subclasses set ``self.model`` (a pure nn.Module from ``vau.models``) and implement
    ``training_step``; they may override :meth:`export_extra`, :meth:`batch_size` and
    :meth:`num_tokens`.
    """

    model: nn.Module

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg

    # -- optimisation -------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        opt = build_optimizer(self.model, self.cfg.optim)
        sched = build_scheduler(opt, self.cfg.optim, lambda: int(self.trainer.estimated_stepping_batches))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- sizes for throughput -----------------------------------------------------------
    def batch_size(self, batch: Any) -> int:
        """Samples in a batch."""
        return int(batch["input_ids"].shape[0])

    def num_tokens(self, batch: Any) -> int:
        """Non-padding tokens in a batch."""
        return int(batch["attention_mask"].sum())

    # -- checkpoints and exports --------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["vau_config"] = to_container(self.cfg)

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) of every trainable parameter of ``self.model``."""
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def export(self, target: str | Path, trainer: L.Trainer | None = None) -> Path | None:
        """Writes trainable weights + resolved config (+ :meth:`export_extra`) to ``target``.

        Collective under ZeRO-3 (all ranks must call); only global rank 0 writes.
        """
        named = self.trainable_named_parameters()
        is_zero = trainer is None or trainer.is_global_zero
        with gathered([p for _, p in named]):
            tensors = {n: p.detach().clone().cpu() for n, p in named} if is_zero else {}
            if is_zero:
                return write_export(target, tensors, to_yaml(self.cfg), extra=self.export_extra)
        return None

    @staticmethod
    def save_adapter(llm: nn.Module, folder: Path) -> bool:
        """Writes a PEFT model's LoRA adapter to ``folder/adapter`` in PEFT's format; False if not PEFT."""
        # PEFT's own format (adapter_config.json + adapter_model.safetensors): loads with
        # PeftModel.from_pretrained and merges with `merge_and_unload`.
        if not hasattr(llm, "peft_config"):
            return False
        llm.save_pretrained(str(folder / "adapter"))
        return True

    def export_extra(self, folder: Path) -> None:
        """Hook: write family-specific files (adapters, tokenizer) into an export folder."""
