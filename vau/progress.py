"""Progress bars for command-line tools (rich), shown only when asked or on a terminal."""

from __future__ import annotations

import sys
from typing import Iterable, Optional, TypeVar

T = TypeVar("T")


def interactive() -> bool:
    """True when both output streams are a terminal: the one test for showing progress bars
    (a log file under sbatch, or CI, gets none)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def track(items: Iterable[T], total: Optional[int], description: str, enabled: Optional[bool] = None) -> Iterable[T]:
    """Wraps ``items`` in a transient rich progress bar.

    Args:
        items: What to iterate.
        total: Number of items (None if unknown).
        description: Label of the bar.
        enabled: Show it; None = only on a terminal (:func:`interactive`).
    """
    if enabled is None:
        enabled = interactive()
    if not enabled:
        return items
    from rich.progress import track as rich_track

    return rich_track(items, total=total, description=description, transient=True)
