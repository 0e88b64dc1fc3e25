"""Reading shards sample by sample, reporting each broken sample exactly once.

webdataset's ``tarfile_to_samples`` calls its handler per *exception*: a truncated member
triggers it twice (read, then iteration) and still yields the partial sample, and a tar cut
inside a header ends the shard silently. Counting bad samples exactly needs a sample-level
view, so this small reader groups members itself (same ``<key>.<ext>`` convention, key split
at the first dot of the base name) and yields a :class:`BadSample` for every sample it
cannot read whole.

Shards are read as forward-only streams (files, ``pipe:`` commands, HTTP bodies, fsspec
files alike): nothing here seeks, so a source that cannot seek reads to its end like a file.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional, Union

HTTP_TIMEOUT = 60.0
"""Seconds an HTTP(S) shard may stall (connect or between reads) before it counts as cut."""
PIPE_EXIT_TIMEOUT = 30.0
"""Seconds a ``pipe:`` command may run on after closing its output before it is killed."""
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class BadSample:
    """A sample that could not be read or decoded; counted and logged, never raised."""

    url: str
    """Shard it came from."""
    key: str
    """Sample key (``?`` when unknown, e.g. a corrupt header)."""
    reason: str
    """One-line reason."""


def split_name(name: str) -> tuple[str, str]:
    """``dir/abc.clip.npy`` -> (``dir/abc``, ``clip.npy``); the extension is lower-cased."""
    head, _, base = name.rpartition("/")
    key, dot, ext = base.partition(".")
    if not dot:
        return name, ""
    return (f"{head}/{key}" if head else key), ext.lower()


def _one_line(text: object) -> str:
    """``text`` with its whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())


class _Counting:
    """Forward-only view of a byte stream that counts what was read and keeps the last bytes.

    tarfile reads ahead in 10 KiB blocks, so when it stops, the bytes after the last whole
    member (where a tar ends cleanly or is cut) were partly read already; they are taken
    from the kept tail instead of seeking back, which pipes and HTTP bodies cannot do.
    """

    KEEP = 1 << 18
    """Bytes kept: far more than tarfile reads past a member (a block + a header or two)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.pos = 0  # bytes read so far
        self.eof = False  # a read returned nothing: the source is exhausted
        self._tail: deque[bytes] = deque()
        self._kept = 0

    def read(self, n: int = -1) -> bytes:
        """Reads like ``raw.read``, remembering the bytes; a cut HTTP body raises OSError like a cut file."""
        try:
            data = self.raw.read(n)
        except http.client.HTTPException as e:  # e.g. IncompleteRead: a cut body is a cut tar
            raise OSError(f"{type(e).__name__}: {_one_line(e)}") from e
        if not data:
            self.eof = self.eof or n != 0
            return b""
        self.pos += len(data)
        self._tail.append(data)
        self._kept += len(data)
        # Whole chunks are dropped (no copying); the tail stays between KEEP and KEEP + a chunk.
        while self._kept - len(self._tail[0]) >= self.KEEP:
            self._kept -= len(self._tail.popleft())
        return data

    def bytes_at(self, offset: int, n: int) -> Optional[bytes]:
        """Up to ``n`` bytes from stream position ``offset`` on (reading on as needed); None if no longer kept."""
        # tarfile may not have read a last member's padding yet; read up to it as a seek would.
        while self.pos < offset and self.read(min(offset - self.pos, 1 << 20)):
            pass
        start = self.pos - self._kept
        if offset < start:
            return None
        have = b"".join(self._tail)[offset - start : offset - start + n]
        while len(have) < n:
            more = self.read(n - len(have))
            if not more:
                break
            have += more
        return have

    def drain(self) -> None:
        """Reads (and drops) the rest of the stream."""
        while self.read(1 << 20):
            pass


class _Pipe:
    """stdout of a ``pipe:`` command (run by the shell); its exit status is checked at the end."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd
        # A file, not a pipe, for stderr: an unread stderr pipe could fill up and stall the command.
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr)

    def read(self, n: int = -1) -> bytes:
        """Reads the command's stdout."""
        return self.proc.stdout.read(n)

    def failure(self, ended: bool) -> Optional[str]:
        """Why the command failed (one line), or None; ``ended``: its output was read to the end."""
        if ended:
            try:
                self.proc.wait(timeout=PIPE_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                return f"pipe command did not exit within {PIPE_EXIT_TIMEOUT:g} s after closing its output"
        elif self.proc.poll() is None:
            return None  # stopped by the reader (a corrupt tar): not the command's fault
        rc = self.proc.returncode
        if rc == 0:
            return None
        self._stderr.seek(0)
        err = _one_line(self._stderr.read()[-400:].decode("utf-8", "replace"))
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
        return f"pipe command {how}" + (f": {err}" if err else "")

    def close(self) -> None:
        """Ends the command if it still runs and releases its pipe and stderr file."""
        if self.proc.poll() is None:
            self.proc.kill()  # the reader stopped early; closing stdout ends any children (SIGPIPE)
        self.proc.stdout.close()
        self.proc.wait()
        self._stderr.close()


def _open(url: str) -> Any:
    """A readable stream of the shard at ``url`` (see ``vau.data.shards.shardlist`` for the forms)."""
    if url.startswith("pipe:"):
        return _Pipe(url[len("pipe:"):])
    if url.startswith(("http://", "https://")):
        return urllib.request.urlopen(url, timeout=HTTP_TIMEOUT)  # noqa: S310 - http(s) only, checked above
    if _SCHEME.match(url):
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url, "rb")


def _open_error(e: Exception) -> str:
    """One-line reason a shard could not be opened."""
    if isinstance(e, urllib.error.HTTPError):
        return _one_line(e)  # "HTTP Error 404: Not Found"
    if isinstance(e, urllib.error.URLError):
        return _one_line(e.reason)
    return _one_line(getattr(e, "strerror", None) or e)


