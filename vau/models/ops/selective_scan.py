"""Mamba's selective scan (S6) and causal depthwise conv, with CUDA kernels when present.

On CUDA with ``mamba-ssm`` / ``causal-conv1d`` installed, the fused kernels run. Everywhere
else (CPU, or a GPU without the kernels) a pure-PyTorch path runs with the same semantics as
``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``. The kernels are imported lazily
and any failure (absent package, missing compiled extension, CUDA mismatch) falls back, so
importing ``vau`` never depends on them.

The PyTorch path is a chunked scan with a hand-written backward (see ``_ChunkedScan``).
Autograd over a per-step loop gives every step's slice a full-size zero gradient, so its
backward is O(L^2) (37 s at 4k tokens and 128 channels on 2 cores, against 0.2 s here); a
log-space cumulative scan is fast but loses float32 accuracy as L grows.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "causal_conv1d",
    "causal_conv1d_torch",
    "scan_backend",
    "selective_scan",
    "selective_scan_torch",
]

DEFAULT_CHUNK_SIZE = 128
"""Tokens per chunk of the PyTorch scan: bounds its working memory to O(chunk · dim · N).
On 2 CPU cores 64-256 time within ~10% of the best at dim 128 and 512, while 32 and 4096
are slower (benchmarks/README.md)."""

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

log = logging.getLogger("vau.models")


_IMPORT_ERRORS: dict[str, str] = {}
"""Why a kernel package could not be imported (for the warning on a CUDA machine)."""


@functools.cache
def _mamba_scan_kernel() -> Callable | None:
    """mamba-ssm's fused ``selective_scan_fn``, or None when it cannot be imported (cached)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken build (no selective_scan_cuda, CUDA ABI)
        _IMPORT_ERRORS["mamba_ssm"] = f"{type(e).__name__}: {e}"
        return None
    return selective_scan_fn


@functools.cache
def announce_backend(backend: str, cuda: bool) -> None:
    """Logs once per process which scan runs; on CUDA without mamba_ssm, how to get the kernel."""
    if backend == "mamba_ssm":
        log.info("vau: selective scan: mamba_ssm CUDA kernel")
    elif cuda:
        log.warning("vau: selective scan: PyTorch fallback on CUDA (mamba_ssm not importable: %s); it is much "
                    "slower: install the GPU extra, pip install -e '.[gpu]' (README, GPU extras)",
                    _IMPORT_ERRORS.get("mamba_ssm", "a dtype the kernel does not take"))
    else:
        log.info("vau: selective scan: PyTorch (chunked; the mamba_ssm kernel runs on CUDA only)")


