"""Stop signals of a run: SLURM's USR1 warning, SIGTERM from ``scancel`` or a node drain.

The main process owns the stop. From the start of ``vau train`` a recorder notes the signal
(a handler must do no work: it runs between any two bytecodes); the trainer stops every rank
at one step boundary with a checkpoint (``vau.lit.preemption``). DataLoader workers ignore
both signals unless the parent sends them: ``scancel`` signals the whole process group, and a
worker killed first would crash the run before its stop checkpoint.
"""

from __future__ import annotations

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

    SIGTERM is ignored only when someone other than the parent sends it: the DataLoader's own
    shutdown ends a hung worker with ``terminate()`` (and so does multiprocessing at exit), and
    a worker deaf to that would hang the run's exit.
    """
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    _obey_parent_sigterm_only()
    if os.environ.get("PL_SEED_WORKERS") == "1":
        # Lightning adds its worker seeding only to loaders without a worker_init_fn.
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


def _obey_parent_sigterm_only() -> None:
    """Blocks SIGTERM and waits for it in a thread that reads the sender (``si_pid``).

    A handler cannot tell who sent a signal; ``sigwaitinfo`` can. A SIGTERM from the parent
    ends this process as SIGTERM would; one from anyone else (``scancel``, ``kill -TERM -pgid``)
    is dropped.
    """
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started later inherit it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def watch() -> None:
        while signal.sigwaitinfo({signal.SIGTERM}).si_pid != parent:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # only this thread takes it
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="vau-sigterm", daemon=True).start()