def _key(run: Union[dict, BadSample]) -> str:
    """Key of the sample being gathered."""
    return run["__key__"] if isinstance(run, dict) else run.key


def _lost(url: str, run: Union[dict, BadSample, None], cut: Optional[str], reason: str) -> BadSample:
    """The bad sample for a shard that ends inside ``run`` (the members being gathered)."""
    if isinstance(run, BadSample):
        return replace(run, reason=f"{run.reason}; {reason}")  # already bad: still one bad sample
    return BadSample(url, run["__key__"] if run else (cut or "?"), reason)


def _cut_header_key(rest: Optional[bytes]) -> Optional[str]:
    """Key of the member whose header ``rest`` (the bytes after the last whole member) starts, if readable.

    Returns ``""`` when only zero padding follows (a clean end), the key when the header's
    name field survived, else None (unknown).
    """
    if rest is None:
        return None
    # A well-formed end is zero blocks (end marker + record padding, < 10 KiB).
    if not rest.strip(b"\0"):
        return ""
    name, nul, _ = rest[:100].partition(b"\0")
    if (not nul and len(rest) < 100) or name.startswith(b"././@"):  # cut name, or a PAX/GNU extension header
        return None
    return split_name(name.decode("utf-8", "replace"))[0]


def iter_shard(url: Union[str, os.PathLike]) -> Iterator[Union[dict, BadSample]]:
    """Yields the samples of one tar shard, in order.

    Members are grouped into samples by key. A sample is a run of consecutive members with
    the same key; tar writers keep a sample's members together, so a key that comes back
    after another key's members is broken pairing. Rule: the first run of a key is the
    sample (whole or not: a decoder rejects one without its ``.json``), and every later run
    of that key in the same shard is one :class:`BadSample` ("out-of-order member: key A
    appears again after B") whose members are read but dropped. A second member with the
    same ``<key>.<ext>`` within a run makes that run one BadSample too.

    Args:
        url: Path of a ``.tar`` file, ``http(s)://`` or fsspec URL, or a ``pipe:`` command
            whose stdout is the tar (see ``vau.data.shards.shardlist``; pipes are refused there
            unless allowed).

    Yields:
        ``{"__key__", "__url__", <ext>: bytes, ...}`` per sample read whole, or a
        :class:`BadSample` for a sample cut short by a truncated/corrupt tar, an out-of-order
        or duplicate member, a shard that cannot be opened at all, or a ``pipe:`` command
        that exits non-zero.
    """
    url = str(url)
    try:
        src = _open(url)
    except (OSError, ValueError, ImportError, http.client.HTTPException) as e:  # HTTPException: e.g. a bad status line
        yield BadSample(url, "?", f"cannot open shard: {_open_error(e)}")
        return
    try:
        yield from _read(url, src)
    finally:
        src.close()


def _read(url: str, src: Any) -> Iterator[Union[dict, BadSample]]:
    """:func:`iter_shard` over an opened stream ``src``."""
    f = _Counting(src)
    seen: set[str] = set()
    run: Union[dict, BadSample, None] = None  # the sample being gathered (a BadSample: dropped)
    offset = 0  # end of the last member read whole
    clean = False
    try:
        with tarfile.open(fileobj=f, mode="r|") as tar:
            while True:
                try:
                    info = tar.next()
                except (tarfile.TarError, EOFError, OSError):
                    info = None
                if info is None:
                    break
                if not info.isreg():
                    tar.members, offset = [], tar.offset
                    continue
                key, ext = split_name(info.name)
                if run is None or key != _key(run):
                    if run is not None:
                        yield run
                    if key in seen:
                        run = BadSample(url, key, f"out-of-order member {info.name}: key {key} appears again "
                                                  f"after {_key(run) if run is not None else '?'}")
                    else:
                        seen.add(key)
                        run = {"__key__": key, "__url__": url}
                elif isinstance(run, dict) and ext in run:
                    run = BadSample(url, key, f"duplicate member {info.name}")
                member = tar.extractfile(info)
                if isinstance(run, dict):
                    run[ext] = member.read()
                else:
                    while member.read(1 << 20):  # dropped, but read: a cut inside it is still a cut
                        pass
                # extractfile/read keep every TarInfo otherwise: memory grows with the shard.
                tar.members, offset = [], tar.offset
        # tarfile ends quietly or with an error at a header cut short; which sample it
        # belonged to decides whether the sample in progress is whole.
        cut = _cut_header_key(f.bytes_at(offset, 1 << 16))
        if cut == "":
            clean = True
            tail = [run] if run is not None else []
        elif cut is not None and run is not None and cut != _key(run):
            tail = [run, BadSample(url, cut, f"truncated tar: header of a {cut} member cut at byte {offset}")]
        else:
            tail = [_lost(url, run, cut, f"truncated tar: a member header cut at byte {offset}")]
    except (tarfile.TarError, EOFError, OSError) as e:
        # Cut (or corrupt) inside a member's data: that member's sample is the lost one.
        tail = [_lost(url, run, None, f"corrupt or truncated tar: {_one_line(e)}")]
    failure = None
    if isinstance(src, _Pipe):
        if clean:
            f.drain()  # to the end, so the command is not cut off (SIGPIPE) but exits by itself
        failure = src.failure(ended=f.eof)
    if failure is not None:
        # A failed command explains a cut tar: one bad sample, with both reasons.
        if tail and isinstance(tail[-1], BadSample):
            tail[-1] = replace(tail[-1], reason=f"{failure}; {tail[-1].reason}")
        else:
            tail.append(BadSample(url, "?", failure))
    yield from tail
