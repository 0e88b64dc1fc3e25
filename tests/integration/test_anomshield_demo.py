"""The AnomShield demo end to end (README command 1), the stage hand-off, merge-lora, launch scripts."""

from __future__ import annotations

import os
import subprocess

import torch

from conftest import REPO, read_losses

QUIET = ["trainer.progress_bar=none", "logger.wandb.mode=disabled"]


def test_demo_stages_handoff_merge_and_launch(vau_cli, tmp_path, monkeypatch):
    data, runs = tmp_path / "data", tmp_path / "runs"
    proc = vau_cli("demo", "--data", str(data), "--samples", "2", *QUIET)
    out = proc.stdout
    assert out.count("  truth:  ") == 4 and out.count("  model:  ") == 4
    # every stage trained and its loss fell
    for name in ("llm", "stage1", "stage3"):
        losses = read_losses(runs / f"tiny_anomshield_{name}" / "metrics.csv")
        first, last = list(losses.values())[:5], list(losses.values())[-5:]
        assert sum(last) / 5 < sum(first) / 5 - 0.2, (name, first, last)
    # each stage started from the previous stage's export
    for prev in ("stage1", "stage2"):
        assert "initialised" in proc.stderr and f"tiny_anomshield_{prev}/export" in proc.stderr
    export = runs / "tiny_anomshield_stage3" / "export"
    assert (export / "adapter" / "adapter_config.json").is_file()
    assert (export / "tokenizer" / "byte_tokenizer.json").is_file()

    # LoRA merged into a plain HF model gives the same logits as base + adapter
    merged = tmp_path / "merged"
    vau_cli("export", str(runs / "tiny_anomshield_stage3"), "--merge-lora", "--out", str(merged))
    from transformers import AutoModelForCausalLM

    from vau.eval.generate import load_export

    monkeypatch.setenv("VAU_RUNS", str(runs))  # the export config names the stage-0 LLM under VAU_RUNS
    _, model = load_export(runs / "tiny_anomshield_stage3")
    plain = AutoModelForCausalLM.from_pretrained(str(merged / "llm")).eval()
    ids = torch.randint(3, 128, (2, 24))
    with torch.no_grad():
        want, got = model.llm(input_ids=ids).logits, plain(input_ids=ids).logits
    assert torch.allclose(want, got, atol=1e-4), (want - got).abs().max()
    assert (merged / "visual.safetensors").is_file()

    # the sbatch script runs as a plain local job outside SLURM
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(VAU_RUNS=str(runs), VAU_DATA=str(data))
    launch = subprocess.run(
        ["bash", str(REPO / "launch" / "stage1.sh"), "experiment=tiny/anomshield_stage1", "run.name=launched",
         "trainer.max_steps=2", *QUIET], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert "vau: job local" in launch.stdout and str(runs / "launched") in launch.stdout
    assert sorted(read_losses(runs / "launched" / "metrics.csv")) == [0, 1]
