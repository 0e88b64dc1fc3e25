"""SIGTERM (scancel, node drain) mid-run: all ranks stop at one step with a checkpoint; resume is exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, read_losses

pytestmark = pytest.mark.slow  # over ~30 s on 2 cores: `pytest -m "not slow"` leaves it out

STEPS = 60  # the stop comes a step or two after the step-10 checkpoint
ARGS = ["experiment=tiny/lm", f"trainer.max_steps={STEPS}", f"optim.total_steps={STEPS}", "ckpt.every_n_steps=10",
        "logger.wandb.mode=disabled", "trainer.progress_bar=none"]


def _start(cut, *args) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(VAU_RUNS=str(cut.parent / "runs"), PYTHONUNBUFFERED="1")
    # Its own session, as a SLURM job step is: killpg reaches the DataLoader workers too.
    return subprocess.Popen([sys.executable, "-m", "vau", "train", *args, f"run.dir={cut}"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(proc: subprocess.Popen, path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)


@pytest.mark.parametrize("extra", [
    [],
    ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"],
    ["data.num_workers=3"],
], ids=["single", "ddp2", "3workers"])
def test_group_sigterm_checkpoints_exports_nothing_exits_143_and_resume_is_exact(vau_cli, tmp_path, extra):
    full, cut = tmp_path / "full", tmp_path / "cut"
    vau_cli("train", *ARGS, *extra, f"run.dir={full}")
    proc = _start(cut, *ARGS, *extra)
    _wait_for(proc, cut / "checkpoints" / "step=000010.ckpt")
    os.killpg(proc.pid, signal.SIGTERM)  # like scancel: every process of the job gets it, workers too
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err and "killed by signal" not in err, err[-3000:]
    assert "SIGTERM received: stopping after step" in err, err[-3000:]
    stopped = int(err.split("stopping after step ")[1].split()[0])
    assert 10 <= stopped < STEPS
    assert f"vau train: stopped by SIGTERM at step {stopped} with a checkpoint, no export" in err
    assert not (cut / "export").exists(), "a stopped run must not look finished"
    assert sorted(read_losses(cut / "metrics.csv")) == list(range(stopped))
    assert (cut / "checkpoints" / f"step={stopped:06d}.ckpt").exists()
    vau_cli("train", *ARGS, *extra, f"run.dir={cut}", "resume=auto")
    a, b = read_losses(full / "metrics.csv"), read_losses(cut / "metrics.csv")
    assert sorted(b) == list(range(STEPS))
    assert all(abs(a[s] - b[s]) <= 1e-6 for s in a)
    assert (cut / "export" / "model.safetensors").is_file()


def test_signal_during_start_up_stops_before_training(vau_cli, tmp_path):
    # Before the first batch there is no new state: the run stops at once, exits non-zero and
    # writes neither a checkpoint nor an export; a resume of a checkpointed run keeps its checkpoint.
    cut = tmp_path / "cut"
    proc = _start(cut, *ARGS)
    _wait_for(proc, cut / "config.yaml")  # written after the model is built, before fit
    os.killpg(proc.pid, signal.SIGUSR1)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGUSR1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "stopped by SIGUSR1 at step" in err
    assert not (cut / "export").exists()
