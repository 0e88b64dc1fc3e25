"""Lean checkpoints: frozen parameters left out (resume still exact), last.ckpt a link, and a
best-by-validation export (DeepSpeed's exclude_frozen_parameters: tests/integration/test_resume.py)."""

from __future__ import annotations

import csv
import json
import os

import pytest
import torch

from conftest import read_losses

pytestmark = pytest.mark.slow  # three short runs: over ~30 s on 2 cores

LORA = ["experiment=tiny/lm_lora", "logger.wandb.mode=disabled", "trainer.progress_bar=none", "ckpt.every_n_steps=2"]


def _state(run, step):
    return torch.load(run / "checkpoints" / f"step={step:06d}.ckpt", weights_only=True, map_location="cpu")["state_dict"]


def test_frozen_parameters_are_left_out_and_resume_is_exact(vau_cli, tmp_path):
    full, split, fat = tmp_path / "full", tmp_path / "split", tmp_path / "fat"
    vau_cli("train", *LORA, "trainer.max_steps=6", f"run.dir={full}")
    vau_cli("train", *LORA, "trainer.max_steps=3", f"run.dir={split}")
    vau_cli("train", *LORA, "trainer.max_steps=3", "ckpt.frozen=true", f"run.dir={fat}")

    lean, whole = _state(split, 3), _state(fat, 3)
    assert lean and all("lora_" in k for k in lean)  # only the adapter trains
    assert set(lean) < set(whole) and any("lora_" not in k for k in whole)
    for k, v in lean.items():
        assert torch.equal(v, whole[k]), k
    last = split / "checkpoints" / "last.ckpt"
    assert last.is_symlink() and os.readlink(last) == "step=000003.ckpt"

    vau_cli("train", *LORA, "trainer.max_steps=6", f"run.dir={split}", "resume=auto")
    a, b = read_losses(full / "metrics.csv"), read_losses(split / "metrics.csv")
    assert sorted(a) == sorted(b) == list(range(6))
    assert all(abs(a[s] - b[s]) <= 1e-6 for s in range(6)), (a, b)
    assert len({round(v, 6) for v in a.values()}) > 1
    assert os.readlink(split / "checkpoints" / "last.ckpt") == "step=000006.ckpt"


def test_best_export_follows_the_monitored_metric(vau_cli, tmp_path):
    run = tmp_path / "best"
    vau_cli("train", "experiment=tiny/lm", "logger.wandb.mode=disabled", "trainer.progress_bar=none",
            "trainer.max_steps=12", "trainer.val_check_interval=3", "trainer.check_val_every_n_epoch=null",
            "ckpt.monitor=val/loss", "ckpt.mode=max", f"run.dir={run}")
    with open(run / "metrics.csv", newline="") as f:
        vals = [(int(r["step"]), float(r["val/loss"])) for r in csv.DictReader(f) if r.get("val/loss")]
    assert len(vals) == 4
    step, value = max(vals, key=lambda sv: sv[1])  # mode=max: the worst loss, so not simply the last step
    state = json.loads((run / "best" / "state.json").read_text())
    assert state["monitor"] == "val/loss" and state["value"] == pytest.approx(value)
    assert state["global_step"] - 1 == step  # metrics.csv numbers the row of global step s as s - 1
    assert (run / "best" / "model.safetensors").is_file()
