"""Mamba mixer (forward-only and bidirectional v2), residual block, drop-path and the connectors."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from vau.models.blocks.connector import (
    CONNECTORS,
    ConnectorSection,
    MambaConnector,
    MLPConnector,
    build_connector,
    drop_path_rates,
)
from vau.models.blocks.mamba import DropPath, Mamba, MambaBlock

D_MODEL = 8
BRANCH = ("conv1d", "x_proj", "dt_proj", "A_log", "D")
BRANCH_B = ("conv1d_b", "x_proj_b", "dt_proj_b", "A_b_log", "D_b")


def bi_mixer(seed: int = 0, **kw) -> Mamba:
    """A bidirectional mixer whose two branches differ (A, D, conv, projections all perturbed)."""
    torch.manual_seed(seed)
    m = Mamba(D_MODEL, d_state=4, expand=2, bidirectional=True, **kw)
    with torch.no_grad():
        for p in (m.A_log, m.A_b_log, m.D, m.D_b):
            p.add_(0.3 * torch.randn_like(p))
    return m


def forward_only_copy(bi: Mamba, backward_branch: bool) -> Mamba:
    """A forward-only Mamba sharing ``bi``'s in/out projections and one of its two branches."""
    fwd = Mamba(D_MODEL, d_state=4, expand=2, bidirectional=False)
    fwd.in_proj, fwd.out_proj = bi.in_proj, bi.out_proj
    for dst, src in zip(BRANCH, BRANCH_B if backward_branch else BRANCH):
        setattr(fwd, dst, getattr(bi, src))
    return fwd


def test_bidirectional_is_forward_plus_flipped_backward_branch():
    """y_bi(x) - y_fwd(x) = out_proj(backward branch on flip(x)), flipped back; exact decomposition."""
    bi = bi_mixer()
    fwd = forward_only_copy(bi, backward_branch=False)
    bwd = forward_only_copy(bi, backward_branch=True)
    x = torch.randn(3, 13, D_MODEL)
    with torch.no_grad():
        y_bi, y_fwd = bi(x), fwd(x)
        y_bwd = bwd(x.flip(1)).flip(1)  # the backward branch run as a forward model on the reversed input
    # out_proj is linear without bias, so out_proj(y_f + y_b) = out_proj(y_f) + out_proj(y_b).
    assert bi.out_proj.bias is None
    torch.testing.assert_close(y_bi - y_fwd, y_bwd, atol=1e-6, rtol=1e-5)
    assert y_bwd.abs().max() > 1e-2  # the backward branch does contribute


def test_silenced_backward_branch_leaves_the_forward_mixer():
    """With the backward branch's output zeroed (C and D of that branch = 0), bi == forward-only."""
    bi = bi_mixer()
    fwd = forward_only_copy(bi, backward_branch=False)
    x = torch.randn(2, 9, D_MODEL)
    with torch.no_grad():
        differs = (bi(x) - fwd(x)).abs().max()
        bi.x_proj_b.weight[-bi.d_state :].zero_()  # C rows of x_proj_b -> y_b = D_b * x_b
        bi.D_b.zero_()
        torch.testing.assert_close(bi(x), fwd(x), atol=0.0, rtol=0.0)
    assert differs > 1e-3


def test_swapping_branches_mirrors_the_sequence():
    """Swapping forward/backward parameter sets and reversing the input reverses the output."""
    bi = bi_mixer()
    swapped = copy.deepcopy(bi)
    for a, b in zip(BRANCH, BRANCH_B):
        pa, pb = getattr(bi, a), getattr(bi, b)
        setattr(swapped, a, copy.deepcopy(pb))
        setattr(swapped, b, copy.deepcopy(pa))
    x = torch.randn(2, 17, D_MODEL)
    with torch.no_grad():
        torch.testing.assert_close(swapped(x.flip(1)), bi(x).flip(1), atol=1e-6, rtol=1e-5)
        # and without the swap the mixer is not mirror-symmetric (the two branches differ)
        assert (bi(x.flip(1)) - bi(x).flip(1)).abs().max() > 1e-3


def test_forward_mixer_is_causal_bidirectional_is_not():
    x = torch.randn(1, 12, D_MODEL)
    x2 = x.clone()
    x2[:, 8:] += 1.0
    with torch.no_grad():
        fwd = Mamba(D_MODEL, d_state=4)
        torch.testing.assert_close(fwd(x2)[:, :8], fwd(x)[:, :8])
        bi = bi_mixer()
        assert (bi(x2)[:, :8] - bi(x)[:, :8]).abs().max() > 1e-4


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_reach_every_parameter(bidirectional):
    torch.manual_seed(0)
    block = MambaBlock(D_MODEL, {"d_state": 4, "bidirectional": bidirectional}, drop_path=0.0)
    x = torch.randn(2, 10, D_MODEL, requires_grad=True)
    block(x).square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_mixer_init_and_names():
    m = Mamba(32, d_state=16, expand=2, bidirectional=True)
    assert m.dt_rank == 2 and m.d_inner == 64
    A = -torch.exp(m.A_b_log)
    torch.testing.assert_close(A[0], -torch.arange(1.0, 17.0))  # S4D-real
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6  # softplus(bias) in [dt_min, dt_max]
    names = {n for n, _ in m.named_parameters()}
    assert {"A_log", "D", "A_b_log", "D_b", "conv1d_b.weight", "x_proj_b.weight", "dt_proj_b.bias"} <= names
    assert "A_b_log" not in {n for n, _ in Mamba(32).named_parameters()}


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("L", [1, 3, 40])
def test_shapes(bidirectional, L):
    x = torch.randn(2, L, D_MODEL)
    assert Mamba(D_MODEL, d_state=4, bidirectional=bidirectional)(x).shape == x.shape
    assert MambaBlock(D_MODEL, {"bidirectional": bidirectional})(x).shape == x.shape


