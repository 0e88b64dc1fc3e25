"""Shared fixtures; skips hardware-bound tests only where the hardware is absent, and says so."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests never reach a hub or a wandb server.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

# Lightning's log handler keeps the sys.stderr of the moment it is imported; first imported in
# a capsys test (an in-process `vau` call) it would write to that test's closed capture later.
import lightning.pytorch  # noqa: E402,F401


def _cuda_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


_GPUS = _cuda_count()
_SLURM = _slurm_up()
_REASONS = {
    "gpu": None if _GPUS >= 1 else "needs a CUDA GPU; this machine has none",
    "multigpu": None if _GPUS >= 2 else f"needs >= 2 CUDA GPUs; this machine has {_GPUS}",
    "slurm": None if _SLURM else "needs a running SLURM cluster (sinfo not answering here)",
}


def pytest_report_header(config):
    skipped = [m for m, why in _REASONS.items() if why]
    return [f"vau: CUDA GPUs={_GPUS}, SLURM={'up' if _SLURM else 'down'}; "
            f"markers skipped because the hardware is absent: {', '.join(skipped) or 'none'}"]


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker, why in _REASONS.items():
            if why and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=f"[{marker}] {why}"))


def raw_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar with exactly these members in this order (ShardWriter would keep samples together)."""
    import io
    import tarfile

    with tarfile.open(path, "w") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def read_losses(metrics_csv: Path, key: str = "train/loss") -> dict[int, float]:
    """{step: value} of one metric from a run's metrics.csv."""
    with open(metrics_csv, newline="") as f:
        return {int(r["step"]): float(r[key]) for r in csv.DictReader(f) if r.get(key)}


def run_vau(runs: Path, *args: str, check: bool = True, timeout: int = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs `python -m vau ...` in a subprocess with ``VAU_RUNS=runs`` (and ``env`` added)."""
    full_env = dict(os.environ, VAU_RUNS=str(runs), PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "vau", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"vau {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture
def vau_cli(tmp_path):
    """Runs `python -m vau ...` in a subprocess (needed for multi-process strategies)."""

    def run(*args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
        return run_vau(tmp_path / "runs", *args, check=check, timeout=timeout)

    return run


@pytest.fixture
def deadline():
    """Fails a test after 60 s (SIGALRM) instead of letting a stream that never ends hang CI."""
    import signal

    def expire(*_):
        raise TimeoutError("the test did not finish within 60 s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
