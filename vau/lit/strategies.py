"""Strategy registry: trainer.strategy name -> Lightning strategy built from the config."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from vau.registry import Registry
from vau.errors import ConfigError, NotFoundError

STRATEGIES: Registry[Callable[[Any, Path], Any]] = Registry("strategy")


def on_cpu(trainer_cfg: Any) -> bool:
    """Whether the run will use the CPU accelerator."""
    acc = trainer_cfg.accelerator
    return acc == "cpu" or (acc == "auto" and not torch.cuda.is_available())


@STRATEGIES.register("auto")
def _auto(cfg: Any, conf_root: Path) -> str:
    return "auto"


@STRATEGIES.register("ddp")
def _ddp(cfg: Any, conf_root: Path):
    from lightning.pytorch.strategies import DDPStrategy

    backend = cfg.trainer.ddp_backend or ("gloo" if on_cpu(cfg.trainer) else "nccl")
    return DDPStrategy(process_group_backend=backend)


def load_deepspeed_json(cfg: Any, conf_root: Path) -> dict:
    """Reads the DeepSpeed JSON named by ``trainer.deepspeed.config`` and fills batch sizes."""
    name = cfg.trainer.deepspeed.config
    if not name:
        raise ConfigError("trainer.strategy=deepspeed needs trainer.deepspeed.config (a JSON file under conf/)")
    path = Path(name) if Path(name).is_absolute() else conf_root / name
    try:
        ds = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"trainer.deepspeed.config={name}: no file {path}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"trainer.deepspeed.config={path}: invalid JSON ({e})") from None
    # Lightning fills gradient accumulation, clipping and precision from the trainer config;
    # the micro-batch size it can only guess from the loader, so state it.
    ds.setdefault("train_micro_batch_size_per_gpu", cfg.data.batch_size)
    return ds


@STRATEGIES.register("deepspeed")
def _deepspeed(cfg: Any, conf_root: Path):
    ds = load_deepspeed_json(cfg, conf_root)
    if on_cpu(cfg.trainer):
        # DeepSpeed picks its accelerator at import time.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        return CPUDeepSpeedStrategy(config=ds, process_group_backend="gloo",
                                    exclude_frozen_parameters=not cfg.ckpt.frozen)
    from lightning.pytorch.strategies import DeepSpeedStrategy

    return DeepSpeedStrategy(config=ds, exclude_frozen_parameters=not cfg.ckpt.frozen)


def _cpu_deepspeed_class():
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

    class _CPUDeepSpeedStrategy(DeepSpeedStrategy):
        """Lightning's DeepSpeedStrategy on CPU over gloo: for tests and debugging only.

        Lightning refuses CPU in ``setup_environment``; DeepSpeed itself runs ZeRO 0-3 on CPU
        (DS_ACCELERATOR=cpu). We number the CPU devices (DeepSpeed needs an index and
        Lightning checks indices == local ranks) and skip only that CUDA check.
        """

        def setup_environment(self) -> None:
            self.parallel_devices = [torch.device("cpu", i) for i in range(len(self.parallel_devices or [0]))]
            DDPStrategy.setup_environment(self)

    return _CPUDeepSpeedStrategy


def CPUDeepSpeedStrategy(**kwargs: Any):
    """Builds the CPU DeepSpeed strategy (class created lazily: importing it pulls deepspeed)."""
    return _cpu_deepspeed_class()(**kwargs)


def build_strategy(cfg: Any, conf_root: Path):
    """The Lightning strategy named by ``cfg.trainer.strategy``."""
    return STRATEGIES.get(cfg.trainer.strategy)(cfg, conf_root)
