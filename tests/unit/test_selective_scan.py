"""The selective scan op: against a per-step loop, transformers' MambaMixer, float64 at 4k tokens, fallback."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from vau.models.ops.selective_scan import (
    causal_conv1d,
    causal_conv1d_torch,
    scan_backend,
    selective_scan,
    selective_scan_torch,
)

# The module itself (the package re-exports the function under the same name).
ss = importlib.import_module("vau.models.ops.selective_scan")

ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def loop_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The recurrence written out one step at a time (independent of the chunked implementation)."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, L = u.shape
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(L):
        dt = delta[:, :, t, None]  # [b, d, 1]
        h = torch.exp(dt * A) * h + dt * B[:, None, :, t] * u[:, :, t, None]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y


def random_args(batch, dim, n, L, dtype, seed=0, positive_delta=False):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    delta = torch.rand(batch, dim, L, generator=g, dtype=torch.float64) if positive_delta else r(batch, dim, L)
    args = {
        "u": r(batch, dim, L),
        "delta": delta,
        "A": -torch.exp(r(dim, n)),
        "B": r(batch, n, L),
        "C": r(batch, n, L),
        "D": r(dim),
        "z": r(batch, dim, L),
        # Without softplus, keep delta + bias > 0 as in real use (negative steps make the state grow).
        "delta_bias": r(dim).abs() * 0.5 if positive_delta else r(dim) * 0.5,
    }
    return {k: v.to(dtype) for k, v in args.items()}


def grads(fn, args, grad_out):
    leaves = {k: v.detach().clone().requires_grad_() for k, v in args.items()}
    out = fn(**leaves)
    out.backward(grad_out)
    return out.detach(), {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L,chunk", [(1, 16), (7, 16), (16, 16), (37, 16), (200, 64), (300, None)])
@pytest.mark.parametrize("softplus", [True, False])
def test_matches_loop_reference(dtype, L, chunk, softplus):
    """Outputs and every gradient equal the step-by-step loop (L=1, L%chunk!=0, several chunks)."""
    args = random_args(2, 6, 5, L, dtype, seed=L, positive_delta=not softplus)
    kwargs = {} if chunk is None else {"chunk_size": chunk}
    grad_out = torch.randn(2, 6, L, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)

    y, g = grads(lambda **a: selective_scan_torch(**a, delta_softplus=softplus, **kwargs), args, grad_out)
    y_ref, g_ref = grads(lambda **a: loop_reference(**a, delta_softplus=softplus), args, grad_out)

    tol = {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-10}
    assert y.dtype == dtype and y.shape == (2, 6, L)
    torch.testing.assert_close(y, y_ref, **tol)
    for name in ARG_NAMES:
        torch.testing.assert_close(g[name], g_ref[name], **tol, msg=lambda m, name=name: f"grad {name}: {m}")


def test_optional_arguments_and_public_entry():
    """Without D/z/delta_bias it is the bare scan; `selective_scan` on CPU is the torch path."""
    a = random_args(1, 4, 3, 20, torch.float64, seed=3, positive_delta=True)
    core = {k: a[k] for k in ("u", "delta", "A", "B", "C")}
    torch.testing.assert_close(selective_scan(**core), loop_reference(**core))
    torch.testing.assert_close(selective_scan(**a, delta_softplus=True), selective_scan_torch(**a, delta_softplus=True))


def test_half_inputs_are_scanned_in_float32():
    """bf16 in, bf16 out, computed in float32 as mamba-ssm's reference does."""
    a = random_args(1, 4, 3, 50, torch.float32, seed=4)
    a_bf16 = {k: v.to(torch.bfloat16) for k, v in a.items()}
    y = selective_scan_torch(**a_bf16, delta_softplus=True)
    assert y.dtype == torch.bfloat16
    y_ref = loop_reference(**{k: v.float() for k, v in a_bf16.items()}, delta_softplus=True)
    torch.testing.assert_close(y.float(), y_ref, atol=0.05, rtol=0.02)


def test_rejects_wrong_shapes():
    a = random_args(1, 4, 3, 10, torch.float32)
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan_torch(**{**a, "B": a["B"][:, :, :5]})
    with pytest.raises(ValueError, match="u must be"):
        selective_scan_torch(**{**a, "u": a["u"][0]})


