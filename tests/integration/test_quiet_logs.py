"""What a run prints without a terminal (an sbatch log): plain progress lines, none of the
libraries' noise; and the rich bar's epoch without "/-2" for step-bounded runs."""

from __future__ import annotations

import re
from types import SimpleNamespace

from conftest import run_vau

NOISE = ("wandb:", "💡", "is deprecated", "`srun` command is available", "Setting accelerator",
         "IterableDataset", "Loading weights")


def test_a_run_without_a_terminal_prints_progress_lines_and_no_noise(tmp_path):
    proc = run_vau(tmp_path / "runs", "train", "experiment=tiny/lm", "logger.wandb.mode=offline",
                   "trainer.max_steps=12", "trainer.log_every_n_steps=4", env={"WANDB_MODE": ""})
    lines = proc.stderr.splitlines()
    steps = [m.groups() for m in map(re.compile(r"^vau: step (\d+)/12 \(\d+%\) \| loss \d+\.\d{4} \| lr ").match, lines)
             if m]
    assert steps == [("4",), ("8",), ("12",)], proc.stderr
    assert not [ln for ln in lines if any(n in ln for n in NOISE)], proc.stderr
    assert any(ln.startswith("vau: wandb run ") and "wandb sync --id" in ln for ln in lines)
    assert len(lines) < 15, proc.stderr


def test_rich_bar_shows_no_negative_epoch_count():
    from vau.lit.trainer import _RichBar

    bar = _RichBar()
    for max_epochs, want in ((-1, "Epoch 8"), (None, "Epoch 8"), (10, "Epoch 8/9")):
        bar._trainer = SimpleNamespace(max_epochs=max_epochs)
        assert bar._get_train_description(8).strip() == want
