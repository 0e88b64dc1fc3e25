"""Sequence ops with optional CUDA kernels and pure-PyTorch fallbacks."""

from vau.models.ops.selective_scan import (
    causal_conv1d,
    causal_conv1d_torch,
    scan_backend,
    selective_scan,
    selective_scan_torch,
)

__all__ = ["causal_conv1d", "causal_conv1d_torch", "scan_backend", "selective_scan", "selective_scan_torch"]
