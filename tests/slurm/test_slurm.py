"""On a real (local, single-node) SLURM: `tools/slurm_local.sh start` brings one up; .ci/run does."""

from __future__ import annotations

import json
import os
import re
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


def _sbatch(tmp_path: Path, *args: str, wait: bool = True, script: str = "stage3.sh") -> str:
    cmd = ["sbatch", "--parsable", *(["--wait"] if wait else []), *SBATCH_CPU,
           f"--output={tmp_path}/sbatch-%j.out", str(REPO / "launch" / script), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout.strip().split(";")[0]


def test_sbatch_stage3_tiny_completes_with_checkpoint_and_export(vau_cli, tmp_path):
    vau_cli("synth", "--out", str(tmp_path / "data"), "--videos", "6", "--images", "6")
    _sbatch(tmp_path, "experiment=tiny/anomshield_stage3", "trainer=cpu", "init_from=null",
            "model.llm.pretrained=null", "model.vision.pretrained=null", "trainer.max_steps=4", *QUIET)
    run = tmp_path / "runs" / "tiny_anomshield_stage3"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "export" / "model.safetensors").is_file() and (run / "export" / "adapter").is_dir()
    assert list(run.glob("wandb/offline-run-*"))
    (log,) = list(run.glob("slurm-*.out"))
    assert "0: run dir:" in log.read_text()  # srun --label: each line names its rank
    assert sorted(read_losses(run / "metrics.csv")) == [0, 1, 2, 3]

    # The same export through launch/infer.sh and launch/eval.sh.
    data, out = tmp_path / "data" / "synth" / "shards", tmp_path / "answers"
    _sbatch(tmp_path, "infer=tiny", f"model={run}", f"shards={data / 'videos-val-*.tar'}", f"out={out}",
            "questions_from=conversations", "num_workers=0", "progress=false", script="infer.sh")
    answers = (out / "predictions.jsonl").read_text().splitlines()
    assert answers and json.loads((out / "infer.json").read_text())["family"] == "anomshield"
    _sbatch(tmp_path, f"predictions=[{out}]", f"out={tmp_path / 'eval'}", "anomeval.enabled=false",
            "wandb=disabled", "progress=false", script="eval.sh")
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert sum(t["n"] for t in results["models"]["answers"]["tasks"].values()) > 0


def test_submit_uses_the_site_file_from_any_directory(vau_cli, tmp_path):
    site = tmp_path / "site.sh"
    site.write_text("VAU_PARTITION=debug\nVAU_ACCOUNT=vau_test\nVAU_TIME=0:20:00\nVAU_GPUS_PER_NODE=0\n"
                    "VAU_CPUS_PER_TASK=2\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**_env(tmp_path), "VAU_SITE_FILE": str(site), "VAU_RUNS": "runs"}  # runs/ relative to the submit dir
    proc = subprocess.run([str(REPO / "launch" / "submit.sh"), "stage3", "--parsable", "--wait",
                           f"--output={tmp_path}/sbatch-%j.out", "experiment=tiny/lm", "trainer=cpu",
                           "trainer.max_steps=30", "trainer.log_every_n_steps=10", "logger.wandb.mode=disabled"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    job = proc.stdout.strip().split(";")[0]
    info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    for field in ("Partition=debug", "Account=vau_test", "TimeLimit=00:20:00", "NumTasks=1"):
        assert field in info, (field, info)
    assert re.search(r"CPUs/Task=2\b", info), info
    run = elsewhere / "runs" / "tiny_lm"
    log = next(run.glob("slurm-*.out")).read_text()
    # A plain progress line every 10 steps (no terminal under sbatch), labelled with the rank.
    assert re.findall(r"^0: vau: step (\d+)/30", log, re.M) == ["10", "20", "30"], log[-3000:]
    assert sorted(read_losses(run / "metrics.csv")) == [9, 19, 29]  # metrics every log_every_n_steps too


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
