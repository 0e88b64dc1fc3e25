"""A tiny training run end to end: run-dir layout, logging, wandb, re-run from config, init_from."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import read_losses
from vau.config import compose
from vau.lit.checkpoint import load_weights
from vau.lit.module import VauModule
from vau.train import train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    cfg = compose(["experiment=tiny/lm", f"run.dir={run_dir}", "trainer.max_steps=7", "ckpt.every_n_steps=2",
                   "ckpt.keep=2", "trainer.throughput_window=2", "logger.wandb.mode=offline",
                   "trainer.progress_bar=none", "optim.lr_mult={model.layers.0: 0.5}"])
    train(cfg)
    return run_dir


def test_run_dir_layout(tiny_run):
    assert (tiny_run / "config.yaml").is_file()
    ckpts = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    # keep=2 newest step checkpoints (the final step 7 included) + last
    assert ckpts == ["last.ckpt", "step=000006.ckpt", "step=000007.ckpt"], ckpts
    assert not [p for p in (tiny_run / "checkpoints").iterdir() if p.name.startswith(".")]
    export = tiny_run / "export"
    assert {p.name for p in export.iterdir()} == {"model.safetensors", "config.yaml", "state.json", "hf"}
    # a fully trained LM is also a plain HF folder, loadable as a later run's model.llm.pretrained
    from transformers import AutoModelForCausalLM

    from vau.data.text.tokenizer import ByteTokenizer, build_tokenizer

    hf = AutoModelForCausalLM.from_pretrained(str(export / "hf"))
    assert hf.config.vocab_size == 128
    assert isinstance(build_tokenizer(type("LLM", (), {"pretrained": str(export / "hf")})()), ByteTokenizer)


def test_checkpoint_holds_config_and_loads_weights_only(tiny_run):
    ckpt = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 7
    assert ckpt["vau_config"]["trainer"]["max_steps"] == 7
    assert ckpt["TokenDataModule"] == {"epoch": 0, "batches": 7}
    assert "optimizer_states" in ckpt and "lr_schedulers" in ckpt


def test_metrics_csv_columns(tiny_run):
    with open(tiny_run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cols = set(rows[0])
    assert {"step", "train/loss", "train/samples_per_sec", "train/tokens_per_sec",
            "lr-AdamW/default", "lr-AdamW/model.layers.0"} <= cols, cols
    assert sorted(read_losses(tiny_run / "metrics.csv")) == list(range(7))  # every step
    lrs = {k: [float(r[k]) for r in rows if r.get(k)] for k in ("lr-AdamW/default", "lr-AdamW/model.layers.0")}
    for base, scaled in zip(lrs["lr-AdamW/default"], lrs["lr-AdamW/model.layers.0"]):
        assert scaled == pytest.approx(0.5 * base)
    sps = [float(r["train/samples_per_sec"]) for r in rows if r.get("train/samples_per_sec")]
    tps = [float(r["train/tokens_per_sec"]) for r in rows if r.get("train/tokens_per_sec")]
    assert sps and all(v > 0 for v in sps)
    # every sample has seq_len=32 tokens, so tokens/s = 32 x samples/s
    assert tps == pytest.approx([32 * v for v in sps])


def test_wandb_offline_run_and_id_kept(tiny_run):
    run_id = (tiny_run / "wandb" / "run_id").read_text().strip()
    offline = list((tiny_run / "wandb").glob("offline-run-*"))
    assert offline and all(p.name.endswith(run_id) for p in offline)


def test_resume_continues_same_wandb_run(tiny_run, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run, run_dir)
    run_id = (run_dir / "wandb" / "run_id").read_text().strip()
    cfg = compose(["experiment=tiny/lm", f"run.dir={run_dir}", "trainer.max_steps=8", "resume=auto",
                   "logger.wandb.mode=offline", "trainer.progress_bar=none", "optim.lr_mult={model.layers.0: 0.5}"])
    train(cfg)
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(p.name.endswith(run_id) for p in runs)
    assert sorted(read_losses(run_dir / "metrics.csv")) == list(range(8))
    assert (run_dir / "config.prev-0.yaml").is_file()  # the first segment's config is kept


def test_rerun_from_saved_config_reproduces(tiny_run, vau_cli, tmp_path):
    out = tmp_path / "rerun"
    vau_cli("train", "--config", str(tiny_run / "config.yaml"), f"run.dir={out}", "logger.wandb.mode=disabled")
    assert read_losses(out / "metrics.csv") == pytest.approx(read_losses(tiny_run / "metrics.csv"), abs=1e-6)


def test_init_from_loads_exported_weights(tiny_run):
    cfg = compose(["experiment=tiny/lm", "run.seed=123"])
    module = VauModule(cfg)
    exported = load_file(str(tiny_run / "export" / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(module.model.state_dict()[name], exported[name])
    loaded = load_weights(module.model, tiny_run / "export")
    assert set(loaded) == set(exported)
    for k, v in exported.items():
        assert torch.equal(module.model.state_dict()[k], v)


def test_init_from_mismatch_is_one_clear_line(tiny_run, vau_cli):
    proc = vau_cli("train", "experiment=tiny/lm", "model.llm.hidden_size=48", "trainer.max_steps=1",
                   f"init_from={tiny_run / 'export'}", "logger.wandb.mode=disabled", check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "init_from" in last and "shape mismatch" in last and "embed_tokens" in last


def test_cli_typo_exits_with_one_line(vau_cli):
    proc = vau_cli("train", "experiment=tiny/lm", "trainer.max_stepz=3", check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "max_stepz" in lines[0] and "max_steps" in lines[0]


def test_fresh_start_refuses_a_run_dir_with_checkpoints(tiny_run, vau_cli):
    proc = vau_cli("train", "experiment=tiny/lm", f"run.dir={tiny_run}", "resume=null",
                   "logger.wandb.mode=disabled", check=False)
    assert proc.returncode == 2
    assert "already holds checkpoints" in proc.stderr.strip().splitlines()[-1]
    assert (tiny_run / "checkpoints" / "last.ckpt").is_file()
