"""DataLoader workers drop stop signals from the job (scancel) but obey their parent's terminate()."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import torch
from torch.utils.data import DataLoader, IterableDataset

from vau.signals import ignore_stop_signals


class _HangsAfterOne(IterableDataset):
    """Yields its worker's pid once, then hangs as a stalled shard read would."""

    def __iter__(self):
        yield torch.tensor(os.getpid())
        time.sleep(600)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed but unreaped child is a zombie: dead for this purpose.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def test_worker_drops_foreign_stop_signals_and_obeys_parent_terminate():
    loader = DataLoader(_HangsAfterOne(), batch_size=None, num_workers=1, worker_init_fn=ignore_stop_signals)
    it = iter(loader)
    pid = int(next(it))
    worker = it._workers[0]
    assert worker.pid == pid
    # Another process (as slurmstepd for scancel) signals the worker: it keeps running.
    for sig in ("TERM", "USR1"):
        subprocess.run(["kill", f"-{sig}", str(pid)], check=True)
    time.sleep(0.5)
    assert _alive(pid), "a worker must leave the job's stop signals to the main process"
    # The loader's shutdown joins, then terminate()s a worker that does not finish: it must end.
    start = time.monotonic()
    try:
        it._shutdown_workers()
        worker.join(timeout=10)
        assert not worker.is_alive(), "a hung worker deaf to its parent's SIGTERM would hang the run's exit"
        assert worker.exitcode == -signal.SIGTERM
        assert time.monotonic() - start < 30
    finally:
        if worker.is_alive():  # else multiprocessing's exit hook would wait for it forever
            os.kill(pid, signal.SIGKILL)
