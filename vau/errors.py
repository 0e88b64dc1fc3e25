"""The project's error type: a user-facing problem told in one line (no traceback).

``vau`` commands print ``vau <command>: <message>`` and exit 2 for any :class:`VauError` and
for a disk-full/read-only/permission OSError; everything else is a bug and keeps its traceback
(``VAU_DEBUG=1`` shows one for user errors too). Each subclass also derives from the builtin
a caller would catch (ValueError, KeyError, FileNotFoundError, FileExistsError).
"""

from __future__ import annotations

import errno
import re
from typing import Optional

USER_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT})
"""OS errors the user fixes (disk full, read-only file system, permissions, quota): told in one line."""

_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")  # how Rust libraries (safetensors) report errno


class VauError(Exception):
    """A problem the user can fix, described in one line (what, where, what was expected)."""


class ConfigError(VauError, ValueError):
    """A config problem, described in one line (key, value, source, expectation)."""


class NotFoundError(VauError, FileNotFoundError):
    """A file or folder the user named is missing, or is not the kind expected."""


class ExistsError(VauError, FileExistsError):
    """Output the command would overwrite without being told to."""


class UnknownNameError(VauError, KeyError):
    """A name the user gave (registry choice, config key) that does not exist; lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # KeyError would quote the message


class BadInputError(VauError, ValueError):
    """An input file (predictions, references, questions) that does not hold what the command needs."""


class DataError(VauError):
    """Training data that cannot carry a run (too many bad samples, none readable)."""


class RunDirError(VauError):
    """A run dir that cannot be used (incompatible resume, not writable, disk full)."""


def user_os_error(e: BaseException) -> Optional[OSError]:
    """The disk-full/read-only/permission OSError behind ``e`` (its cause/context chain), if any.

    torch.save reports a full disk as ``RuntimeError: ... unexpected pos`` with the OSError only
    as its context, and safetensors as text; both should reach the user as "No space left".
    """
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in USER_ERRNOS:
            return e
        m = _OS_ERROR_IN_TEXT.search(str(e))
        if m and int(m.group(1)) in USER_ERRNOS:
            code = int(m.group(1))
            return OSError(code, os_strerror(code))
        e = e.__cause__ or e.__context__
    return None


def os_strerror(code: int) -> str:
    """The C library's text for ``code`` (``No space left on device`` for ENOSPC)."""
    import os

    return os.strerror(code)
