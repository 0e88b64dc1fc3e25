"""Callbacks: per-step seeding (exact resume), throughput, bad-sample counts, export at the end."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.throughput import Throughput

from vau.lit.preemption import stop_of

log = logging.getLogger("vau.data")
progress_log = logging.getLogger("vau.progress")


class StepSeeder(L.Callback):
    """Reseeds all RNGs before every micro-batch from (seed, rank, step, batch index).

    Dropout masks and any other random draws in a step are then a function of where the
    run is, not of its history: a run resumed from a checkpoint draws exactly what an
    uninterrupted run would, on every rank, without storing per-rank RNG states.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        key = f"{self.seed}/{trainer.global_rank}/{trainer.global_step}/{batch_idx}".encode()
        s = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)
        torch.manual_seed(s)  # also seeds every CUDA device
        random.seed(s)
        np.random.seed(s % 2**32)


class ThroughputLogger(L.Callback):
    """Logs ``train/samples_per_sec`` and ``train/tokens_per_sec`` (all ranks) over a window.

    The windowed arithmetic is Lightning's ``Throughput``; the module tells sizes through
    ``batch_size(batch)`` and ``num_tokens(batch)``.
    """

    def __init__(self, window: int) -> None:
        self.window = max(2, window)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._tp = Throughput(world_size=trainer.world_size, window_size=self.window)
        self._t0 = time.perf_counter()
        self._batches = self._samples = self._tokens = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batches += 1
        self._samples += int(pl_module.batch_size(batch))
        self._tokens += int(pl_module.num_tokens(batch))
        # A family without text counts no tokens: no tokens/s then (Throughput wants lengths >= samples).
        self._tp.update(time=time.perf_counter() - self._t0, batches=self._batches,
                        samples=self._samples, lengths=self._tokens or None)
        metrics = self._tp.compute()
        world = trainer.world_size  # ranks run in lockstep: total = per-device x world size
        if "device/samples_per_sec" in metrics:
            pl_module.log("train/samples_per_sec", float(metrics["device/samples_per_sec"]) * world,
                          on_step=True, on_epoch=False)
        if "device/items_per_sec" in metrics:
            pl_module.log("train/tokens_per_sec", float(metrics["device/items_per_sec"]) * world,
                          on_step=True, on_epoch=False)


class ExportOnEnd(L.Callback):
    """Writes ``<run.dir>/export`` (trainable weights + config) when ``fit`` reaches its end.

    A run stopped by a signal writes none: the next stage's ``init_from``, ``vau sweep`` and
    SLURM ``afterok`` must not take a partial run for a finished one.
    """

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if stop_of(trainer) is None:
            pl_module.export(self.target, trainer)


class ExportBest(L.Callback):
    """Keeps ``<run.dir>/best/`` (an export) of the step with the best ``monitor`` so far.

    Checked after every validation; its ``state.json`` also holds the metric and value, from
    which a resumed run takes the best so far. Under ZeRO-3 all ranks take part in the export.
    """

    def __init__(self, target: str | Path, monitor: str, mode: str) -> None:
        from vau.errors import ConfigError

        if mode not in ("min", "max"):
            raise ConfigError(f"ckpt.mode={mode!r}: expected min or max")
        self.target, self.monitor, self.mode = Path(target), monitor, mode
        self.best: float | None = None
        self._warned = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        import json

        try:
            state = json.loads((self.target / "state.json").read_text())
        except (OSError, ValueError):
            return
        if state.get("monitor") == self.monitor:
            self.best = float(state["value"])

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            if not self._warned and trainer.is_global_zero:
                log.warning("ckpt.monitor=%s: not logged at validation (logged: %s); no best/ export kept",
                            self.monitor, ", ".join(sorted(trainer.callback_metrics)) or "nothing")
            self._warned = True
            return
        value = float(value)
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best = value
            pl_module.export(self.target, trainer, extra_state={"monitor": self.monitor, "value": value})


class BadSampleLogger(L.Callback):
    """Logs how many bad samples the shard stream skipped (``data/bad_samples``).

    Per epoch (summed over ranks) at epoch end, plus this rank's running count at each logged
    step, since a resampled epoch can be long. Data modules without the count are ignored.
    """

    def _count(self, trainer: L.Trainer, train: bool) -> int | None:
        fn = getattr(trainer.datamodule, "bad_samples", None)
        return fn(train) if callable(fn) else None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        n = self._count(trainer, True)
        if n is not None:
            pl_module.log("data/bad_samples_step", float(n), on_step=True, on_epoch=False)

    def _epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, train: bool) -> None:
        n = self._count(trainer, train)
        if n is None or trainer.sanity_checking:
            return
        name = "data/bad_samples" if train else "data/val_bad_samples"
        pl_module.log(name, float(n), on_step=False, on_epoch=True, sync_dist=True, reduce_fx="sum")
        if n:
            log.warning("epoch %d: rank %d skipped %d bad %s sample(s)", trainer.current_epoch, trainer.global_rank, n,
                        "training" if train else "validation")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_end(trainer, pl_module, True)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_end(trainer, pl_module, False)


class ProgressLines(L.Callback):
    """A plain progress line on global rank 0 every ``every`` optimizer steps (logs without a terminal).

    ``vau: step 40/1000 (4%) | loss 2.3130 | lr 1.00e-04 | 12.3 samples/s | ETA 0:12:30``; the
    ETA is the remaining steps at this segment's mean step time (a resumed run starts afresh).
    """

    def __init__(self, every: int) -> None:
        self.every = max(1, int(every))

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._t0, self._step0, self._last = time.perf_counter(), trainer.global_step, trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        step = trainer.global_step
        if step == self._last or not trainer.is_global_zero:
            return
        self._last = step
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else trainer.estimated_stepping_batches
        finite = total not in (None, float("inf")) and total > 0
        if step % self.every and not (finite and step >= total):
            return
        progress_log.info("vau: %s", " | ".join(self.fields(trainer, step, total if finite else None)))

    def fields(self, trainer: L.Trainer, step: int, total: int | None) -> list[str]:
        """The parts of one line: step, loss, lr, samples/s, ETA (those known)."""
        out = [f"step {step}/{int(total)} ({100 * step / total:.0f}%)" if total else f"step {step}"]
        metrics = trainer.callback_metrics
        if "train/loss" in metrics:
            out.append(f"loss {float(metrics['train/loss']):.4f}")
        if trainer.optimizers:
            out.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.2e}")
        if "train/samples_per_sec" in metrics:
            out.append(f"{float(metrics['train/samples_per_sec']):.1f} samples/s")
        done = step - self._step0
        if total and done > 0:
            left = (time.perf_counter() - self._t0) / done * max(0, total - step)
            out.append(f"ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}")
        return out
