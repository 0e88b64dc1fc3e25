"""Optimizers and schedules from config, with per-prefix learning-rate multipliers."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from vau.registry import Registry
from vau.errors import ConfigError

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULERS: Registry[Callable[..., torch.optim.lr_scheduler.LRScheduler]] = Registry("scheduler")


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], cfg: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], cfg: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.betas[0], weight_decay=cfg.weight_decay)


@SCHEDULERS.register("constant")
def _constant(opt, warmup: int, total: int):
    from transformers import get_constant_schedule_with_warmup

    return get_constant_schedule_with_warmup(opt, warmup)


@SCHEDULERS.register("cosine")
def _cosine(opt, warmup: int, total: int):
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(opt, warmup, total)


@SCHEDULERS.register("linear")
def _linear(opt, warmup: int, total: int):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(opt, warmup, total)


def _group_of(name: str, prefixes: list[str]) -> str | None:
    # Longest matching prefix wins, so "vision_tower.head" can override "vision_tower".
    matches = [p for p in prefixes if name == p or name.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def param_groups(named_params: Iterable[tuple[str, nn.Parameter]], cfg: Any) -> list[dict]:
    """Splits trainable parameters into named groups by ``cfg.lr_mult`` prefix and decay.

    Biases and 1-D parameters (norms) get no weight decay. Each group has a ``name``
    (shown by the lr monitor) and ``lr = cfg.lr * multiplier``.

    Args:
        named_params: ``model.named_parameters()``; frozen parameters are skipped.
        cfg: The ``optim`` config section.

    Returns:
        A list of parameter-group dicts for a torch optimizer.
    """
    mults = dict(cfg.lr_mult)
    prefixes = list(mults)
    groups: dict[tuple[str, bool], dict] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        prefix = _group_of(name, prefixes)
        decay = p.ndim >= 2 and cfg.weight_decay > 0
        key = (prefix or "default", decay)
        if key not in groups:
            mult = mults.get(prefix, 1.0) if prefix else 1.0
            groups[key] = {
                "name": key[0] + ("" if decay or cfg.weight_decay == 0 else "_no_decay"),
                "params": [],
                "lr": cfg.lr * mult,
                "weight_decay": cfg.weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(p)
    unused = [p for p in prefixes if not any(k[0] == p for k in groups)]
    if unused:
        raise ConfigError(f"optim.lr_mult: prefix(es) {unused} match no trainable parameter")
    if not groups:
        raise ConfigError("no trainable parameters: check model.trainable")
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """Builds the configured optimizer over ``model``'s trainable parameters."""
    return OPTIMIZERS.get(cfg.name)(param_groups(model.named_parameters(), cfg), cfg)


def build_scheduler(opt: torch.optim.Optimizer, cfg: Any, total_steps: "int | Callable[[], int]"):
    """Builds the configured per-step schedule; warmup from warmup_steps or warmup_ratio.

    ``cfg.total_steps`` wins; else ``total_steps`` (the trainer's estimate, called only then).
    """
    total = int(cfg.total_steps or (total_steps() if callable(total_steps) else total_steps))
    warmup = cfg.warmup_steps if cfg.warmup_steps > 0 else int(round(cfg.warmup_ratio * total))
    return SCHEDULERS.get(cfg.scheduler)(opt, warmup, total)
