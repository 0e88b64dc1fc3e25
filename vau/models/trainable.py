"""Which parameters train: one function, driven by the stage config's patterns."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable

from torch import nn
from vau.errors import ConfigError


def apply_trainable(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Sets ``requires_grad`` so that exactly the parameters matching a pattern train.

    Args:
        model: The model whose parameters are (un)frozen.
        patterns: fnmatch patterns over ``named_parameters()`` names (``"*"`` = all,
            ``"connector.*"``, ``"*lora_*"``).

    Returns:
        Names of the trainable parameters.

    Raises:
        ValueError: if a pattern matches no parameter (a typo would silently freeze a stage).
    """
    patterns = list(patterns)
    names = [n for n, _ in model.named_parameters()]
    unused = [p for p in patterns if not any(fnmatchcase(n, p) for n in names)]
    if unused:
        raise ConfigError(f"model.trainable: pattern(s) {unused} match no parameter of {type(model).__name__}")
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(any(fnmatchcase(name, p) for p in patterns))
        if param.requires_grad:
            trainable.append(name)
    return trainable
