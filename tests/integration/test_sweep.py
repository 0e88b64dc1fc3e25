"""`vau sweep`: members from a grid + list, --local runs, re-runs skip finished members; SLURM arrays."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from conftest import read_losses
from vau.sweep import load_sweep, members, sbatch_command

TINY = ["trainer.progress_bar=none", "logger.wandb.mode=disabled"]


def test_members_names_and_array_command(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: abl\nexperiment: tiny/lm\noverrides: [trainer.max_steps=3]\n"
                 "grid: {optim.lr: [0.1, 0.01], model.llm.hidden_size: [32]}\nmembers: [[optim.kind=sgd]]\n")
    spec = load_sweep(f)
    ms = members(spec)
    assert [m.name for m in ms] == ["abl-optim.lr-0.1_llm.hidden_size-32", "abl-optim.lr-0.01_llm.hidden_size-32",
                                    "abl-optim.kind-sgd"]
    assert ms[0].overrides[:3] == ["trainer.max_steps=3", "optim.lr=0.1", "model.llm.hidden_size=32"]
    assert "logger.wandb.group=abl" in ms[0].overrides and "resume=auto" in ms[0].overrides
    cmd = sbatch_command(spec, tmp_path / "m.txt", [0, 2])
    assert cmd[0].endswith("launch/submit.sh") and cmd[1:5] == ["sweep", "--parsable", "--array=0,2", "--job-name=abl"]
    assert cmd[-1] == str(tmp_path / "m.txt")
    f.write_text("name: abl\nexperiment: tiny/lm\nstages: [tiny/lm]\nmembers: [[]]\n")
    with pytest.raises(ValueError, match="give 'experiment' .* or 'stages'"):
        load_sweep(f)
    f.write_text("name: abl\nexperiment: tiny/lm\ngridd: {}\n")
    with pytest.raises(ValueError, match="gridd"):
        load_sweep(f)


@pytest.mark.slow
def test_table8_chains_local_then_rerun_starts_nothing(vau_cli, tmp_path):
    import yaml
    from safetensors.torch import load_file

    data = tmp_path / "data"
    vau_cli("synth", "--out", str(data), "--videos", "12", "--images", "12")
    tiny = ["model.llm.pretrained=null", "model.vision.pretrained=null", f"data.root={data}", *TINY]
    out = vau_cli("sweep", "conf/sweep/tiny_table8.yaml", "--local", *tiny).stdout
    assert out.count(" todo ") == 4 and out.count("== sweep tiny_table8 member") == 4
    runs = tmp_path / "runs"
    for member in ("full", "no_soft_prompt", "extra_forward_mamba", "extra_no_st_embed"):
        stages = [runs / f"tiny_table8-{member}-anomshield_stage{k}" for k in (1, 2, 3)]
        assert all((r / "export" / "model.safetensors").is_file() for r in stages), member
        for prev, run in zip(stages, stages[1:]):  # each stage starts from the member's previous stage
            assert yaml.safe_load((run / "config.yaml").read_text())["init_from"] == str(prev / "export")
    # "- soft prompt" is trained through all stages as a plain MLP connector without Eq. 1 embeddings.
    ablated = load_file(str(runs / "tiny_table8-no_soft_prompt-anomshield_stage3" / "export" / "model.safetensors"))
    full = load_file(str(runs / "tiny_table8-full-anomshield_stage3" / "export" / "model.safetensors"))
    assert ablated["temporal_embed"].numel() == 0 and full["temporal_embed"].numel() > 0
    assert any("A_b_log" in k for k in full) and not any("A_log" in k for k in ablated)
    status = vau_cli("sweep", "status", "conf/sweep/tiny_table8.yaml", *tiny).stdout
    assert status.count("anomshield_stage3:done") == 4
    again = vau_cli("sweep", "conf/sweep/tiny_table8.yaml", "--local", *tiny).stdout
    assert "all 4 member(s) finished" in again and "== sweep" not in again
    # The results table: each member's stage-3 export answers the val videos, plus the eval-only
    # "- hard prompt" row (the full export with uniform frames); one vau eval, a row per member.
    shards = str(data / "synth" / "shards" / "videos-val-*.tar")
    vau_cli("sweep", "eval", "conf/sweep/tiny_table8.yaml", "--shards", shards, *tiny)
    sweep = runs / "sweeps" / "tiny_table8"
    results = json.loads((sweep / "eval" / "results.json").read_text())
    rows = ["full", "no_soft_prompt", "extra_forward_mamba", "extra_no_st_embed", "no_hard_prompt"]
    assert list(results["models"]) == rows
    assert all({"detection", "classification", "description"} <= set(m["tasks"]) for m in results["models"].values())
    table = (sweep / "eval" / "results.md").read_text()
    assert all(f"| {r} |" in table for r in rows) and "Det. Acc" in table
    full, uniform = ([json.loads(line) for line in (sweep / "infer" / r / "predictions.jsonl").open()]
                     for r in ("full", "no_hard_prompt"))
    assert sorted(r["id"] for r in full) == sorted(r["id"] for r in uniform)
    assert {r["sampling"] for r in full} == {"hard_prompt"} and {r["sampling"] for r in uniform} == {"uniform"}
    for r in ("full", "no_hard_prompt"):
        info = json.loads((sweep / "infer" / r / "infer.json").read_text())
        assert info["model"] == str(runs / "tiny_table8-full-anomshield_stage3" / "export")
    status = vau_cli("sweep", "status", "conf/sweep/tiny_table8.yaml", *tiny).stdout
    assert status.count("answers done") == 5 and "eval no_hard_prompt (export of full)" in status
    rerun = vau_cli("sweep", "eval", "conf/sweep/tiny_table8.yaml", "--shards", shards, *tiny).stdout
    assert rerun.count("answers already in") == 5  # answers are not recomputed; the table is rewritten


def test_sweep_eval_members_are_checked(tmp_path, vau_cli):
    f = tmp_path / "s.yaml"
    base = "name: abl\nexperiment: tiny/lm\nmembers: {a: []}\n"
    f.write_text(base + "evaluate: {members: {b: {of: c}}}\n")
    with pytest.raises(ValueError, match=r"evaluate.members.b needs 'of' = one of the members \(a\)"):
        load_sweep(f)
    f.write_text(base + "evaluate: {shard: x}\n")
    with pytest.raises(ValueError, match="'evaluate' is a mapping with keys"):
        load_sweep(f)
    f.write_text(base + "evaluate: {members: {b: {of: a}}}\n")
    assert load_sweep(f)["evaluate"]["members"]["b"]["of"] == "a"
    proc = vau_cli("sweep", "eval", str(f), check=False)
    assert proc.returncode != 0 and "no test shards" in proc.stderr


def test_paper_table8_composes_as_chains(vau_cli):
    out = vau_cli("sweep", "conf/sweep/ecva_table8.yaml", "--dry-run").stdout
    names = re.findall(r"^\s+\d+ todo\s+(\S+)", out, re.M)
    assert names == ["ecva_table8-full", "ecva_table8-no_soft_prompt", "ecva_table8-extra_forward_mamba",
                     "ecva_table8-extra_no_st_embed"]
    chains = [line for line in out.splitlines() if " -> " in line and "submit.sh" in line]
    assert len(chains) == 4 and all(line.count("submit.sh sweep") == 3 for line in chains)


def test_stopped_member_stays_todo_and_the_sweep_exits_nonzero(vau_cli, tmp_path):
    import os
    import signal
    import sys

    from conftest import REPO

    f = tmp_path / "s.yaml"
    f.write_text("name: stop\nexperiment: tiny/lm\noverrides: [trainer.max_steps=80, optim.total_steps=80, "
                 "ckpt.every_n_steps=5, trainer.progress_bar=none, logger.wandb.mode=disabled]\n"
                 "grid: {optim.lr: [0.01, 0.001]}\n")
    env = dict(os.environ, VAU_RUNS=str(tmp_path / "runs"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "vau", "sweep", str(f), "--local"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    first = tmp_path / "runs" / "stop-optim.lr-0.01"
    deadline = time.time() + 300
    while not (first / "checkpoints" / "step=000005.ckpt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "vau sweep: stopped by SIGTERM at step" in err and "Traceback" not in err
    assert "member 1" not in out  # the sweep ended with the stopped member
    assert not (first / "export").exists()
    listing = vau_cli("sweep", str(f), "--dry-run").stdout
    assert "  0 todo  stop-optim.lr-0.01" in listing and "  1 todo" in listing


@pytest.mark.slurm
def test_sweep_as_slurm_job_array(vau_cli, tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: arr\nexperiment: tiny/lm\noverrides: [trainer.max_steps=3, trainer.progress_bar=none]\n"
                 "grid: {optim.lr: [0.01, 0.001]}\n"
                 f"sbatch: [--ntasks-per-node=1, --cpus-per-task=1, --gpus-per-node=0, '--output={tmp_path}/%x-%A_%a.out']\n")
    out = vau_cli("sweep", str(f)).stdout
    job = out.strip().splitlines()[-1].split()[3]
    deadline = time.time() + 600
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
        assert time.time() < deadline
        time.sleep(1)
    for lr in ("0.01", "0.001"):
        run = tmp_path / "runs" / f"arr-optim.lr-{lr}"
        assert sorted(read_losses(run / "metrics.csv")) == [0, 1, 2], run
        assert (run / "export" / "model.safetensors").is_file()
    assert "all 2 member(s) finished" in vau_cli("sweep", str(f)).stdout


@pytest.mark.slurm
def test_chained_member_as_slurm_jobs_linked_by_afterok(vau_cli, tmp_path):
    data = tmp_path / "data"
    vau_cli("synth", "--out", str(data), "--videos", "12", "--images", "12")
    f = tmp_path / "chain.yaml"
    f.write_text("name: chain\nstages: [tiny/anomshield_stage1, tiny/anomshield_stage2]\n"
                 f"overrides: [trainer.max_steps=3, model.llm.pretrained=null, model.vision.pretrained=null, 'data.root={data}', "
                 "trainer.progress_bar=none, logger.wandb.mode=disabled]\nmembers: {one: []}\n"
                 f"sbatch: [--ntasks-per-node=1, --cpus-per-task=1, --gpus-per-node=0, '--output={tmp_path}/%x-%A_%a.out']\n")
    out = vau_cli("sweep", str(f)).stdout
    (line,) = [ln for ln in out.splitlines() if ln.startswith("submitted member 0")]
    first, second = re.findall(r"\d+", line.split("jobs", 1)[1])[:2]
    deps = subprocess.run(["scontrol", "show", "job", second], capture_output=True, text=True).stdout
    # While the first job runs the second names it; once it has ended SLURM clears the field.
    assert f"afterok:{first}" in deps or "Dependency=(null)" in deps, deps
    deadline = time.time() + 600
    while subprocess.run(["squeue", "-h", "-j", f"{first},{second}"], capture_output=True, text=True).stdout.strip():
        assert time.time() < deadline
        time.sleep(1)
    runs = tmp_path / "runs"
    for stage in ("anomshield_stage1", "anomshield_stage2"):
        assert (runs / f"chain-one-{stage}" / "export" / "model.safetensors").is_file(), stage
    # Stage 2 started only after stage 1 had finished (its export existed when stage 2 wrote its config).
    exported = (runs / "chain-one-anomshield_stage1" / "export" / "model.safetensors").stat().st_mtime
    assert (runs / "chain-one-anomshield_stage2" / "config.yaml").stat().st_mtime >= exported
    assert "all 1 member(s) finished" in vau_cli("sweep", str(f)).stdout
