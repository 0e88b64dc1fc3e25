"""Writing shard sets from a manifest: validated samples in, plain tar shards out.

Every shard is written under a temp name and renamed when complete, so a crash never leaves
a half-written ``.tar`` that a reader would take for a shard. Rejected manifest lines go to
``<prefix>rejects.jsonl`` (line, key, reason) beside the shards (``train-%06d.tar`` ->
``train-rejects.jsonl``); ``sizes.json`` records the sample
count of each shard (the file open_clip-style readers use for the data-set size).
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from vau.data.shards.manifest import Sample, build_sample, iter_manifest
from vau.io import atomic_write_text, current_umask
from vau.progress import interactive, track
from vau.errors import ConfigError, ExistsError, NotFoundError

SIZES_FILE = "sizes.json"
REJECTS_SUFFIX = "rejects.jsonl"


@dataclass
class WriteSummary:
    """What ``write_shards`` did."""

    samples: int = 0
    """Samples written."""
    rejected: int = 0
    """Manifest lines rejected (see rejects.jsonl)."""
    shards: list[str] = field(default_factory=list)
    """Shard files written, in order."""
    nbytes: int = 0
    """Payload bytes written."""


def _check_pattern(pattern: str) -> None:
    if len(re.findall(r"%0?\d*d", pattern)) != 1 or pattern.count("%") != 1:
        raise ConfigError(f"--out {pattern!r}: needs exactly one %d-style shard number, e.g. 'dir/name-%06d.tar'")
    if not pattern.endswith(".tar"):
        raise ConfigError(f"--out {pattern!r}: shard names must end in .tar")


def _existing(pattern: str) -> list[str]:
    return sorted(glob.glob(glob.escape(pattern.split("%")[0]) + "*" + glob.escape(pattern.rsplit("d", 1)[-1])))


def rejects_file(pattern: str) -> Path:
    """Where ``write_shards`` records the rejects of the shard set ``pattern``."""
    return Path(pattern.split("%")[0] + REJECTS_SUFFIX)


class ShardWriter:
    """Writes samples into numbered tar shards, starting a new one at maxcount/maxsize.

    Unlike ``webdataset.ShardWriter`` (which writes straight to the final name), each shard is
    a temp file until closed, then renamed into place.
    """

    def __init__(self, pattern: str, maxcount: int = 1000, maxsize: int = 3 << 30, start: int = 0) -> None:
        _check_pattern(pattern)
        if maxcount < 1 or maxsize < 1:
            raise ConfigError(f"maxcount and maxsize must be >= 1, got {maxcount}, {maxsize}")
        self.pattern, self.maxcount, self.maxsize = pattern, maxcount, maxsize
        self.index = start
        self.sizes: dict[str, int] = {}
        self._tar = None
        self._file = None
        self._tmp: Optional[Path] = None
        self._count = 0
        self._bytes = 0

    def _open(self) -> None:
        import webdataset as wds

        final = Path(self.pattern % self.index)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        self._file = open(self._tmp, "wb")
        # mtime fixed: the same samples give byte-identical shards (reproducible data sets);
        # an int, since a float mtime makes tarfile add a PAX header to every member.
        self._tar = wds.TarWriter(self._file, encoder=False, mtime=0)
        self._count = self._bytes = 0

    def _close_current(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = Path(self.pattern % self.index)
        os.chmod(self._tmp, 0o666 & ~current_umask())
        os.replace(self._tmp, final)
        self.sizes[final.name] = self._count
        self._tar = self._file = self._tmp = None
        self.index += 1

    def write(self, sample: Sample) -> None:
        """Appends one sample, rolling over to a new shard when the current one is full."""
        if self._tar is not None and (self._count >= self.maxcount or self._bytes + sample.nbytes > self.maxsize):
            self._close_current()
        if self._tar is None:
            self._open()
        self._tar.write({"__key__": sample.key, **sample.members})
        self._count += 1
        self._bytes += sample.nbytes

    def close(self) -> None:
        """Finishes the last shard."""
        self._close_current()

    def abort(self) -> None:
        """Drops the shard in progress (its temp file); finished shards stay."""
        if self._tar is not None:
            try:
                self._tar.close()  # else tarfile's finaliser writes into the closed file later
            finally:
                self._file.close()
                self._tmp.unlink(missing_ok=True)
            self._tar = self._file = self._tmp = None


def write_shards(
    manifest: Union[str, Path],
    pattern: str,
    *,
    maxcount: int = 1000,
    maxsize: int = 3 << 30,
    root: Union[str, Path, None] = None,
    check_media: bool = True,
    overwrite: bool = False,
    progress: Optional[bool] = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> WriteSummary:
    """Validates a manifest's samples and writes them as tar shards.

    Args:
        manifest: JSONL manifest (see ``vau.data.shards.manifest``).
        pattern: Shard path with one ``%d`` field, e.g. ``out/train-%06d.tar``.
        maxcount: Samples per shard at most.
        maxsize: Payload bytes per shard at most (a larger single sample gets its own shard).
        root: Folder relative media paths are resolved against (default: the manifest's).
        check_media: Decode every media file once to reject unreadable ones.
        overwrite: Replace an existing shard set with this pattern (stale extra shards of
            the old set are deleted after the new set is complete).
        progress: Show a progress bar (default: when stderr is a terminal).
        log: Where one-line reject messages go.

    Returns:
        Counts and shard names.

    Raises:
        FileExistsError: Shards with this pattern exist and ``overwrite`` is False.
        FileNotFoundError: The manifest does not exist.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise NotFoundError(f"manifest not found: {manifest}")
    _check_pattern(pattern)
    old = _existing(pattern)
    if old and not overwrite:
        raise ExistsError(f"{len(old)} shard(s) already match {pattern!r} (e.g. {old[0]}); pass --overwrite")
    base = Path(root) if root is not None else manifest.parent
    out_dir = Path(pattern % 0).parent
    if progress is None:
        progress = interactive()
    total = None
    if progress:  # a second pass over the manifest only to size the bar
        with open(manifest, encoding="utf-8") as f:
            total = sum(1 for line in f if line.strip())
    summary = WriteSummary()
    rejects: list[dict] = []
    seen: set[str] = set()
    writer = ShardWriter(pattern, maxcount=maxcount, maxsize=maxsize)
    try:
        for lineno, entry in track(iter_manifest(manifest), total, "writing shards", progress):
            key = entry.get("key") if isinstance(entry, dict) else None
            try:
                if isinstance(entry, ValueError):
                    raise entry
                sample = build_sample(entry, base, check_media=check_media, lineno=lineno)
                if sample.key in seen:
                    raise ValueError(f"duplicate key {sample.key!r}")
            except ValueError as e:
                reason = " ".join(str(e).split())
                rejects.append({"line": lineno, "key": key, "reason": reason})
                log(f"{manifest}:{lineno}: rejected: {reason}")
                continue
            seen.add(sample.key)
            writer.write(sample)
            summary.samples += 1
            summary.nbytes += sample.nbytes
        writer.close()
    except BaseException:
        writer.abort()
        raise
    summary.rejected = len(rejects)
    summary.shards = [str(out_dir / name) for name in writer.sizes]
    for stale in set(old) - set(summary.shards):
        os.unlink(stale)
    sizes_path = out_dir / SIZES_FILE
    sizes = json.loads(sizes_path.read_text()) if sizes_path.is_file() else {}
    sizes = {k: v for k, v in sizes.items() if (out_dir / k).is_file()}
    sizes.update(writer.sizes)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sizes_path, json.dumps(dict(sorted(sizes.items())), indent=1) + "\n")
    rejects_path = rejects_file(pattern)
    if rejects:
        atomic_write_text(rejects_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
    elif rejects_path.is_file() and overwrite:
        rejects_path.unlink()
    return summary
