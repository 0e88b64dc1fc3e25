"""Sequence connectors between vision tokens and the projector (ECVA §IV-B, Eqs. 2-10).

Every connector maps ``[batch, L, D]`` to ``[batch, L, D]`` with D the vision width:

- ``bimamba`` (default, ECVA): ``depth`` residual blocks with bidirectional (Vim "v2") Mamba
  mixers, then a final RMSNorm — the computation of ECVA's ``MambaScan``/``MambaModel``;
- ``mamba``: the same with forward-only mixers (causal over the ``(t h w)`` order);
- ``mlp``: ECVA Tab. VIII's "– soft prompt" ablation, a per-token two-layer MLP (no mixing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vau.models.blocks.mamba import MambaBlock
from vau.models.settings import ConnectorSection
from vau.registry import Registry

__all__ = [
    "CONNECTORS",
    "ConnectorSection",
    "MLPConnector",
    "MambaConnector",
    "build_connector",
    "drop_path_rates",
]


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Per-block stochastic-depth rates as ECVA's ``MambaModel`` applies them.

    There, block i's mixer output is dropped with ``linspace(0, rate, depth)[i]``, except that a
    single block gets the full ``rate`` (its output goes through the model-level drop-path).
    """
    if depth == 1:
        return [rate]
    return [float(r) for r in torch.linspace(0.0, rate, depth)]


class MambaConnector(nn.Module):
    """Stack of :class:`MambaBlock` with a final RMSNorm.

    Args:
        dim: Token width D.
        depth: Number of blocks.
        bidirectional: Bidirectional (Vim "v2") mixers.
        d_state: SSM state size.
        d_conv: Conv width.
        expand: Mixer expansion.
        drop_path: Stochastic-depth rate (see :func:`drop_path_rates`).
        norm_eps: RMSNorm epsilon.
    """

    def __init__(
        self,
        dim: int,
        depth: int = 1,
        bidirectional: bool = True,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        drop_path: float = 0.1,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"connector depth must be >= 1, got {depth}")
        mixer = {"d_state": d_state, "d_conv": d_conv, "expand": expand, "bidirectional": bidirectional}
        self.layers = nn.ModuleList(
            MambaBlock(dim, mixer, drop_path=p, norm_eps=norm_eps) for p in drop_path_rates(drop_path, depth)
        )
        self.norm_f = nn.RMSNorm(dim, eps=norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        """``[batch, L, D]`` -> ``[batch, L, D]``."""
        for layer in self.layers:
            x = layer(x)
        # ECVA Eq. 10: the connector's output is the normalised residual stream.
        return self.norm_f(x)


class MLPConnector(nn.Module):
    """Per-token ``Linear(D, D) -> GELU -> Linear(D, D)`` (ECVA Tab. VIII "– soft prompt").

    Args:
        dim: Token width D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        """``[batch, L, D]`` -> ``[batch, L, D]``, each token on its own."""
        return self.mlp(x)


CONNECTORS: Registry[Callable[[ConnectorSection, int], nn.Module]] = Registry("connector")


@CONNECTORS.register("bimamba")
def _bimamba(cfg: ConnectorSection, dim: int) -> nn.Module:
    return MambaConnector(dim, cfg.depth, True, cfg.d_state, cfg.d_conv, cfg.expand, cfg.drop_path)


@CONNECTORS.register("mamba")
def _mamba(cfg: ConnectorSection, dim: int) -> nn.Module:
    return MambaConnector(dim, cfg.depth, False, cfg.d_state, cfg.d_conv, cfg.expand, cfg.drop_path)


@CONNECTORS.register("mlp")
def _mlp(cfg: ConnectorSection, dim: int) -> nn.Module:
    return MLPConnector(dim)


def build_connector(cfg: Any, dim: int) -> nn.Module:
    """Builds the connector named by ``cfg.kind`` for tokens of width ``dim``.

    Args:
        cfg: A :class:`ConnectorSection` (or an OmegaConf node of one).
        dim: Token width D (1024 for CLIP ViT-L/14).

    Returns:
        A module mapping ``[batch, L, dim]`` to ``[batch, L, dim]``.
    """
    return CONNECTORS.get(cfg.kind)(cfg, dim)