def test_divide_out_halves_the_sum():
    bi = bi_mixer()
    half = copy.deepcopy(bi)
    half.divide_out = True
    x = torch.randn(1, 6, D_MODEL)
    with torch.no_grad():
        torch.testing.assert_close(half(x), bi(x) / 2)  # out_proj has no bias


def test_block_is_prenorm_residual_and_drop_path_is_identity_in_eval():
    torch.manual_seed(0)
    block = MambaBlock(D_MODEL, {"d_state": 4, "bidirectional": True}, drop_path=0.5).eval()
    x = torch.randn(4, 7, D_MODEL)
    with torch.no_grad():
        expected = x + block.mixer(block.norm(x))
        torch.testing.assert_close(block(x), expected)
        torch.testing.assert_close(block(x), block(x))
    assert isinstance(block.norm, torch.nn.RMSNorm)


def test_drop_path_drops_whole_samples_in_training():
    torch.manual_seed(0)
    dp = DropPath(0.5).train()
    x = torch.ones(400, 3, 5)
    y = dp(x)
    per_sample = y.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 2.0).all(1)  # survivors are rescaled by 1 / (1 - p)
    assert bool((dropped | kept).all())
    assert 0.4 < dropped.float().mean() < 0.6
    assert torch.equal(dp.eval()(x), x)
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_drop_path_rates_follow_ecva():
    assert drop_path_rates(0.1, 1) == [0.1]
    assert drop_path_rates(0.1, 3) == pytest.approx([0.0, 0.05, 0.1])
    c = MambaConnector(D_MODEL, depth=3, drop_path=0.2)
    assert [layer.drop_path.p for layer in c.layers] == pytest.approx([0.0, 0.1, 0.2])


def test_connector_registry_and_config():
    assert CONNECTORS.names() == ["bimamba", "mamba", "mlp"]
    assert ConnectorSection().kind == "bimamba"
    for name, both in (("bimamba", True), ("mamba", False)):
        conn = build_connector(ConnectorSection(kind=name), D_MODEL)
        assert all(layer.mixer.bidirectional is both for layer in conn.layers)
    with pytest.raises(KeyError, match="bimamba"):
        build_connector(ConnectorSection(kind="bimaba"), D_MODEL)


@pytest.mark.parametrize("name", ["bimamba", "mamba", "mlp"])
def test_connectors_map_tokens_to_tokens(name):
    cfg = ConnectorSection(kind=name, depth=2, d_state=4)
    conn = build_connector(cfg, D_MODEL)
    x = torch.randn(2, 11, D_MODEL)
    assert conn(x).shape == x.shape
    if name == "mlp":
        assert isinstance(conn, MLPConnector)
    else:
        assert isinstance(conn, MambaConnector) and len(conn.layers) == 2
        assert all(layer.mixer.bidirectional == (name == "bimamba") for layer in conn.layers)
        assert isinstance(conn.norm_f, torch.nn.RMSNorm)


def test_connector_mixing_per_variant():
    """mlp: tokens independent; mamba: causal; bimamba: every token sees both directions."""
    x = torch.randn(1, 10, D_MODEL)
    x2 = x.clone()
    x2[:, 5] += 1.0
    for name, before_changes, after_changes in [("mlp", False, False), ("mamba", False, True), ("bimamba", True, True)]:
        conn = build_connector(ConnectorSection(kind=name, d_state=4), D_MODEL).eval()
        with torch.no_grad():
            diff = (conn(x2) - conn(x)).abs().amax(-1)[0]
        assert bool(diff[:5].max() > 1e-5) == before_changes, name
        assert bool(diff[6:].max() > 1e-5) == after_changes, name


def test_build_connector_from_a_config_section():
    """Any object with the fields (a run-config section, an OmegaConf node) builds the connector."""
    section = SimpleNamespace(kind="mamba", depth=2, d_state=4, d_conv=3, expand=1, drop_path=0.0)
    conn = build_connector(section, D_MODEL)
    assert len(conn.layers) == 2
    mixer = conn.layers[0].mixer
    assert (mixer.d_state, mixer.d_conv, mixer.d_inner, mixer.bidirectional) == (4, 3, D_MODEL, False)
    from omegaconf import OmegaConf

    node = OmegaConf.structured(ConnectorSection(kind="mlp"))
    assert isinstance(build_connector(node, D_MODEL), MLPConnector)
