"""Trainer factory: one Lightning Trainer from the ``trainer``/``ckpt`` config sections."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar, TQDMProgressBar
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DeepSpeedStrategy
from lightning.pytorch.utilities import rank_zero_info

from vau.lit.callbacks import BadSampleLogger, ExportBest, ExportOnEnd, ProgressLines, StepSeeder, ThroughputLogger
from vau.lit.preemption import PreemptionHandler
from vau.lit.samples import ValidationSamples
from vau.lit.checkpoint import AtomicCheckpointIO, VauCheckpoint
from vau.lit.strategies import build_strategy
from vau.errors import ConfigError
from vau.progress import interactive


class _RichBar(RichProgressBar):
    """Lightning's rich bar without "Epoch 8/-2" when the run is bounded by steps (max_epochs=-1)."""

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        text = f"Epoch {current_epoch}" + (f"/{max_epochs - 1}" if max_epochs is not None and max_epochs > 0 else "")
        return f"{text:{len(self.validation_description)}}" if len(self.validation_description) > len(text) else text


def _progress_bar(kind: str, every: int):
    """``(progress bar callback or None, extra callback or None)`` for ``trainer.progress_bar``."""
    if kind == "auto":
        kind = "rich" if interactive() else "lines"
    if kind == "rich":
        return _RichBar(), None
    if kind == "tqdm":
        return TQDMProgressBar(), None
    if kind == "lines":
        return None, ProgressLines(every)
    if kind == "none":
        return None, None
    raise ConfigError(f"trainer.progress_bar={kind!r}: expected auto, rich, tqdm, lines or none")


def _val_interval(v: float | None) -> float | int | None:
    # YAML `50` arrives as 50.0 through the float field; Lightning reads ints as steps.
    if v is not None and v > 1 and float(v).is_integer():
        return int(v)
    return v


# The data position lives in the DataModule's checkpoint state (see vau.data.loading.datamodule), not
# in the DataLoader object that this Lightning warning inspects: the resume is exact.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


def device_count(t: Any) -> int:
    """Devices per node that ``trainer.devices`` means (``auto``: every GPU, or one CPU process)."""
    devices = t.devices
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        return int(devices)
    if isinstance(devices, str) and devices != "auto":
        return len([d for d in devices.split(",") if d.strip()])
    if devices != "auto":
        return len(devices)  # a list of indices
    import torch

    return (torch.cuda.device_count() or 1) if t.accelerator in ("auto", "gpu", "cuda") else 1


def accumulation(cfg: Any) -> int:
    """``trainer.accumulate_grad_batches``, or what keeps ``trainer.global_batch_size`` on this allocation.

    Raises:
        ConfigError: The global batch is not a multiple of batch size x devices x nodes.
    """
    t = cfg.trainer
    if t.global_batch_size is None:
        return t.accumulate_grad_batches
    per_step = cfg.data.batch_size * device_count(t) * t.num_nodes
    if t.global_batch_size % per_step:
        raise ConfigError(f"trainer.global_batch_size={t.global_batch_size} is not a multiple of data.batch_size "
                          f"({cfg.data.batch_size}) x devices ({device_count(t)}) x nodes ({t.num_nodes}) = {per_step}; "
                          "change data.batch_size or the allocation")
    accumulate = t.global_batch_size // per_step
    rank_zero_info(f"vau: global batch {t.global_batch_size} = {cfg.data.batch_size} per device x {device_count(t)} "
                   f"device(s) x {t.num_nodes} node(s) x {accumulate} accumulation step(s)")
    return accumulate


def build_trainer(cfg: Any, run_dir: Path, conf_root: Path, loggers: Sequence, callbacks: Sequence = ()) -> L.Trainer:
    """Builds the Trainer: strategy, precision, loop limits, checkpoints, logging callbacks.

    Args:
        cfg: The resolved run config.
        run_dir: The run directory (checkpoints/ and export/ go under it).
        conf_root: conf/ directory (DeepSpeed JSON files are looked up there).
        loggers: Lightning loggers.
        callbacks: Extra callbacks appended after the standard ones.
    """
    t, c = cfg.trainer, cfg.ckpt
    strategy = build_strategy(cfg, conf_root)
    cbs: list = [
        StepSeeder(cfg.run.seed),
        VauCheckpoint(run_dir / "checkpoints", every_n_steps=c.every_n_steps, keep=c.keep, save_last=c.save_last),
        LearningRateMonitor(logging_interval="step"),
        ThroughputLogger(t.throughput_window),
        BadSampleLogger(),
        PreemptionHandler(),
    ]
    if c.export:
        cbs.append(ExportOnEnd(run_dir / "export"))
    if c.monitor:
        cbs.append(ExportBest(run_dir / "best", c.monitor, c.mode))
    if cfg.logger.val_samples:
        cbs.append(ValidationSamples(cfg.logger.val_samples, cfg.logger.val_samples_max_new_tokens, run_dir))
    bar, lines = _progress_bar(t.progress_bar, t.progress_every_n_steps or t.log_every_n_steps)
    cbs.extend(c for c in (bar, lines) if c is not None)
    cbs.extend(callbacks)
    # DeepSpeed writes its own checkpoint folders; resume=auto only takes complete ones.
    plugins: list = [] if isinstance(strategy, DeepSpeedStrategy) else [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        # vau's PreemptionHandler stops all ranks at one step and requeues; Lightning's own
        # requeue (a save from inside the signal handler) is switched off.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    max_epochs = t.max_epochs if t.max_epochs is not None else (-1 if t.max_steps > 0 else None)
    trainer = L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,
        max_steps=t.max_steps,
        max_epochs=max_epochs,
        accumulate_grad_batches=accumulation(cfg),
        gradient_clip_val=t.gradient_clip_val,
        val_check_interval=_val_interval(t.val_check_interval),
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        limit_val_batches=_val_interval(t.limit_val_batches),
        num_sanity_val_steps=t.num_sanity_val_steps,
        log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic,
        callbacks=cbs,
        logger=list(loggers),
        default_root_dir=str(run_dir),
        enable_progress_bar=bar is not None,
        enable_model_summary=False,
        # Our samplers split by rank and carry the data position; Lightning's
        # DistributedSampler swap would lose it.
        use_distributed_sampler=False,
        plugins=plugins,
    )
    # Lightning's SIGTERM handler broadcasts inside the handler and then raises at the next
    # batch, losing the stop checkpoint; vau.signals.STOP + PreemptionHandler own the signals.
    trainer._signal_connector.register_signal_handlers = lambda: None
    return trainer


def _devices(value: Any) -> Any:
    # A command-line `devices=2` arrives as the string "2" where the field is typed str.
    return int(value) if str(value).isdigit() else value


def build_predict_trainer(cfg: Any) -> L.Trainer:
    """The Trainer of ``vau infer`` (an ``InferConfig``): devices and precision, no logger or checkpoints."""
    t = cfg.trainer
    return L.Trainer(accelerator=t.accelerator, devices=_devices(t.devices), num_nodes=t.num_nodes,
                     precision=t.precision, logger=False, enable_checkpointing=False,
                     enable_progress_bar=cfg.progress if cfg.progress is not None else interactive(),
                     enable_model_summary=False,
                     use_distributed_sampler=False)  # predictors split their data by rank themselves
