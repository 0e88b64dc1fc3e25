"""Reading shards sample by sample, reporting each broken sample exactly once.

webdataset's ``tarfile_to_samples`` calls its handler per *exception*: a truncated member
triggers it twice (read, then iteration) and still yields the partial sample, and a tar cut
inside a header ends the shard silently. Counting bad samples exactly needs a sample-level
view, so this small reader groups members itself (same ``<key>.<ext>`` convention, key split
at the first dot of the base name) and yields a :class:`BadSample` for every sample it
cannot read whole.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union


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


def _cut_header_key(f: Any, offset: int) -> Optional[str]:
    """Key of the member whose header starts at ``offset`` but is cut short, if readable.

    Returns ``""`` when only zero padding follows (a clean end), the key when the header's
    name field survived, else None (unknown).
    """
    try:
        f.seek(offset)
    except (OSError, ValueError):
        return None
    # A well-formed end is zero blocks (end marker + record padding, < 10 KiB).
    rest = f.read(1 << 16)
    if not rest.strip(b"\0"):
        return ""
    name, nul, _ = rest[:100].partition(b"\0")
    if (not nul and len(rest) < 100) or name.startswith(b"././@"):  # cut name, or a PAX/GNU extension header
        return None
    return split_name(name.decode("utf-8", "replace"))[0]


def iter_shard(url: Union[str, os.PathLike]) -> Iterator[Union[dict, BadSample]]:
    """Yields the samples of one tar shard, in order.

    Args:
        url: Path of a ``.tar`` file (or a ``pipe:`` command, as webdataset's ``gopen`` opens).

    Yields:
        ``{"__key__", "__url__", <ext>: bytes, ...}`` per complete sample, or a
        :class:`BadSample` for a sample cut short by a truncated/corrupt tar, or for a
        shard that cannot be opened at all.
    """
    url = str(url)
    try:
        if url.startswith("pipe:"):
            import webdataset as wds

            f = wds.gopen(url, "rb")
        else:
            f = open(url, "rb")
    except OSError as e:
        yield BadSample(url, "?", f"cannot open shard: {e.strerror or e}")
        return
    current: dict = {}
    offset = 0  # end of the last member read whole
    with f:
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
                        continue
                    key, ext = split_name(info.name)
                    if current and key != current["__key__"]:
                        yield current
                        current = {}
                    if not current:
                        current = {"__key__": key, "__url__": url}
                    if ext in current:
                        raise tarfile.TarError(f"duplicate member {info.name}")
                    current[ext] = tar.extractfile(info).read()
                    # extractfile/read keep every TarInfo otherwise: memory grows with the shard.
                    tar.members = []
                    offset = tar.offset
        except (tarfile.TarError, EOFError, OSError) as e:
            # Cut (or corrupt) inside a member's data: that member's sample is the lost one.
            yield BadSample(url, current.get("__key__", "?"), f"corrupt or truncated tar: {' '.join(str(e).split())}")
            return
        # tarfile ends quietly or with an error at a header cut short; which sample it
        # belonged to decides whether the sample in progress is whole.
        cut = _cut_header_key(f, offset)
        if cut == "":
            if current:
                yield current
        elif cut is not None and current and cut != current["__key__"]:
            yield current
            yield BadSample(url, cut, f"truncated tar: header of a {cut} member cut at byte {offset}")
        else:
            yield BadSample(url, current.get("__key__", cut or "?"), f"truncated tar: a member header cut at byte {offset}")
