"""DataLoader workers ignore the job's stop signals (scancel), yet a hung one cannot hang the exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent("""
    import os, subprocess, sys, time
    import torch
    from torch.utils.data import DataLoader, IterableDataset
    from vau.signals import ignore_stop_signals

    class HangsAfterOne(IterableDataset):
        # Yields its worker's pid once, then hangs as a stalled shard read would.
        def __iter__(self):
            yield torch.tensor(os.getpid())
            time.sleep(600)

    loader = DataLoader(HangsAfterOne(), batch_size=None, num_workers=1, worker_init_fn=ignore_stop_signals)
    it = iter(loader)
    pid = int(next(it))
    print(pid, flush=True)
    # Another process (as slurmstepd for scancel) signals the worker: it keeps running.
    for sig in ("TERM", "USR1"):
        subprocess.run(["kill", f"-{sig}", str(pid)], check=True)
    time.sleep(0.5)
    os.kill(pid, 0)
    with open(f"/proc/{pid}/stat") as f:
        assert f.read().split(") ")[1][0] != "Z", "the worker died of a stop signal"
    print("alive", flush=True)
    sys.exit(0)  # the worker is still hung in its read
""")


def test_worker_ignores_stop_signals_and_a_hung_one_does_not_hang_the_exit():
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pid, state = proc.stdout.split()
    assert state == "alive"
    # multiprocessing's exit hook would wait forever for a worker deaf to SIGTERM.
    assert time.monotonic() - start < 60
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z"