def test_long_sequence_float32_stays_accurate():
    """L=4096 in float32 against the float64 loop: error bound 1e-5 of the output's scale.

    Decays span slow (|dt A| ~ 1e-4: the state remembers all 4096 steps) to fast, with dt from
    Mamba's init range. Measured: ~1e-6 (y) and ~2e-6 (gradients) relative to the max |value|;
    the scan is the exact sequential recurrence, so the error does not grow with L the way a
    log-space cumulative scan's does.
    """
    b, d, n, L = 1, 8, 16, 4096
    g = torch.Generator().manual_seed(0)
    dt0 = torch.exp(torch.rand(d, generator=g) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
    args = {
        "u": torch.randn(b, d, L, generator=g),
        "delta": torch.randn(b, d, L, generator=g) * 0.5,
        "A": -torch.exp(torch.randn(d, n, generator=g) * 2),
        "B": torch.randn(b, n, L, generator=g),
        "C": torch.randn(b, n, L, generator=g),
        "D": torch.randn(d, generator=g),
        "z": torch.randn(b, d, L, generator=g),
        "delta_bias": dt0 + torch.log(-torch.expm1(-dt0)),  # softplus^-1 of Mamba's dt init
    }
    args64 = {k: v.double() for k, v in args.items()}
    with torch.no_grad():
        ref = loop_reference(**args64, delta_softplus=True)
    y = selective_scan_torch(**args, delta_softplus=True)
    assert (y.double() - ref).abs().max() <= 1e-5 * ref.abs().max()

    # Gradients: float32 against the float64 run of the same op (checked against the loop above).
    grad_out = torch.randn(b, d, L, generator=g, dtype=torch.float64)
    _, g32 = grads(lambda **a: selective_scan_torch(**a, delta_softplus=True), args, grad_out.float())
    _, g64 = grads(lambda **a: selective_scan_torch(**a, delta_softplus=True), args64, grad_out)
    for name in ARG_NAMES:
        err = (g32[name].double() - g64[name]).abs().max()
        assert err <= 1e-5 * g64[name].abs().max(), name


def test_mamba_matches_transformers_mamba_mixer():
    """Our forward-only Mamba with MambaMixer's weights gives its outputs and gradients (torch path)."""
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer

    from vau.models.blocks.mamba import Mamba

    torch.manual_seed(0)
    cfg = MambaConfig(
        hidden_size=16, state_size=8, expand=2, conv_kernel=4, time_step_rank=4, use_bias=False,
        use_conv_bias=True, num_hidden_layers=1,
    )
    ref = MambaMixer(cfg, layer_idx=0)
    with torch.no_grad():  # move A and D off their init so a mix-up of (d, n) would show
        ref.A_log.add_(0.3 * torch.randn_like(ref.A_log))
        ref.D.add_(0.5 * torch.randn_like(ref.D))
    ours = Mamba(16, d_state=8, d_conv=4, expand=2, dt_rank=4)
    ours.load_state_dict(ref.state_dict())  # same parameter names, strict

    x = torch.randn(2, 37, 16)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_ours = ref(x_ref), ours(x_ours)
    torch.testing.assert_close(y_ours, y_ref, atol=1e-4, rtol=1e-4)

    grad_out = torch.randn_like(y_ref)
    y_ref.backward(grad_out)
    y_ours.backward(grad_out)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-4, rtol=1e-4)
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(
            p.grad, ref_params[name].grad, atol=1e-4, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}"
        )


@pytest.mark.parametrize("width", [2, 4])
def test_causal_conv1d_matches_padded_conv(width):
    """Same as Mamba's nn.Conv1d(padding=width-1) cut to L, and causal."""
    conv = torch.nn.Conv1d(6, 6, width, groups=6, padding=width - 1)
    x = torch.randn(2, 6, 11)
    ref = F.silu(conv(x)[..., :11])
    out = causal_conv1d(x, conv.weight.squeeze(1), conv.bias, activation="silu")
    torch.testing.assert_close(out, ref)
    x2 = x.clone()
    x2[..., 5:] += 1.0  # a change at t=5 leaves outputs before t=5 alone
    out2 = causal_conv1d_torch(x2, conv.weight.squeeze(1), conv.bias, "silu")
    torch.testing.assert_close(out2[..., :5], out[..., :5])
    with pytest.raises(ValueError):
        causal_conv1d(x, conv.weight.squeeze(1), activation="relu")


