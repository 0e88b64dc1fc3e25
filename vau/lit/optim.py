"""Optimizers and schedules from config, with per-parameter learning-rate multipliers."""

from __future__ import annotations

from fnmatch import fnmatchcase
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


def _matches(name: str, key: str) -> bool:
    """A key with a glob character is an fnmatch pattern; otherwise a dotted-name prefix."""
    if any(c in key for c in "*?["):
        return fnmatchcase(name, key)
    return name == key or name.startswith(key + ".")


def _group_of(name: str, keys: list[str]) -> str | None:
    # Longest key wins: length is a simple proxy for specificity that keeps the old
    # longest-prefix rule ("vision_tower.head" overrides "vision_tower"); max() keeps the
    # first of equally long keys, so ties go to the key listed first in lr_mult.
    matches = [k for k in keys if _matches(name, k)]
    return max(matches, key=len) if matches else None


def param_groups(named_params: Iterable[tuple[str, nn.Parameter]], cfg: Any) -> list[dict]:
    """Splits trainable parameters into named groups by ``cfg.lr_mult`` key and decay.

    A ``cfg.lr_mult`` key with a glob character (``*?[``) is an fnmatch pattern over the
    full parameter name (``"*.lora_*"``); any other key is a prefix matching the name itself
    or names under it (``"vision_tower"`` matches ``"vision_tower.0.weight"``, not
    ``"vision.weight"``). When several keys match a parameter, the longest key wins, and of
    equally long keys the one listed first.

    Biases and 1-D parameters (norms) get no weight decay. Each group has a ``name``
    (shown by the lr monitor) and ``lr = cfg.lr * multiplier``.

    Args:
        named_params: ``model.named_parameters()``; frozen parameters are skipped.
        cfg: The ``optim`` config section.

    Returns:
        A list of parameter-group dicts for a torch optimizer.
    """
    mults = dict(cfg.lr_mult)
    keys = list(mults)
    groups: dict[tuple[str, bool], dict] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        match = _group_of(name, keys)
        decay = p.ndim >= 2 and cfg.weight_decay > 0
        key = (match or "default", decay)
        if key not in groups:
            mult = mults[match] if match else 1.0
            groups[key] = {
                "name": key[0] + ("" if decay or cfg.weight_decay == 0 else "_no_decay"),
                "params": [],
                "lr": cfg.lr * mult,
                "weight_decay": cfg.weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(p)
    unused = [k for k in keys if not any(g[0] == k for g in groups)]
    if unused:
        raise ConfigError(f"optim.lr_mult: key(s) {unused} match no trainable parameter "
                          "(or only parameters a longer key takes)")
    if not groups:
        raise ConfigError("no trainable parameters: check model.trainable")
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """Builds the configured optimizer over ``model``'s trainable parameters."""
    return OPTIMIZERS.get(cfg.kind)(param_groups(model.named_parameters(), cfg), cfg)


def build_scheduler(opt: torch.optim.Optimizer, cfg: Any, total_steps: "int | Callable[[], int]"):
    """Builds the configured per-step schedule; warmup from warmup_steps or warmup_ratio.

    ``cfg.total_steps`` wins; else ``total_steps`` (the trainer's estimate, called only then).
    """
    total = int(cfg.total_steps or (total_steps() if callable(total_steps) else total_steps))
    warmup = cfg.warmup_steps if cfg.warmup_steps > 0 else int(round(cfg.warmup_ratio * total))
    return SCHEDULERS.get(cfg.scheduler)(opt, warmup, total)
