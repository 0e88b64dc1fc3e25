"""The one LightningModule: runs any family's task (vau.families.task.Task) on its pure PyTorch model."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import lightning as L
import torch
from torch import nn

from vau.config import to_container, to_yaml
from vau.families import get_family
from vau.lit.checkpoint import write_export
from vau.lit.optim import build_optimizer, build_scheduler
from vau.models.trainable import apply_trainable


def partitioned(params: Iterable[nn.Parameter]) -> bool:
    """Some of ``params`` are ZeRO-3-partitioned (DeepSpeed tags those with a ``ds_id``): every
    forward pass then gathers weights from all ranks, so all ranks must run it."""
    return any(hasattr(p, "ds_id") for p in params)


@contextlib.contextmanager
def gathered(params: list[nn.Parameter]) -> Iterator[None]:
    """Materialises ZeRO-3-partitioned parameters on every rank for the duration."""
    if partitioned(params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            yield
    else:
        yield


class VauModule(L.LightningModule):
    """Trains, validates, tests and predicts with ``cfg.model.family``'s task.

    ``self.model`` is the family's pure nn.Module (built by the task, then frozen/unfrozen by
    ``model.trainable``); ``self.task`` supplies losses, metrics, records and export extras.
    Every loss term is logged as ``train/<term>`` (``train/loss`` the total) and
    ``val/<term>``/``test/<term>`` as epoch means over all ranks; the task's torchmetrics are
    computed once per epoch over all ranks as ``val/<name>``/``test/<name>``.
    """

    def __init__(self, cfg: Any, task: Any = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.task = task if task is not None else get_family(cfg.model.family).build_task(cfg)
        self.model = self.task.build_model()
        apply_trainable(self.model, cfg.model.trainable)
        # ModuleDicts, so the metrics follow the module's device and are not in checkpoints' weights.
        self.val_metrics = nn.ModuleDict(self.task.metrics())
        self.test_metrics = nn.ModuleDict(self.task.metrics())
        # Lean checkpoints hold no frozen parameters; check_resume_fits has already checked the rest.
        self.strict_loading = bool(cfg.ckpt.frozen)

    # -- steps --------------------------------------------------------------------------
    def _losses(self, batch: Any) -> dict[str, torch.Tensor]:
        self.task.check_batch(batch)
        return self.task.losses(self.model, batch)

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self._losses(batch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        terms = self._losses(batch)
        n = self.batch_size(batch)
        for name, value in terms.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=False, prog_bar=name == "loss", batch_size=n)
        return terms["loss"]

    def _evaluate(self, batch: Any, stage: str, metrics: nn.ModuleDict) -> None:
        n = self.batch_size(batch)
        for name, value in self._losses(batch).items():
            self.log(f"{stage}/{name}", value, on_epoch=True, sync_dist=True, prog_bar=name == "loss", batch_size=n)
        if len(metrics):
            self.task.update_metrics(metrics, self.model, batch)
            for name, metric in metrics.items():
                # Logging the Metric object: Lightning computes it at epoch end (synced) and resets it.
                self.log(f"{stage}/{name}", metric, on_epoch=True, on_step=False)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict]:
        return self.task.predict(self.model, batch)

    # -- optimisation -------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        opt = build_optimizer(self.model, self.cfg.optim)
        sched = build_scheduler(opt, self.cfg.optim, lambda: int(self.trainer.estimated_stepping_batches))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- sizes for throughput -----------------------------------------------------------
    def batch_size(self, batch: Any) -> int:
        """Samples in a batch (the task's count)."""
        return int(self.task.batch_size(batch))

    def num_tokens(self, batch: Any) -> int:
        """Tokens in a batch (the task's count; 0 for families without text)."""
        return int(self.task.num_tokens(batch))

    # -- checkpoints and exports --------------------------------------------------------
    def frozen_keys(self) -> list[str]:
        """State-dict keys of the frozen parameters (what a lean checkpoint leaves out)."""
        return [f"model.{n}" for n, p in self.model.named_parameters() if not p.requires_grad]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["vau_config"] = to_container(self.cfg)
        if not self.cfg.ckpt.frozen and "state_dict" in checkpoint:
            # A 7B frozen LLM per save is most of the file; the model rebuilds it at resume
            # (pretrained weights, seeded init, init_from), so only what trains is stored.
            for key in self.frozen_keys():
                checkpoint["state_dict"].pop(key, None)

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) of every trainable parameter of ``self.model``."""
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def export(self, target: str | Path, trainer: L.Trainer | None = None, extra_state: dict | None = None) -> Path | None:
        """Writes trainable weights + resolved config (+ the task's export extras) to ``target``.

        Collective under ZeRO-3 (all ranks must call); only global rank 0 writes.
        """
        named = self.trainable_named_parameters()
        is_zero = trainer is None or trainer.is_global_zero
        with gathered([p for _, p in named]):
            tensors = {n: p.detach().clone().cpu() for n, p in named} if is_zero else {}
            if is_zero:
                state = ({"global_step": trainer.global_step, "epoch": trainer.current_epoch, **(extra_state or {})}
                         if trainer else None)
                return write_export(target, tensors, to_yaml(self.cfg), state=state,
                                    extra=lambda folder: self.task.export_extra(self.model, folder))
        return None
