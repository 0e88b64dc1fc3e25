"""Answers the model generates for a few fixed held-out clips, logged at each validation.

The clips are the first ``logger.val_samples`` of the first validation pass on global rank 0
(the validation stream is a fixed single pass, so a resumed run picks the same ones). After
each validation the family's :meth:`~vau.families.task.Task.validation_samples` answers them;
rank 0 logs the rows as a ``wandb.Table`` (``val/samples``, when the run has a wandb logger)
and writes them to ``<run.dir>/val_samples.jsonl`` (one JSON object per row, with its step).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import move_data_to_device

from vau.families.task import Task
from vau.io import atomic_write_text
from vau.lit.module import gathered, partitioned

SAMPLES_FILE = "val_samples.jsonl"
"""File under the run dir holding every validation's sample rows."""
TABLE_KEY = "val/samples"
"""wandb key of the table."""
COLUMNS = ("step", "id", "frames", "question", "answer", "reference")
"""Columns of the table (``frames``: a strip of a few frames of the clip)."""


class ValidationSamples(L.Callback):
    """Logs generated answers for ``count`` fixed validation clips after every validation.

    Which ranks generate: under DDP (or one process) only global rank 0, on its own copy of
    the weights; the other ranks go on and wait for it at the next collective. Under ZeRO-3
    the weights are partitioned and every forward pass gathers them from all ranks, so every
    rank generates for its own first clips, in lockstep (``synced``), and only rank 0 logs.
    Gathering the whole model on each rank instead (``vau.lit.module.gathered``) would need
    the full model's memory per device, which is what ZeRO-3 is there to avoid.

    Args:
        count: Clips (rows per validation); 0 = none.
        max_new_tokens: New tokens per answer at most.
        run_dir: The run directory (``val_samples.jsonl`` goes there).
    """

    def __init__(self, count: int, max_new_tokens: int, run_dir: str | Path) -> None:
        self.count, self.max_new_tokens = count, max_new_tokens
        self.path = Path(run_dir) / SAMPLES_FILE
        self.batches: list[Any] = []  # the fixed clips' batches, on the CPU, for the whole fit
        self.held = 0
        self.enabled = count > 0

    def setup(self, trainer: L.Trainer, pl_module: Any, stage: str) -> None:
        # A task without its own hook (no generation) would log empty tables: keep nothing.
        self.enabled = self.count > 0 and type(pl_module.task).validation_samples is not Task.validation_samples

    @staticmethod
    def _lockstep(trainer: L.Trainer, pl_module: Any) -> bool:
        return trainer.world_size > 1 and partitioned(pl_module.model.parameters())

    def _generates_here(self, trainer: L.Trainer, pl_module: Any) -> bool:
        return self.enabled and (trainer.is_global_zero or self._lockstep(trainer, pl_module))

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if (trainer.sanity_checking or dataloader_idx or self.held >= self.count
                or not self._generates_here(trainer, pl_module)):
            return
        # Copies on the CPU: a few clips, kept off the accelerator between validations.
        self.batches.append(move_data_to_device(batch, "cpu"))
        self.held += pl_module.batch_size(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or not self.batches or not self._generates_here(trainer, pl_module):
            return
        rows: list[dict] = []
        synced = self._lockstep(trainer, pl_module)
        model = pl_module.model
        # ZeRO-3 gathers a module's own weights when its forward runs; generation enters the
        # model through another method (AnomShield's generate uses its embedding tables
        # directly), so the top module's own, small, weights are gathered for the duration.
        with gathered(list(model.parameters(recurse=False))):
            for batch in self.batches:  # under ZeRO-3 each rank holds as many batches: the calls pair up
                rows += pl_module.task.validation_samples(
                    model, move_data_to_device(batch, pl_module.device), self.count - len(rows),
                    max_new_tokens=self.max_new_tokens, synced=synced)
        if trainer.is_global_zero:
            self._write(trainer.global_step, rows)
            wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
            if wandb_loggers:
                table = self._table(trainer.global_step, rows)
                for logger in wandb_loggers:
                    # Through log_metrics: StepWandbLogger logs at the global step and drops
                    # steps an earlier segment of a resumed run already logged.
                    logger.log_metrics({TABLE_KEY: table}, step=trainer.global_step)

    def _write(self, step: int, rows: list[dict]) -> None:
        """Appends this validation's rows; rows at or past ``step`` (an interrupted segment's,
        re-done after a resume) are replaced. The whole file is rewritten atomically: a kill
        never leaves a cut line."""
        kept = []
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] < step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    continue  # not one of our rows
        new = [json.dumps({"step": step, **{k: r[k] for k in ("id", "question", "answer", "reference")}},
                          ensure_ascii=False) for r in rows]
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept + new))

    @staticmethod
    def _table(step: int, rows: list[dict]) -> Any:
        import wandb

        table = wandb.Table(columns=list(COLUMNS))
        for r in rows:
            image = wandb.Image(r["image"]) if r.get("image") is not None else None
            table.add_data(step, r["id"], image, r["question"], r["answer"], r["reference"])
        return table
