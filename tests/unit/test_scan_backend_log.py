"""The selective-scan backend is logged once per process; CUDA without mamba_ssm says how to get it."""

from __future__ import annotations

import importlib
import logging

import torch

# The module (vau.models.ops exports a function of the same name).
ss = importlib.import_module("vau.models.ops.selective_scan")



def test_backend_is_logged_once(caplog):
    ss.announce_backend.cache_clear()
    u = torch.randn(1, 2, 5)
    args = (u, torch.randn(1, 2, 5), -torch.rand(2, 3), torch.randn(1, 3, 5), torch.randn(1, 3, 5))
    with caplog.at_level(logging.INFO, logger="vau.models"):
        ss.selective_scan(*args)
        ss.selective_scan(*args)
    lines = [r.getMessage() for r in caplog.records if "selective scan" in r.getMessage()]
    assert lines == ["vau: selective scan: PyTorch (chunked; the mamba_ssm kernel runs on CUDA only)"]


def test_cuda_without_the_kernel_warns_with_the_install_line(caplog, monkeypatch):
    ss.announce_backend.cache_clear()
    monkeypatch.setitem(ss._IMPORT_ERRORS, "mamba_ssm", "ModuleNotFoundError: No module named 'mamba_ssm'")
    with caplog.at_level(logging.INFO, logger="vau.models"):
        ss.announce_backend("torch", True)
    (record,) = [r for r in caplog.records if "selective scan" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "No module named 'mamba_ssm'" in record.getMessage() and "pip install -e '.[gpu]'" in record.getMessage()
    ss.announce_backend.cache_clear()
