"""On a real (local, single-node) SLURM: `tools/slurm_local.sh start` brings one up; .ci/run does."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, read_losses

pytestmark = pytest.mark.slurm
SBATCH_CPU = ["--ntasks-per-node=1", "--cpus-per-task=2", "--gpus-per-node=0"]
QUIET = ["trainer.progress_bar=none"]


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(VAU_RUNS=str(tmp_path / "runs"), VAU_DATA=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    return env


def _sbatch(tmp_path: Path, *args: str, wait: bool = True) -> str:
    cmd = ["sbatch", "--parsable", *(["--wait"] if wait else []), *SBATCH_CPU,
           f"--output={tmp_path}/sbatch-%j.out", str(REPO / "launch" / "stage3.sh"), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout.strip().split(";")[0]


def test_sbatch_stage3_tiny_completes_with_checkpoint_and_export(vau_cli, tmp_path):
    vau_cli("synth", "--out", str(tmp_path / "data"), "--videos", "6", "--images", "6")
    _sbatch(tmp_path, "experiment=tiny/anomshield_stage3", "trainer=cpu", "init_from=null",
            "model.llm.pretrained=null", "trainer.max_steps=4", *QUIET)
    run = tmp_path / "runs" / "tiny_anomshield_stage3"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "export" / "model.safetensors").is_file() and (run / "export" / "adapter").is_dir()
    assert list(run.glob("wandb/offline-run-*"))
    (log,) = list(run.glob("slurm-*.out"))
    assert "run dir:" in log.read_text()
    assert sorted(read_losses(run / "metrics.csv")) == [0, 1, 2, 3]


def _state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()
    return out or "GONE"


@pytest.mark.slow
def test_usr1_checkpoints_requeues_and_resumes_exactly(vau_cli, tmp_path):
    # 400 steps (~5 s of tiny-LM training): long enough for the signal to land mid-run.
    steps = ["trainer.max_steps=400", "ckpt.every_n_steps=10", "optim.total_steps=400", "logger.wandb.mode=offline"]
    full = tmp_path / "full"
    vau_cli("train", "experiment=tiny/lm", f"run.dir={full}", *steps, *QUIET)
    job = _sbatch(tmp_path, "experiment=tiny/lm", "trainer=cpu", *steps, *QUIET, wait=False)
    run = tmp_path / "runs" / "tiny_lm"
    deadline = time.time() + 300
    # Mid-training: any step checkpoint (older ones rotate away within a fraction of a second).
    while not list((run / "checkpoints").glob("step=*.ckpt")) if (run / "checkpoints").is_dir() else True:
        assert time.time() < deadline, f"job {job} wrote no step checkpoint: {_state(job)}"
        time.sleep(0.02)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    deadline = time.time() + 600
    while _state(job) != "GONE":
        assert time.time() < deadline, f"job {job} still {_state(job)}"
        time.sleep(1)
    log = next(run.glob("slurm-*.out")).read_text()
    assert "USR1 received" in log and "requeueing SLURM job" in log
    assert "restart 1:" in (tmp_path / f"sbatch-{job}.out").read_text()
    a, b = read_losses(full / "metrics.csv"), read_losses(run / "metrics.csv")
    assert sorted(b) == list(range(400))
    assert all(abs(a[s] - b[s]) <= 1e-6 for s in a), [s for s in a if abs(a[s] - b[s]) > 1e-6][:5]
    assert read_losses(run / "metrics.csv", "slurm/restart_count")  # the restart is recorded
    assert 1.0 in read_losses(run / "metrics.csv", "slurm/restart_count").values()
