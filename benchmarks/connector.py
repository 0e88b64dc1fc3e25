"""Forward+backward time of the AnomShield connectors vs. sequence length, and the scan op vs. a loop.

Part 1 — connectors: batch 1, float32, width D (default 256; ECVA's CLIP-L width is 1024, too slow
for 2 cores), L tokens in {1024, ..., 16384}; ``bimamba`` / ``mamba`` (depth 1, d_state 16,
expand 2) / ``mlp`` from ``vau.models.blocks.connector`` and, for reference, a standard pre-norm
self-attention block of the same width (``nn.TransformerEncoderLayer``: D/64 heads, MLP 4D,
SDPA). Attention is skipped (null) at a length whose predicted time (quadratic from the last
measured one) exceeds ``--attn-limit`` seconds. Training mode, so drop-path is on as in training.

Part 2 — scan op: ``selective_scan_torch`` (chunked, hand-written backward) against the per-step
autograd loop that a straightforward PyTorch port runs (transformers' ``MambaMixer`` slow path
does the same: precompute exp(dt A) and dt B u for all steps, loop h = a h + b, y = <C, h>), at
L=4096, dim = 64 x expand 2 = 128, N = 16, batch 1, with D, z, delta_bias and softplus.

Times are the median of ``--repeats`` runs after one warm-up (the loop baseline: one run).

    python benchmarks/connector.py [--dim 256] [--lengths 1024,2048,4096,8192,16384] [--repeats 3]

Writes benchmarks/results/connector.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vau.models.blocks.connector import ConnectorSection, build_connector
from vau.models.ops.selective_scan import DEFAULT_CHUNK_SIZE, selective_scan_torch

TARGET_RATIO_8K_4K = 2.2
TARGET_SCAN_SPEEDUP = 5.0


def _time_fwd_bwd(fn: Callable[[], torch.Tensor], repeats: int, warmup: int = 1) -> dict:
    """Median forward / backward / total seconds of ``fn().sum().backward()``."""
    fwd, bwd = [], []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        out = fn()
        t1 = time.perf_counter()
        out.float().sum().backward()
        t2 = time.perf_counter()
        if i >= warmup:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    total = [f + b for f, b in zip(fwd, bwd)]
    return {
        "fwd_s": round(statistics.median(fwd), 4),
        "bwd_s": round(statistics.median(bwd), 4),
        "total_s": round(statistics.median(total), 4),
        "all_total_s": [round(t, 4) for t in total],
    }


def attention_block(dim: int) -> nn.Module:
    """A standard pre-norm Transformer encoder block of width ``dim`` (SDPA attention)."""
    return nn.TransformerEncoderLayer(
        dim, nhead=max(1, dim // 64), dim_feedforward=4 * dim, dropout=0.0, batch_first=True, norm_first=True
    )


def bench_connectors(dim: int, lengths: list[int], repeats: int, attn_limit: float) -> dict:
    torch.manual_seed(0)
    models = {name: build_connector(ConnectorSection(name=name), dim) for name in ("bimamba", "mamba", "mlp")}
    models["attention"] = attention_block(dim)
    results: dict[str, dict[str, dict | None]] = {name: {} for name in models}
    last_attn: tuple[int, float] | None = None
    for L in lengths:
        x = torch.randn(1, L, dim, requires_grad=True)
        for name, model in models.items():
            model.train()
            if name == "attention" and last_attn is not None:
                predicted = last_attn[1] * (L / last_attn[0]) ** 2
                if predicted > attn_limit:
                    results[name][str(L)] = None
                    print(f"{name:9s} L={L:6d}  skipped (predicted {predicted:.0f} s > {attn_limit:.0f} s)")
                    continue
            r = _time_fwd_bwd(lambda model=model, x=x: model(x), repeats)
            model.zero_grad(set_to_none=True)
            x.grad = None
            results[name][str(L)] = r
            if name == "attention":
                last_attn = (L, r["total_s"])
            print(f"{name:9s} L={L:6d}  fwd {r['fwd_s']:.3f} s  bwd {r['bwd_s']:.3f} s  total {r['total_s']:.3f} s")
    return results


def loop_scan(u, delta, A, B, C, D, z, delta_bias):
    """Per-step autograd loop (the straightforward port; transformers' slow path is the same)."""
    dt = F.softplus(delta + delta_bias[:, None])
    dA = torch.exp(dt[..., None] * A[:, None, :])  # [b, d, L, N]
    dBu = (dt * u)[..., None] * B.transpose(1, 2)[:, None]  # [b, d, L, N]
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        h = dA[:, :, t] * h + dBu[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    y = torch.stack(ys, dim=-1) + u * D[:, None]
    return y * F.silu(z)


def bench_scan(L: int, dim: int, n: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    args = [
        torch.randn(1, dim, L, generator=g),  # u
        torch.randn(1, dim, L, generator=g) * 0.5,  # delta
        -torch.arange(1, n + 1, dtype=torch.float32).repeat(dim, 1),  # A (S4D-real)
        torch.randn(1, n, L, generator=g),  # B
        torch.randn(1, n, L, generator=g),  # C
        torch.ones(dim),  # D
        torch.randn(1, dim, L, generator=g),  # z
        torch.full((dim,), -3.0),  # delta_bias
    ]
    leaves = [a.clone().requires_grad_() for a in args]
    ours = _time_fwd_bwd(lambda: selective_scan_torch(*leaves, delta_softplus=True), repeats)
    print(f"scan  L={L} dim={dim} N={n}  chunked: fwd {ours['fwd_s']:.3f} s  bwd {ours['bwd_s']:.3f} s")
    leaves = [a.clone().requires_grad_() for a in args]
    loop = _time_fwd_bwd(lambda: loop_scan(*leaves), repeats=1, warmup=0)
    print(f"scan  L={L} dim={dim} N={n}  loop:    fwd {loop['fwd_s']:.3f} s  bwd {loop['bwd_s']:.3f} s")
    return {
        "L": L, "dim": dim, "d_state": n, "batch": 1, "chunk_size": DEFAULT_CHUNK_SIZE,
        "chunked": ours, "per_step_loop": loop,
        "speedup_total": round(loop["total_s"] / ours["total_s"], 1),
        "target_speedup": TARGET_SCAN_SPEEDUP,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=256, help="connector width D (CLIP-L: 1024)")
    p.add_argument("--lengths", default="1024,2048,4096,8192,16384")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--attn-limit", type=float, default=60.0, help="skip attention above this predicted time (s)")
    p.add_argument("--scan-length", type=int, default=4096)
    p.add_argument("--scan-dim", type=int, default=128, help="channels of the scan-only test (64 x expand 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "connector.json"))
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    lengths = [int(v) for v in a.lengths.split(",")]

    load_start = _loadavg()
    t_start = time.perf_counter()
    connectors = bench_connectors(a.dim, lengths, a.repeats, a.attn_limit)
    scan = bench_scan(a.scan_length, a.scan_dim, 16, max(a.repeats, 3))

    def total(name: str, L: int) -> float | None:
        r = connectors[name].get(str(L))
        return r["total_s"] if r else None

    ratio = None
    if total("bimamba", 4096) and total("bimamba", 8192):
        ratio = round(total("bimamba", 8192) / total("bimamba", 4096), 3)
    result = {
        "benchmark": "connector",
        "date": datetime.date.today().isoformat(),
        "dim": a.dim,
        "batch": 1,
        "dtype": "float32",
        "mode": "train (forward + backward of sum of outputs)",
        "connector_config": {"depth": 1, "d_state": 16, "d_conv": 4, "expand": 2, "drop_path": 0.1},
        "attention": f"nn.TransformerEncoderLayer(d_model={a.dim}, nhead={max(1, a.dim // 64)}, "
                     f"dim_feedforward={4 * a.dim}, norm_first=True)",
        "lengths": lengths,
        "connectors": connectors,
        "bimamba_ratio_8k_4k": ratio,
        "target_ratio_8k_4k": TARGET_RATIO_8K_4K,
        "scan": scan,
        "targets_met": {
            "bimamba_ratio_8k_4k": ratio is not None and ratio <= TARGET_RATIO_8K_4K,
            "scan_speedup": scan["speedup_total"] >= TARGET_SCAN_SPEEDUP,
        },
        "wall_s": round(time.perf_counter() - t_start, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "torch": torch.__version__,
            # 1-min load average before/after: other processes on the cores slow every
            # multi-threaded op (OpenMP waits for a descheduled thread), so record them.
            "loadavg_start": load_start,
            "loadavg_end": _loadavg(),
        },
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("bimamba_ratio_8k_4k", "targets_met", "wall_s")}, indent=1))
    print(f"scan speedup vs per-step loop: {scan['speedup_total']}x")


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
