"""Re-using a run's config does what the README says: a new run under a new name, a clear
"finished at step N" for a finished run, the changed keys printed before a resume writes
anything, fixed keys refused; `vau config diff` of two runs."""

from __future__ import annotations

import json

import yaml

from conftest import read_losses, run_vau

TINY = ["experiment=tiny/lm", "logger.wandb.mode=disabled", "trainer.progress_bar=none", "trainer.max_steps=2"]


def _files(run):
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_train_needs_an_experiment_or_a_config(tmp_path):
    proc = run_vau(tmp_path, "train", "trainer.max_steps=1", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vau train: name what to train: experiment=NAME") and "tiny/lm" in last
    assert not tmp_path.joinpath("default").exists()

    saved = tmp_path / "c.yaml"
    saved.write_text("run: {name: x}\n")
    proc = run_vau(tmp_path, "train", "--config", str(saved), "experiment=tiny/lm", check=False)
    assert proc.returncode == 2 and "give one of them" in proc.stderr.strip().splitlines()[-1]


def test_a_saved_config_reruns_finishes_and_resumes_as_documented(tmp_path):
    runs = tmp_path / "runs"
    run_vau(runs, "train", *TINY, "run.name=try1")
    try1 = runs / "try1"
    saved = try1 / "config.yaml"
    assert yaml.safe_load(saved.read_text())["run"]["dir"] == "${oc.env:VAU_RUNS,runs}/${run.name}"
    assert json.loads((try1 / "export" / "state.json").read_text())["global_step"] == 2

    # --config with another run.name is a new run in that name's directory.
    run_vau(runs, "train", "--config", str(saved), "run.name=try2")
    assert (runs / "try2" / "export" / "model.safetensors").is_file()
    assert read_losses(runs / "try2" / "metrics.csv") == read_losses(try1 / "metrics.csv")  # same seed, same run

    # The finished run again with resume=auto: says so, trains nothing, writes nothing.
    before = _files(try1)
    proc = run_vau(runs, "train", "--config", str(saved), "resume=auto")
    assert "finished at step 2" in proc.stderr and "nothing to train" in proc.stderr
    assert _files(try1) == before

    # A fixed key changed on resume: refused in one line, nothing written.
    proc = run_vau(runs, "train", "--config", str(saved), "resume=auto", "trainer.max_steps=3", "optim.kind=sgd",
                   check=False)
    assert proc.returncode == 2 and "optim.kind: 'adamw' -> 'sgd'" in proc.stderr.strip().splitlines()[-1]
    assert _files(try1) == before

    # Training on: the changed keys are listed before the resume starts; the old export is moved aside.
    proc = run_vau(runs, "train", "--config", str(saved), "resume=auto", "trainer.max_steps=3")
    changed = proc.stderr.index("trainer.max_steps: 2 -> 3")
    assert changed < proc.stderr.index("resuming from")
    assert json.loads((try1 / "export" / "state.json").read_text())["global_step"] == 3
    assert (try1 / "export.step-000002" / "model.safetensors").is_file()
    assert sorted(read_losses(try1 / "metrics.csv")) == [0, 1, 2]

    proc = run_vau(runs, "config", "diff", str(try1), str(runs / "try2"), check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "run.name: 'try1' -> 'try2'" in lines and "trainer.max_steps: 3 -> 2" in lines
    assert run_vau(runs, "config", "diff", str(saved), str(saved)).stdout.strip().endswith("same config")
