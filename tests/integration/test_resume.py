"""Exact resume: a run stopped at step N and resumed to 2N logs the same losses as one 2N run."""

from __future__ import annotations

import json

import pytest

from conftest import read_losses

pytestmark = pytest.mark.slow  # over ~30 s on 2 cores: `pytest -m "not slow"` leaves it out

N = 3
TINY = ["logger.wandb.mode=disabled", "trainer.progress_bar=none"]


def _compare(vau_cli, tmp_path, base: list[str]) -> None:
    full, split = tmp_path / "full", tmp_path / "split"
    vau_cli("train", *base, f"trainer.max_steps={2 * N}", f"run.dir={full}")
    vau_cli("train", *base, f"trainer.max_steps={N}", f"run.dir={split}")
    assert (split / "checkpoints" / "last.ckpt").exists()
    proc = vau_cli("train", *base, f"trainer.max_steps={2 * N}", f"run.dir={split}", "resume=auto")
    assert "resuming from" in proc.stdout + proc.stderr
    a, b = read_losses(full / "metrics.csv"), read_losses(split / "metrics.csv")
    assert sorted(a) == sorted(b) == list(range(2 * N)), (a, b)
    for step in range(N, 2 * N):
        assert abs(a[step] - b[step]) <= 1e-6, (step, a[step], b[step])
    # the loss moves, so equality is not an artefact of a frozen model
    assert len({round(v, 6) for v in a.values()}) > 1


# DDP on the map-style path: tests/integration/test_preemption.py (ddp2) resumes it exactly.
def test_resume_default_strategy(vau_cli, tmp_path):
    # every_n_steps=2 does not divide N=3: the final-step checkpoint is what resume uses.
    _compare(vau_cli, tmp_path, ["experiment=tiny/lm", "ckpt.every_n_steps=2", *TINY])


@pytest.mark.parametrize("zero", ["deepspeed_zero2", "deepspeed_zero3"])
def test_resume_deepspeed_lora_cpu(vau_cli, tmp_path, zero):
    # Lightning's DeepSpeedStrategy on CPU/gloo through vau's CPU subclass; LoRA adapter only trains.
    _compare(vau_cli, tmp_path, ["experiment=tiny/lm_lora", f"trainer={zero}", "trainer.accelerator=cpu",
                                 "trainer.devices=2", "trainer.precision=32-true", *TINY])
    export = tmp_path / "split" / "export"
    assert (export / "adapter" / "adapter_config.json").is_file()
    from safetensors.torch import load_file

    weights = load_file(str(export / "model.safetensors"))
    assert weights and all("lora_" in k for k in weights)
    assert all(t.numel() > 0 for t in weights.values())  # gathered, not ZeRO-3 shards
    # The sharded ZeRO checkpoint gathers into one fp32 file holding the same trained tensors.
    import torch

    ckpt = tmp_path / "split" / "checkpoints" / "last.ckpt"
    vau_cli("export", str(ckpt), "--consolidate", "--out", str(tmp_path / "c.ckpt"))
    state = torch.load(tmp_path / "c.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    for k, v in weights.items():
        assert torch.equal(state[f"model.{k}"].float(), v.float()), k


def _caption_shards(root) -> None:
    """Caption shards where the tiny_lm_text experiment looks, with one broken sample."""
    from vau.data.shards.manifest import Sample
    from vau.data.shards.writer import ShardWriter

    colours, shapes = ["red", "green", "blue", "yellow"], ["circle", "square", "triangle"]
    for kind, n in (("images", 40), ("videos", 24)):
        for split in ("train", "val"):
            w = ShardWriter(str(root / "synth" / "shards" / f"{kind}-{split}-%06d.tar"), maxcount=6)
            for i in range(n if split == "train" else 6):
                text = f"a {colours[i % 4]} {shapes[i % 3]} {'moves' if kind == 'videos' else 'rests'} {i}"
                data = b"{broken" if (kind, split, i) == ("images", "train", 7) else json.dumps({"caption": text}).encode()
                w.write(Sample(f"{kind}{i:03d}", {"json": data}))
            w.close()


def test_resume_shard_stream_two_workers_ddp(vau_cli, tmp_path):
    # The data position (each worker's cursor, which worker is due next) is in the checkpoint:
    # the resumed run reads the batches the uninterrupted one read, not the epoch's first ones.
    # One process: tests/integration/test_resume_every_stop.py resumes from every step.
    _caption_shards(tmp_path / "data")
    _compare(vau_cli, tmp_path, ["experiment=tiny/lm_text", f"data.root={tmp_path / 'data'}", "data.num_workers=2",
                                 "ckpt.every_n_steps=2", "trainer=ddp", "trainer.accelerator=cpu",
                                 "trainer.devices=2", "trainer.precision=32-true", *TINY])


@pytest.mark.gpu
def test_resume_deepspeed_zero2_gpu_bf16(vau_cli, tmp_path):
    _compare(vau_cli, tmp_path, ["experiment=tiny/lm_lora", "trainer=deepspeed_zero2", "trainer.devices=1",
                                 "trainer.precision=bf16-mixed", *TINY])


@pytest.mark.multigpu
def test_resume_ddp_two_gpus(vau_cli, tmp_path):
    _compare(vau_cli, tmp_path, ["experiment=tiny/lm", "trainer=ddp", "trainer.devices=2",
                                 "trainer.precision=32-true", *TINY])


@pytest.mark.gpu
def test_checkpoint_tools_on_cuda(vau_cli, tmp_path):
    # ZeRO-2 on one GPU in bf16: the checkpoint consolidates to the exported LoRA tensors, and the
    # merged HF model reproduces base + adapter.
    import torch
    from safetensors.torch import load_file

    run = tmp_path / "gpu"
    vau_cli("train", "experiment=tiny/lm_lora", "trainer=deepspeed_zero2", "trainer.devices=1",
            "trainer.precision=bf16-mixed", "trainer.max_steps=4", f"run.dir={run}", *TINY)
    vau_cli("export", str(run / "checkpoints" / "last.ckpt"), "--consolidate", "--out", str(tmp_path / "c.ckpt"))
    state = torch.load(tmp_path / "c.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    weights = load_file(str(run / "export" / "model.safetensors"))
    for k, v in weights.items():
        assert torch.allclose(state[f"model.{k}"].float(), v.float(), atol=1e-2), k
    vau_cli("export", str(run), "--merge-lora", "--out", str(tmp_path / "merged"))
    assert (tmp_path / "merged" / "llm" / "config.json").is_file()
