"""wandb follows the site: $WANDB_MODE beats the config, online needs a key (one line), and the
offline segments of a resumed run log the global step as wandb's step, each step once
(read back from the offline ``.wandb`` files)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import read_losses, run_vau
from vau.errors import ConfigError
from vau.lit.loggers import check_wandb_login, wandb_mode
from vau.lit.wandb_files import history, segments

TINY = ["experiment=tiny/lm", "logger.wandb.mode=offline", "trainer.progress_bar=none", "run.name=w"]


def _cfg(mode):
    return OmegaConf.create({"logger": {"wandb": {"mode": mode}}})


def test_wandb_mode_env_wins_over_the_config(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode(_cfg("online")) == "online" and wandb_mode(_cfg(None)) == "offline"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode(_cfg("online")) == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # wandb's old spelling
    assert wandb_mode(_cfg("online")) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(_cfg("offline")) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ConfigError, match=r"\$WANDB_MODE='sometimes': expected offline, online, disabled"):
        wandb_mode(_cfg(None))


def test_online_without_a_key_says_how_to_log_in(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login u password p\n")
    monkeypatch.setenv("NETRC", str(netrc))
    with pytest.raises(ConfigError, match="no wandb API key for api.wandb.ai .* `wandb login`.*logger=offline"):
        check_wandb_login("online")
    check_wandb_login("offline")  # nothing needed
    netrc.write_text("machine api.wandb.ai login user password 0123456789abcdef\n")
    check_wandb_login("online")
    netrc.write_text("")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    check_wandb_login("online")

    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    proc = run_vau(tmp_path / "runs", "train", "experiment=tiny/lm", "logger=online", "trainer.max_steps=1",
                   check=False, env={"NETRC": str(netrc)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("vau train: logger.wandb.mode=online: no wandb API key")


def _steps(run_dir):
    run_id = (run_dir / "wandb" / "run_id").read_text().strip()
    files = segments(run_dir / "wandb", run_id)
    rows = [[r for r in history(f)] for f in files]
    for seg in rows:
        for r in seg:
            assert r["_step"] == r["trainer/global_step"], r
    return [[r["_step"] for r in seg] for seg in rows], rows


def test_resumed_offline_segments_log_the_global_step_once(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    runs = tmp_path / "runs"
    run_vau(runs, "train", *TINY, "trainer.max_steps=3")
    run_vau(runs, "train", *TINY, "trainer.max_steps=6", "resume=auto")
    steps, rows = _steps(runs / "w")
    assert steps == [[0, 1, 2], [3, 4, 5]]
    losses = read_losses(runs / "w" / "metrics.csv")
    assert [r["train/loss"] for seg in rows for r in seg] == pytest.approx([losses[s] for s in range(6)])


def test_a_resume_from_an_older_checkpoint_logs_no_step_twice(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    runs = tmp_path / "runs"
    run_vau(runs, "train", *TINY, "trainer.max_steps=4", "ckpt.every_n_steps=2")
    ckpts = runs / "w" / "checkpoints"
    for name in ("last.ckpt", "step=000004.ckpt"):  # as if killed before they were written
        (ckpts / name).unlink()
    run_vau(runs, "train", *TINY, "trainer.max_steps=6", "ckpt.every_n_steps=2", "resume=auto")
    steps, _ = _steps(runs / "w")
    assert steps == [[0, 1, 2, 3], [4, 5]]  # steps 2-3 were re-done, not re-logged
