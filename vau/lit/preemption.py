"""Preemption: SLURM's USR1 warning or a SIGTERM ends the run cleanly at a step boundary.

SLURM sends ``--signal=USR1@<s>`` before the time limit and SIGTERM on ``scancel``/node
drain. A signal handler must not do the work itself (it runs between any two bytecodes,
possibly mid-step, and only on the ranks that got it), so it only records the signal. At the
next batch end all ranks agree (max-reduce) to stop at that same step; ``VauCheckpoint``
then writes the full-state checkpoint of that step (it saves whenever ``should_stop`` is set),
and after ``fit`` returns, USR1 inside a SLURM job requeues it (``scontrol requeue``): the
restart resumes with ``resume=auto`` in the same run dir and wandb run.

This replaces Lightning's own SLURM handling (``SLURMEnvironment(auto_requeue=True)``), which
saves from inside the signal handler on the receiving rank only and skips the data position
hooks' agreement across ranks.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from typing import Any, Optional

import lightning as L
import torch

log = logging.getLogger("vau")

SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class PreemptionHandler(L.Callback):
    """Stops every rank at the same step on USR1/TERM; asks for a requeue on USR1 under SLURM."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self.stopped_at: Optional[int] = None
        self._previous: dict[int, Any] = {}

    @property
    def requeue(self) -> bool:
        """The run stopped on USR1 inside a SLURM batch job: it should be requeued."""
        return self.stopped_at is not None and self.received == signal.SIGUSR1 and "SLURM_JOB_ID" in os.environ

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Installed after Lightning's own handlers (registered at the start of fit), so ours win.
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if restarts is not None:
            for lg in trainer.loggers:
                lg.log_metrics({"slurm/restart_count": float(restarts)}, step=trainer.global_step)
            log.info("vau: SLURM job %s, restart %s", os.environ.get("SLURM_JOB_ID"), restarts)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        flag = torch.tensor(float(self.received or 0), device=pl_module.device)
        if trainer.world_size > 1:
            flag = trainer.strategy.reduce(flag, reduce_op="max")
        if flag.item() and self.stopped_at is None:
            self.received = int(flag.item())
            self.stopped_at = trainer.global_step
            trainer.should_stop = True  # VauCheckpoint (which runs after this callback) saves this step
            log.warning("vau: %s received: stopping after step %d with a checkpoint",
                        signal.Signals(self.received).name, trainer.global_step)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        self._previous = {}


def requeue_slurm_job() -> None:
    """``scontrol requeue $SLURM_JOB_ID`` (the job restarts with SLURM_RESTART_COUNT + 1)."""
    job = os.environ["SLURM_ARRAY_JOB_ID"] + "_" + os.environ["SLURM_ARRAY_TASK_ID"] \
        if "SLURM_ARRAY_TASK_ID" in os.environ else os.environ["SLURM_JOB_ID"]
    log.warning("vau: requeueing SLURM job %s", job)
    subprocess.run(["scontrol", "requeue", job], check=True)