@functools.cache
def _causal_conv1d_kernel() -> Callable | None:
    """causal-conv1d's fused ``causal_conv1d_fn``, or None when it cannot be imported (cached)."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:  # noqa: BLE001 - as above
        return None
    return causal_conv1d_fn


def scan_backend(u: Tensor) -> str:
    """Which implementation :func:`selective_scan` uses for input ``u``: ``"mamba_ssm"`` or ``"torch"``."""
    if u.is_cuda and u.dtype in _KERNEL_DTYPES and _mamba_scan_kernel() is not None:
        return "mamba_ssm"
    return "torch"


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Selective state-space scan, as ``mamba_ssm``'s ``selective_scan_fn``.

    For every batch b and channel d, with state ``h`` of size N starting at zero::

        dt_t = softplus(delta_t + delta_bias)            (bias/softplus optional)
        h_t  = exp(dt_t * A) * h_t-1 + dt_t * B_t * u_t
        y_t  = <C_t, h_t> + D * u_t,   out_t = y_t * silu(z_t)   (D, z optional)

    Args:
        u: Input ``[batch, dim, L]``.
        delta: Time steps before bias/softplus ``[batch, dim, L]``.
        A: Real state matrix (diagonal per channel) ``[dim, N]``, normally negative.
        B: Input-dependent input matrix ``[batch, N, L]``.
        C: Input-dependent output matrix ``[batch, N, L]``.
        D: Skip weight ``[dim]``.
        z: Gate ``[batch, dim, L]``; the output is multiplied by ``silu(z)``.
        delta_bias: Added to ``delta`` ``[dim]``.
        delta_softplus: Apply softplus to ``delta`` (after the bias).

    Returns:
        ``[batch, dim, L]`` in the dtype of ``u``.
    """
    backend = scan_backend(u)
    announce_backend(backend, u.is_cuda)
    if backend == "mamba_ssm":
        kernel = _mamba_scan_kernel()
        return kernel(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """The pure-PyTorch :func:`selective_scan` (any device); same arguments plus ``chunk_size``.

    Computes in float32 (float64 for float64 inputs), as the reference does, and returns the
    dtype of ``u``. Differentiable once (no double backward).
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype_in = u.dtype
    cdt = torch.promote_types(dtype_in, torch.float32)  # half inputs are scanned in float32
    u_c = u.to(cdt)
    dt = delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    y = _ChunkedScan.apply(u_c, dt, A.to(cdt), B.to(cdt), C.to(cdt), chunk_size)
    if D is not None:
        y = y + u_c * D.to(cdt)[:, None]
    if z is not None:
        y = y * F.silu(z.to(cdt))
    return y.to(dtype_in)


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    """Raises ValueError unless the arguments have selective_scan_fn's shapes."""
    if u.dim() != 3:
        raise ValueError(f"u must be [batch, dim, L], got {tuple(u.shape)}")
    b, d, L = u.shape
    if A.is_complex():
        raise ValueError("complex A is not supported (Mamba uses real A)")
    n = A.shape[-1]
    expect = {
        "delta": (delta, (b, d, L)),
        "A": (A, (d, n)),
        "B": (B, (b, n, L)),
        "C": (C, (b, n, L)),
        "D": (D, (d,)),
        "z": (z, (b, d, L)),
        "delta_bias": (delta_bias, (d,)),
    }
    for name, (t, shape) in expect.items():
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for u {tuple(u.shape)}, got {tuple(t.shape)}")


def _chunk_states(
    dt: Tensor, dtu: Tensor, A: Tensor, B: Tensor, h0: Tensor, H: Tensor, a: Tensor
) -> tuple[Tensor, Tensor]:
    """States of one chunk, time-major, written into preallocated buffers.

    Args:
        dt: Time steps ``[T, b, d]``.
        dtu: ``dt * u`` ``[T, b, d]``.
        A: ``[d, N]``.
        B: ``[T, b, N]``.
        h0: State before the chunk ``[b, d, N]``.
        H: Buffer for the states, at least ``[T, b, d, N]``.
        a: Buffer for the decays, at least ``[T, b, d, N]``.

    Returns:
        ``(H, a)`` cut to ``T`` steps: states ``h_t`` and decays ``exp(dt_t A)``. Time-major, so
        each step reads and writes one contiguous ``[b, d, N]`` slab.
    """
    n = dt.shape[0]
    H, a = H[:n], a[:n]
    torch.mul(dt[..., None], A, out=a).exp_()
    torch.mul(dtu[..., None], B[:, :, None, :], out=H)  # dt_t B_t u_t, overwritten by h_t
    hs, As = H.unbind(0), a.unbind(0)
    hs[0].addcmul_(As[0], h0)
    # The recurrence itself: one fused multiply-add per step on a [b, d, N] slab and no autograd
    # graph (the backward is written by hand), so L steps cost L small kernel calls.
    for t in range(1, n):
        hs[t].addcmul_(As[t], hs[t - 1])
    return H, a


class _ChunkedScan(torch.autograd.Function):
    """``y_t = <C_t, h_t>``, ``h_t = exp(dt_t A) h_t-1 + dt_t B_t u_t`` with a hand-written backward.

    The sequence is cut into chunks of ``chunk_size`` tokens processed one after the other with
    the state carried between them; only the state entering each chunk is saved, and the
    backward recomputes a chunk's states from it (as the CUDA kernel recomputes its chunks), so
    memory is O(L·dim + chunk·dim·N + L/chunk·dim·N) instead of O(L·dim·N). The chunk buffers
    are allocated once per call: fresh multi-MB allocations per chunk cost more in page faults
    than the arithmetic.

    Gradients (``g_t = dLoss/dh_t`` through all later steps, ``h_-1 = 0``)::

        g_t = gy_t C_t + exp(dt_t+1 A) g_t+1           (the same recurrence run backwards)
        dC_t = sum_d gy_t h_t,   d(dt_t B_t u_t) = g_t,   d(dt_t A) = g_t h_t-1 exp(dt_t A)
    """

    @staticmethod
    def forward(ctx, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int) -> Tensor:
        b, d, L = u.shape
        n = A.shape[1]
        T = max(1, min(chunk_size, L))  # L = 0 gives an empty output
        # Time-major copies ([L, b, ...]) so that a chunk and a step are contiguous slices.
        dt_l = dt.permute(2, 0, 1).contiguous()
        dtu_l = dt_l * u.permute(2, 0, 1)
        B_l, C_l = B.permute(2, 0, 1), C.permute(2, 0, 1)
        starts = list(range(0, L, T))
        h0s = u.new_empty(len(starts), b, d, n)
        h = u.new_zeros(b, d, n)
        y = u.new_empty(b, d, L)
        H_buf, a_buf = u.new_empty(T, b, d, n), u.new_empty(T, b, d, n)
        for i, s in enumerate(starts):
            e = min(s + T, L)
            h0s[i] = h
            H, _ = _chunk_states(dt_l[s:e], dtu_l[s:e], A, B_l[s:e], h0s[i], H_buf, a_buf)
            y[:, :, s:e] = torch.einsum("tbdn,tbn->bdt", H, C_l[s:e])
            h = H[-1]
        ctx.chunk_size = T
        ctx.save_for_backward(u, dt, A, B, C, h0s)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: Tensor):
        u, dt, A, B, C, h0s = ctx.saved_tensors
        T = ctx.chunk_size
        b, d, L = u.shape
        n = A.shape[1]
        u_l = u.permute(2, 0, 1)
        dt_l = dt.permute(2, 0, 1).contiguous()
        dtu_l = dt_l * u_l
        B_l, C_l = B.permute(2, 0, 1), C.permute(2, 0, 1)
        gy_l = gy.permute(2, 0, 1).contiguous()
        g_u = torch.empty_like(dt_l)
        g_dt = torch.empty_like(dt_l)
        g_B = u.new_empty(L, b, n)
        g_C = u.new_empty(L, b, n)
        g_A = torch.zeros_like(A)
        H_buf, a_buf, G_buf = (u.new_empty(T, b, d, n) for _ in range(3))
        carry = u.new_zeros(b, d, n)  # exp(dt_s A) g_s at the first step s of the later chunk
        starts = list(range(0, L, T))
        for i in reversed(range(len(starts))):
            s = starts[i]
            e = min(s + T, L)
            h0 = h0s[i]
            H, a = _chunk_states(dt_l[s:e], dtu_l[s:e], A, B_l[s:e], h0, H_buf, a_buf)
            g_C[s:e] = torch.einsum("tbdn,tbd->tbn", H, gy_l[s:e])
            G = torch.mul(gy_l[s:e, :, :, None], C_l[s:e, :, None, :], out=G_buf[: e - s])
            gs, As = G.unbind(0), a.unbind(0)
            gs[-1].add_(carry)
            for t in range(len(gs) - 2, -1, -1):
                gs[t].addcmul_(As[t + 1], gs[t + 1])
            torch.mul(As[0], gs[0], out=carry)
            g_B[s:e] = torch.einsum("tbdn,tbd->tbn", G, dtu_l[s:e])
            gb = torch.einsum("tbdn,tbn->tbd", G, B_l[s:e])  # sum_n g_t B_t
            g_u[s:e] = gb * dt_l[s:e]
            # d(dt_t A) = g_t h_t-1 exp(dt_t A), built in place in `a`; then the two
            # contractions reuse G's buffer (elementwise product + plain sum beats einsum here).
            ga = a.mul_(G)
            ga[1:].mul_(H[:-1])
            ga[0].mul_(h0)
            g_dt[s:e] = torch.mul(ga, A, out=G).sum(-1).add_(gb * u_l[s:e])
            g_A += torch.mul(ga, dt_l[s:e, :, :, None], out=G).flatten(0, 1).sum(0)
        return (
            g_u.permute(1, 2, 0),
            g_dt.permute(1, 2, 0),
            g_A,
            g_B.permute(1, 2, 0),
            g_C.permute(1, 2, 0),
            None,
        )


def causal_conv1d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None
) -> Tensor:
    """Causal depthwise conv1d, as ``causal_conv1d.causal_conv1d_fn``.

    Args:
        x: ``[batch, dim, L]``.
        weight: ``[dim, width]``.
        bias: ``[dim]``.
        activation: None, ``"silu"`` or ``"swish"``.

    Returns:
        ``[batch, dim, L]``: ``out_t`` sees ``x_{t-width+1..t}`` only.
    """
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None, 'silu' or 'swish', got {activation!r}")
    # The kernel handles widths 2..4 in float32/half; anything else takes the PyTorch path.
    if x.is_cuda and x.dtype in _KERNEL_DTYPES and 2 <= weight.shape[-1] <= 4:
        kernel = _causal_conv1d_kernel()
        if kernel is not None:
            return kernel(x, weight, bias, activation=activation)  # 4th positional is seq_idx
    return causal_conv1d_torch(x, weight, bias, activation)


def causal_conv1d_torch(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None
) -> Tensor:
    """The PyTorch :func:`causal_conv1d`: left-pad by ``width - 1``, depthwise ``F.conv1d``."""
    width = weight.shape[-1]
    out = F.conv1d(F.pad(x, (width - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return F.silu(out) if activation is not None else out
