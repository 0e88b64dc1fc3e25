"""Shard specs -> lists of shard files, and data-set sizes from ``sizes.json``."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Optional, Sequence, Union

from webdataset.shardlists import expand_urls

from vau.data.writer import SIZES_FILE


def expand_shards(spec: Union[str, Sequence[str]]) -> list[str]:
    """Expands a shard spec into shard paths.

    Args:
        spec: A brace pattern (``d/s-{000000..000009}.tar``, expanded by webdataset's
            ``expand_urls``, which also splits on ``::``), a glob (``d/s-*.tar``), a folder
            (all its ``*.tar``), or a list of these. ``~`` and ``$VARS`` are expanded.

    Returns:
        Shard paths in spec order (globs and folders sorted).

    Raises:
        FileNotFoundError: A part of the spec matches no shard (names the part).
    """
    parts = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for part in parts:
        for url in expand_urls(os.path.expandvars(os.path.expanduser(part))):
            if url.startswith("pipe:"):
                out.append(url)
            elif os.path.isdir(url):
                found = sorted(glob.glob(os.path.join(glob.escape(url), "*.tar")))
                if not found:
                    raise FileNotFoundError(f"no .tar shards in folder {url}")
                out.extend(found)
            elif glob.has_magic(url):
                found = sorted(glob.glob(url))
                if not found:
                    raise FileNotFoundError(f"no shards match {url!r} (run `vau synth` for the demo data?)")
                out.extend(found)
            elif os.path.isfile(url):
                out.append(url)
            else:
                raise FileNotFoundError(f"shard not found: {url}")
    return out


def shard_sizes(urls: Sequence[str]) -> Optional[list[int]]:
    """Sample count of each shard from the ``sizes.json`` beside it; None if any is unknown."""
    cache: dict[Path, dict] = {}
    sizes = []
    for url in urls:
        p = Path(url)
        if p.parent not in cache:
            f = p.parent / SIZES_FILE
            try:
                cache[p.parent] = json.loads(f.read_text()) if f.is_file() else {}
            except (OSError, json.JSONDecodeError):
                cache[p.parent] = {}
        n = cache[p.parent].get(p.name)
        if not isinstance(n, int):
            return None
        sizes.append(n)
    return sizes
