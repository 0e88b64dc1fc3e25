"""Exact resume at every stop point of a 3-epoch shard-fed run, with 2 and 3 DataLoader workers.

The run: 16 samples per epoch, batch 4 -> 4 batches per epoch, 12 steps in 3 epochs. Each
step's checkpoint (every_n_steps=1) is resumed on its own: step 4 and 8 are an epoch's last
batch, steps 1-2 / 5-6 / 9-10 fall in the first batches of an epoch, where some workers have
not yet delivered a batch. Every resumed loss curve must equal the uninterrupted one, and the
resumed metrics.csv must hold each step once (rows of the lost segment dropped, none missing).
Stops by a real signal (the stop path: checkpoint, no export, RunStopped) are checked at an
epoch's last batch and an epoch's first batch.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import lightning as L
import pytest

from conftest import read_losses

sys.path.insert(0, str(Path(__file__).parent))
from test_resume import _caption_shards  # noqa: E402

pytestmark = pytest.mark.slow  # over ~30 s on 2 cores: `pytest -m "not slow"` leaves it out

STEPS = 12  # 3 epochs of 4 batches


def _cfg(data: Path, run: Path, workers: int, *extra: str):
    from vau.config import compose

    return compose(["experiment=tiny/lm_text", f"data.root={data}", f"data.num_workers={workers}",
                    "data.samples_per_epoch=16", f"trainer.max_steps={STEPS}", f"optim.total_steps={STEPS}",
                    "trainer.val_check_interval=100", "ckpt.every_n_steps=1", f"ckpt.keep={STEPS}",
                    "logger.wandb.mode=disabled", "trainer.progress_bar=none", f"run.dir={run}", *extra])


def _steps(metrics: Path) -> list[int]:
    import csv

    with open(metrics, newline="") as f:
        return sorted(int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    _caption_shards(root)
    return root


@pytest.fixture(scope="module", params=[2, 3], ids=["2workers", "3workers"])
def full_run(request, data, tmp_path_factory):
    from vau.train import train

    run = tmp_path_factory.mktemp(f"full{request.param}")
    train(_cfg(data, run, request.param))
    losses = read_losses(run / "metrics.csv")
    assert sorted(losses) == list(range(STEPS))
    assert len({round(v, 5) for v in losses.values()}) > STEPS // 2  # a curve, not a constant
    return request.param, run, losses


@pytest.mark.parametrize("stop", range(1, STEPS))
def test_resume_from_every_step_is_exact(data, full_run, stop, tmp_path):
    from vau.train import train

    workers, full, want = full_run
    cut = tmp_path / "cut"
    (cut / "checkpoints").mkdir(parents=True)
    shutil.copy(full / "checkpoints" / f"step={stop:06d}.ckpt", cut / "checkpoints")
    # The interrupted run's metrics.csv: every row up to the kill, which came after the
    # checkpoint of `stop` and before its own step row reached the file.
    _truncate(full / "metrics.csv", cut / "metrics.csv", stop - 1)
    train(_cfg(data, cut, workers, "resume=auto"))
    got = read_losses(cut / "metrics.csv")
    assert _steps(cut / "metrics.csv") == list(range(STEPS)), "each step's row exactly once"
    diff = max(abs(got[s] - want[s]) for s in range(STEPS))
    assert diff <= 1e-6, f"resumed at step {stop} with {workers} workers: max loss diff {diff}"
    assert (cut / "export" / "model.safetensors").is_file()


def _truncate(src: Path, dst: Path, upto: int) -> None:
    """The metrics.csv of a run killed after the checkpoint of step ``upto + 1``: rows of steps < ``upto``.

    The checkpointed batch's own row (step ``upto``) is logged only after the save, so the
    kill lost it; the checkpoint carries it.
    """
    import csv

    with open(src, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if int(r["step"]) < upto]
        fields = reader.fieldnames
    with open(dst, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


class _SignalAt(L.Callback):
    """Sends ``signum`` to this process at the end of optimizer step ``step`` (a scancel's arrival)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step - 1:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("stop", [4, 5])
def test_signal_stop_checkpoints_exports_nothing_and_resumes_exactly(data, full_run, stop, tmp_path):
    from vau.signals import RunStopped
    from vau.train import train

    workers, full, want = full_run
    cut = tmp_path / "cut"
    with pytest.raises(RunStopped) as e:
        train(_cfg(data, cut, workers), callbacks=(_SignalAt(stop, signal.SIGTERM),))
    assert e.value.step == stop and e.value.exit_code == 128 + signal.SIGTERM
    assert not (cut / "export").exists(), "a stopped run must not look finished"
    assert (cut / "checkpoints" / f"step={stop:06d}.ckpt").is_file()
    assert _steps(cut / "metrics.csv") == list(range(stop))
    train(_cfg(data, cut, workers, "resume=auto"))
    got = read_losses(cut / "metrics.csv")
    assert _steps(cut / "metrics.csv") == list(range(STEPS))
    assert max(abs(got[s] - want[s]) for s in range(STEPS)) <= 1e-6
    assert (cut / "export" / "model.safetensors").is_file()
