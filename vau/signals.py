"""Stop signals of a run: SLURM's USR1 warning, SIGTERM from ``scancel`` or a node drain.

The main process owns the stop. From the start of ``vau train`` a recorder notes the signal
(a handler must do no work: it runs between any two bytecodes); the trainer stops every rank
at one step boundary with a checkpoint (``vau.lit.preemption``). DataLoader workers ignore
both signals: ``scancel`` signals the whole process group, and a worker killed first would
crash the run before its stop checkpoint; a worker hung at exit is killed instead.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # noqa: F401 - its exit hook must be registered before ours
import os
import signal
import threading
from typing import Any, Optional

SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class RunStopped(RuntimeError):
    """A run ended early on a stop signal: it checkpointed, wrote no export and is not finished."""

    def __init__(self, signum: int, step: int, requeued: bool) -> None:
        name = signal.Signals(signum).name
        then = "requeued" if requeued else "resume with resume=auto"
        super().__init__(f"stopped by {name} at step {step} with a checkpoint, no export ({then})")
        self.signum, self.step, self.requeued = signum, step, requeued

    @property
    def exit_code(self) -> int:
        """128 + signal number, as a shell reports a process ended by that signal."""
        return 128 + self.signum


class StopRecorder:
    """Records the first USR1/TERM this process receives; installed once per run."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def _record(self, signum: int, frame: Any) -> None:
        if self.received is None or signum == signal.SIGUSR1:
            self.received = signum  # USR1 wins: the run should be requeued, not just stopped

    def install(self) -> bool:
        """Starts recording (main thread only); False when already installed or off the main thread."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return False
        self.received = None
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._record)
        return True

    def consume(self) -> Optional[int]:
        """The signal recorded so far (or None), forgotten: the next run in this process starts clean."""
        signum, self.received = self.received, None
        return signum

    def restore(self) -> None:
        """Puts back the handlers that were there before :meth:`install`."""
        for sig, prev in self._previous.items():
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        self._previous = {}


STOP = StopRecorder()
"""The process's recorder (one home: the trainer callbacks and the CLI read it)."""


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: workers leave USR1/TERM to the main process.

    The disposition is process-wide, so threads a library restarts in the child at fork
    (OpenTelemetry's exporters, say) cannot take the signal either.
    """
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if os.environ.get("PL_SEED_WORKERS") == "1":
        # Lightning adds its worker seeding only to loaders without a worker_init_fn.
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


def end_deaf_workers() -> None:
    """SIGKILLs daemonic children (DataLoader workers) still alive; run at exit of the main process.

    Workers ignore SIGTERM, so multiprocessing's own exit hook, which ``terminate()``s its
    daemonic children and then joins them without a timeout, would wait forever for one hung in
    a read. By then the DataLoader has shut its workers down; any still alive is stuck.
    """
    for child in multiprocessing.active_children():
        if child.daemon and child.is_alive():
            child.kill()
            child.join(timeout=5)


# Registered after multiprocessing.util's exit hook (imported above), so it runs first (LIFO).
atexit.register(end_deaf_workers)
