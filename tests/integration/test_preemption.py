"""SIGTERM (scancel, node drain) mid-run: all ranks stop at one step with a checkpoint; resume is exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, read_losses

ARGS = ["experiment=tiny/lm", "trainer.max_steps=150", "optim.total_steps=150", "ckpt.every_n_steps=10",
        "logger.wandb.mode=disabled", "trainer.progress_bar=none"]


@pytest.mark.parametrize("extra", [[], ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                                        "trainer.precision=32-true"]], ids=["single", "ddp2"])
def test_sigterm_checkpoints_at_a_step_and_resume_is_exact(vau_cli, tmp_path, extra):
    full, cut = tmp_path / "full", tmp_path / "cut"
    vau_cli("train", *ARGS, *extra, f"run.dir={full}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(VAU_RUNS=str(tmp_path / "runs"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "vau", "train", *ARGS, *extra, f"run.dir={cut}"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 300
    while not (cut / "checkpoints" / "step=000010.ckpt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)  # like SLURM: every process of the job gets it
    out, err = proc.communicate(timeout=300)
    assert "SIGTERM received: stopping after step" in err, err[-3000:]
    stopped = int(err.split("stopping after step ")[1].split()[0])
    assert 10 <= stopped < 150
    assert sorted(read_losses(cut / "metrics.csv")) == list(range(stopped))
    assert (cut / "checkpoints" / f"step={stopped:06d}.ckpt").exists() or (cut / "checkpoints" / "last.ckpt").exists()
    vau_cli("train", *ARGS, *extra, f"run.dir={cut}", "resume=auto")
    a, b = read_losses(full / "metrics.csv"), read_losses(cut / "metrics.csv")
    assert sorted(b) == list(range(150))
    assert all(abs(a[s] - b[s]) <= 1e-6 for s in a)
