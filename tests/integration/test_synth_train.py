"""The embedded default end to end: `vau synth` -> `vau shards inspect` -> `vau train experiment=tiny/lm_text`."""

from __future__ import annotations

from conftest import read_losses


def test_synth_inspect_train(vau_cli, tmp_path):
    data = tmp_path / "data"
    vau_cli("synth", "--out", str(data), "--videos", "6", "--images", "6")
    proc = vau_cli("shards", "inspect", str(data / "synth" / "shards" / "videos-train-*.tar"))
    assert "0 bad" in proc.stdout and "mp4: " in proc.stdout and "anomaly: " in proc.stdout
    run = tmp_path / "run"
    vau_cli("train", "experiment=tiny/lm_text", f"data.root={data}", f"run.dir={run}", "trainer.max_steps=8",
            "trainer.val_check_interval=4", "logger.wandb.mode=disabled", "trainer.progress_bar=none")
    losses = read_losses(run / "metrics.csv")
    assert sorted(losses) == list(range(8))
    assert read_losses(run / "metrics.csv", "val/loss")  # validation read the val shards
    assert read_losses(run / "metrics.csv", "data/bad_samples_step")[7] == 0.0
