"""Preemption: SLURM's USR1 warning or a SIGTERM ends the run cleanly at a step boundary.

SLURM sends ``--signal=USR1@<s>`` before the time limit and SIGTERM on ``scancel``/node
drain, to every process of the job. ``vau.signals.STOP`` records the signal from the start of
``vau train``; at the next batch end all ranks agree (max-reduce) to stop at that same step;
``VauCheckpoint`` then writes the full-state checkpoint of that step (it saves whenever
``should_stop`` is set), no export is written, and after ``fit`` returns USR1 inside a SLURM
job requeues it (``scontrol requeue``) and ``vau train`` exits non-zero (128 + signal), so a
stopped run never looks finished (no ``export/``, no ``afterok``). The restart resumes with
``resume=auto`` in the same run dir and wandb run. A signal that arrives before the first
batch stops the run before it trains (its state is the checkpoint it resumed from).

This replaces Lightning's own signal handling: its SLURM requeue saves from inside the signal
handler on the receiving rank only, and its SIGTERM handler runs a collective inside the
handler and then raises, losing the stop checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from typing import Any, Optional

import lightning as L
import torch

from vau.signals import STOP

log = logging.getLogger("vau")


class PreemptionHandler(L.Callback):
    """Stops every rank at the same step on USR1/TERM; asks for a requeue on USR1 under SLURM."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self.stopped_at: Optional[int] = None

    @property
    def requeue(self) -> bool:
        """The run stopped on USR1 inside a SLURM batch job: it should be requeued."""
        return self.stopped_at is not None and self.received == signal.SIGUSR1 and "SLURM_JOB_ID" in os.environ

    def _agree(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        flag = torch.tensor(float(STOP.received or 0), device=pl_module.device)
        if trainer.world_size > 1:
            flag = trainer.strategy.reduce(flag, reduce_op="max")
        return int(flag.item())

    def _stop(self, trainer: L.Trainer, signum: int, when: str) -> None:
        self.received, self.stopped_at = signum, trainer.global_step
        trainer.should_stop = True  # VauCheckpoint (which runs after this callback) saves this step
        log.warning("vau: %s received: stopping %s step %d%s", signal.Signals(signum).name, when,
                    trainer.global_step, " with a checkpoint" if when == "after" else "")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if restarts is not None:
            for lg in trainer.loggers:
                lg.log_metrics({"slurm/restart_count": float(restarts)}, step=trainer.global_step)
            log.info("vau: SLURM job %s, restart %s", os.environ.get("SLURM_JOB_ID"), restarts)
        signum = self._agree(trainer, pl_module)
        if signum:  # during start-up: nothing trained since the state this run began from
            self._stop(trainer, signum, "before")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.stopped_at is not None:
            return
        signum = self._agree(trainer, pl_module)
        if signum and _last_step(trainer):
            return  # the run ends now anyway, finished (checkpoint and export)
        if signum:
            self._stop(trainer, signum, "after")


def _last_step(trainer: L.Trainer) -> bool:
    """Whether the batch that just ended is the run's last (max_steps, or max_epochs' last batch)."""
    if 0 < trainer.max_steps <= trainer.global_step:
        return True
    epochs = trainer.max_epochs
    return (epochs is not None and 0 < epochs <= trainer.current_epoch + 1
            and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


def stop_of(trainer: L.Trainer) -> Optional[PreemptionHandler]:
    """The trainer's PreemptionHandler if it stopped the run, else None."""
    h = next((c for c in trainer.callbacks if isinstance(c, PreemptionHandler)), None)
    return h if h is not None and h.stopped_at is not None else None


def requeue_slurm_job() -> None:
    """``scontrol requeue $SLURM_JOB_ID`` (the job restarts with SLURM_RESTART_COUNT + 1)."""
    job = os.environ["SLURM_ARRAY_JOB_ID"] + "_" + os.environ["SLURM_ARRAY_TASK_ID"] \
        if "SLURM_ARRAY_TASK_ID" in os.environ else os.environ["SLURM_JOB_ID"]
    log.warning("vau: requeueing SLURM job %s", job)
    subprocess.run(["scontrol", "requeue", job], check=True)