@pytest.fixture
def fresh_kernel_cache():
    ss._mamba_scan_kernel.cache_clear()
    ss._causal_conv1d_kernel.cache_clear()
    yield
    ss._mamba_scan_kernel.cache_clear()
    ss._causal_conv1d_kernel.cache_clear()


def test_falls_back_when_mamba_ssm_is_missing(monkeypatch, fresh_kernel_cache):
    """An unimportable mamba_ssm / causal_conv1d gives the torch path, not an error."""
    for mod in ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.selective_scan_interface", "causal_conv1d"):
        monkeypatch.setitem(sys.modules, mod, None)  # `import` raises ImportError
    assert ss._mamba_scan_kernel() is None
    assert ss._causal_conv1d_kernel() is None
    a = random_args(1, 4, 3, 9, torch.float32)
    assert scan_backend(a["u"]) == "torch"
    torch.testing.assert_close(selective_scan(**a), selective_scan_torch(**a))


def test_falls_back_when_mamba_ssm_is_broken(monkeypatch, tmp_path, fresh_kernel_cache):
    """A mamba_ssm whose import fails with a non-ImportError (e.g. a CUDA ABI mismatch) is skipped too."""
    pkg = tmp_path / "mamba_ssm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('selective_scan_cuda: undefined symbol')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in [m for m in sys.modules if m == "mamba_ssm" or m.startswith("mamba_ssm.")]:
        monkeypatch.delitem(sys.modules, mod)
    assert ss._mamba_scan_kernel() is None


def test_kernel_is_used_only_for_cuda_tensors(monkeypatch, fresh_kernel_cache):
    """With an importable kernel, CPU tensors still take the torch path (the kernel is CUDA-only)."""
    calls = []
    fake = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    fake.selective_scan_fn = lambda *a, **k: calls.append(1)
    monkeypatch.setitem(sys.modules, "mamba_ssm", types.ModuleType("mamba_ssm"))
    monkeypatch.setitem(sys.modules, "mamba_ssm.ops", types.ModuleType("mamba_ssm.ops"))
    monkeypatch.setitem(sys.modules, "mamba_ssm.ops.selective_scan_interface", fake)
    assert ss._mamba_scan_kernel() is fake.selective_scan_fn
    a = random_args(1, 4, 3, 9, torch.float32)
    assert scan_backend(a["u"]) == "torch"
    selective_scan(**a)
    assert calls == []


def test_import_without_kernels_or_training_stack():
    """In a fresh interpreter with mamba_ssm/causal_conv1d blocked, the blocks import and run, and
    vau.models pulls in no Lightning, DeepSpeed or WebDataset."""
    code = (
        "import sys\n"
        "for m in ('mamba_ssm', 'causal_conv1d', 'selective_scan_cuda'): sys.modules[m] = None\n"
        "import torch\n"
        "from vau.models.blocks import build_connector, ConnectorSection\n"
        "from vau.models.ops import scan_backend\n"
        "y = build_connector(ConnectorSection(), 8)(torch.randn(1, 5, 8))\n"
        "assert y.shape == (1, 5, 8)\n"
        "assert scan_backend(torch.zeros(1)) == 'torch'\n"
        "bad = [m for m in ('lightning', 'pytorch_lightning', 'deepspeed', 'webdataset') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.gpu
def test_cuda_kernel_matches_torch_path():
    """On a GPU with mamba-ssm built, the fused kernel and the torch path agree."""
    pytest.importorskip("mamba_ssm.ops.selective_scan_interface")
    a = {k: v.cuda() for k, v in random_args(2, 64, 16, 1000, torch.float32).items()}
    assert scan_backend(a["u"]) == "mamba_ssm"
    grad_out = torch.randn(2, 64, 1000, device="cuda")
    y_k, g_k = grads(lambda **x: selective_scan(**x, delta_softplus=True), a, grad_out)
    y_t, g_t = grads(lambda **x: selective_scan_torch(**x, delta_softplus=True), a, grad_out)
    torch.testing.assert_close(y_k, y_t, atol=1e-3, rtol=1e-3)
    for name in ARG_NAMES:
        torch.testing.assert_close(g_k[name], g_t[name], atol=1e-2, rtol=1e-2, msg=lambda m, name=name: f"{name}: {m}")
