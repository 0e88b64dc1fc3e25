"""The project's error type: a user-facing problem told in one line (no traceback).

``vau`` commands print ``vau <command>: <message>`` and exit 2 for any :class:`VauError`
(and for the ValueError/KeyError/OSError families listed in ``vau.cli``).
"""

from __future__ import annotations


class VauError(Exception):
    """A problem the user can fix, described in one line (what, where, what was expected)."""


class ConfigError(VauError, ValueError):
    """A config problem, described in one line (key, value, source, expectation)."""


class DataError(VauError):
    """Training data that cannot carry a run (too many bad samples, none readable)."""


class RunDirError(VauError):
    """A run dir that cannot be used (incompatible resume, not writable, disk full)."""
