"""`vau train` refuses bad settings, incompatible resumes, full and read-only disks in one line.

Each case runs the real command line; the error must be one ``vau train: ...`` line without a
traceback, exit 2, and (where the check can be made first) leave the run dir untouched.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import read_losses

TINY = ["experiment=tiny/lm", "logger.wandb.mode=disabled", "trainer.progress_bar=none"]


def _train(*args: str) -> None:
    """A finished run to start from, trained in this process (the case under test runs the CLI)."""
    from vau.config import compose
    from vau.train import train

    train(compose([*TINY, *args]))


def _one_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vau train: "), proc.stderr[-3000:]
    for n in needles:
        assert n in last, last
    return last


@pytest.fixture
def in_process(tmp_path, monkeypatch, capsys):
    """`vau.cli.main` in this process (the checks before any model is built need no subprocess)."""
    from vau.cli import main

    monkeypatch.setenv("VAU_RUNS", str(tmp_path / "runs"))

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        rc = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out.out, out.err)

    return run


@pytest.mark.parametrize("override, needle", [
    ("data.batch_size=0", "data.batch_size=0: expected a positive integer"),
    ("ckpt.every_n_steps=0", "ckpt.every_n_steps=0: expected a positive integer"),
    ("ckpt.every_n_steps=-5", "ckpt.every_n_steps=-5"),
    ("init_from=/nonexistent/export", "init_from=/nonexistent/export: no model.safetensors"),
])
def test_bad_values_fail_before_the_run_dir_exists(in_process, tmp_path, override, needle):
    run = tmp_path / "run"
    proc = in_process("train", *TINY, override, f"run.dir={run}")
    assert proc.stderr.strip().count("\n") == 0, proc.stderr  # exactly one line
    _one_line(proc, needle)
    assert not run.exists()


def test_missing_data_root_is_named(in_process, tmp_path):
    run = tmp_path / "run"
    proc = in_process("train", "experiment=tiny/lm_text", f"data.root={tmp_path / 'nodata'}", f"run.dir={run}",
                      "logger.wandb.mode=disabled")
    _one_line(proc, f"data.root={tmp_path / 'nodata'}: no such folder")
    assert not run.exists()


def test_frames_beyond_the_temporal_table_are_refused(in_process, tmp_path):
    proc = in_process("train", "experiment=tiny/anomshield_stage3", "data.decode.frames=64", f"run.dir={tmp_path}/r")
    _one_line(proc, "data.decode.frames=64 exceeds model.max_frames=")


def test_resume_after_a_model_change_touches_nothing(vau_cli, tmp_path):
    run = tmp_path / "run"
    _train("trainer.max_steps=2", f"run.dir={run}")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    proc = vau_cli("train", *TINY, "trainer.max_steps=4", "model.llm.hidden_size=48", "resume=auto",
                   f"run.dir={run}", check=False)
    _one_line(proc, "does not fit this model", "shape mismatch")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert not list(run.glob("config.prev-*"))


def test_truncated_newest_checkpoint_falls_back_to_the_intact_one(vau_cli, tmp_path):
    run = tmp_path / "run"
    _train("trainer.max_steps=4", "ckpt.every_n_steps=2", f"run.dir={run}")
    for name in ("last.ckpt", "step=000004.ckpt"):
        f = run / "checkpoints" / name
        f.write_bytes(f.read_bytes()[:1000])  # a write cut short
    proc = vau_cli("train", *TINY, "trainer.max_steps=6", "ckpt.every_n_steps=2", "resume=auto", f"run.dir={run}")
    assert "skipping unreadable checkpoint" in proc.stderr and "step=000002.ckpt" in proc.stdout + proc.stderr
    assert sorted(read_losses(run / "metrics.csv")) == list(range(6))


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KiB tmpfs (room for the config and metrics, not for a checkpoint); needs root."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_says_so_in_one_line(vau_cli, small_disk):
    run = small_disk / "run"
    proc = vau_cli("train", *TINY, "trainer.max_steps=3", "model.llm.hidden_size=128", f"run.dir={run}", check=False)
    last = _one_line(proc, "No space left on device")
    assert "cannot write checkpoint" in last
    assert not (run / "export").exists()
    assert not [p for p in run.rglob(".*") if p.name.endswith(".tmp")]  # the half-written temp file is gone


def test_read_only_run_dir_is_named(vau_cli, small_disk):
    run = small_disk / "run"
    run.mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    proc = vau_cli("train", *TINY, f"run.dir={run}", check=False)
    _one_line(proc, f"run.dir={run}: not writable")


def test_stale_temp_files_of_a_killed_write_are_removed(vau_cli, tmp_path):
    run = tmp_path / "run"
    _train("trainer.max_steps=2", f"run.dir={run}")
    stale = [run / "checkpoints" / ".last.ckpt.ab12cd34.tmp", run / ".metrics.csv.zz99yy88.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    (run / ".export.k2j3h4l5").mkdir()
    keep = run / ".keepme"
    keep.write_text("user file")
    vau_cli("train", *TINY, "trainer.max_steps=3", "resume=auto", f"run.dir={run}")
    assert not any(p.exists() for p in stale) and not (run / ".export.k2j3h4l5").exists()
    assert keep.read_text() == "user file"
    assert Path(run / "export" / "model.safetensors").is_file()
