"""Shard specs -> lists of shard URLs, and data-set sizes from ``sizes.json``.

Shard URL forms (a spec is one of these, a brace pattern of them, or several joined by ``::``):

* ``d/train-000000.tar``: a local file; also a glob (``d/train-*.tar``) or a folder (all its
  ``*.tar``). ``~`` and ``$VARS`` are expanded in every form.
* ``https://host/d/train-{000000..000009}.tar`` (or ``http://``): streamed with urllib, no
  shell. Brace patterns only: globs and folders cannot be listed over HTTP.
* ``s3://bucket/d/train-000000.tar``, ``gs://...`` or any other ``<protocol>://`` of fsspec:
  streamed through fsspec when the protocol's package is installed (s3fs for ``s3://``,
  gcsfs for ``gs://``; neither is a dependency). Without it, use ``pipe:``.
* ``pipe:<command>``: the tar is the command's stdout, e.g.
  ``pipe:aws s3 cp s3://bucket/d/train-000000.tar -`` or
  ``pipe:gcloud storage cat gs://bucket/d/train-000000.tar``. It runs a shell command from
  the config, so it is refused unless ``data.allow_pipe=true`` (``vau shards inspect
  --allow-pipe``). A command that exits non-zero is a counted bad sample, not a crash.

Remote shards (every form but a local file) have no known size: :func:`shard_sizes` returns
None for them, so a training epoch is endless (``trainer.max_steps`` ends the run) unless
``data.samples_per_epoch`` is set. Validation reads them once in full either way.
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Optional, Sequence, Union

from webdataset.shardlists import expand_urls

from vau.data.shards.writer import SIZES_FILE
from vau.errors import ConfigError, NotFoundError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_PIPE_HINTS = {"s3": "'pipe:aws s3 cp {url} -'", "gs": "'pipe:gcloud storage cat {url}'"}


class PipeNotAllowed(ConfigError):
    """A ``pipe:`` shard URL met while pipes are not allowed."""

    def __init__(self, url: str, hint: str = "set data.allow_pipe=true to allow it") -> None:
        super().__init__(f"{url!r} runs a shell command; {hint}")
        self.url = url


def is_remote(url: str) -> bool:
    """Whether ``url`` is a ``pipe:`` command or a ``<scheme>://`` URL rather than a local path."""
    return url.startswith("pipe:") or _SCHEME.match(url) is not None


def _check_scheme(url: str, scheme: str) -> None:
    """Raises ValueError (one line) unless shards at ``url`` can be read without a shell."""
    if scheme in ("http", "https"):
        return
    try:
        import fsspec

        fsspec.get_filesystem_class(scheme)
    except ImportError as e:  # a known fsspec protocol whose package is not installed
        hint = _PIPE_HINTS.get(scheme, "'pipe:<command writing the tar to stdout>'").format(url=url)
        raise ConfigError(f"{url}: reading {scheme}:// needs a package that is not installed "
                         f"({' '.join(str(e).split())}); or stream it with {hint} and data.allow_pipe=true") from None
    except ValueError:
        raise ConfigError(f"{url}: unknown URL scheme {scheme}://; expected a path, http(s)://, "
                         "an fsspec protocol (s3://, gs://, ...) or pipe:<command>") from None


def expand_shards(spec: Union[str, Sequence[str]], *, allow_pipe: bool = False) -> list[str]:
    """Expands a shard spec into shard URLs (see the module docstring for the forms).

    Args:
        spec: A brace pattern (``d/s-{000000..000009}.tar``, expanded by webdataset's
            ``expand_urls``, which also splits on ``::``), a glob (``d/s-*.tar``), a folder
            (all its ``*.tar``), or a list of these. ``~`` and ``$VARS`` are expanded.
        allow_pipe: Accept ``pipe:`` URLs (they run shell commands).

    Returns:
        Shard paths/URLs in spec order (globs and folders sorted).

    Raises:
        FileNotFoundError: A part of the spec matches no shard (names the part).
        PipeNotAllowed: A ``pipe:`` URL without ``allow_pipe`` (a ValueError).
        ValueError: A URL scheme that cannot be read (names the URL and the way out).
    """
    parts = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for part in parts:
        for url in expand_urls(os.path.expandvars(os.path.expanduser(part))):
            m = _SCHEME.match(url)
            if url.startswith("pipe:"):
                if not allow_pipe:
                    raise PipeNotAllowed(url)
                out.append(url)
            elif m is not None:
                _check_scheme(url, m.group(1).lower())
                out.append(url)
            elif os.path.isdir(url):
                found = sorted(glob.glob(os.path.join(glob.escape(url), "*.tar")))
                if not found:
                    raise NotFoundError(f"no .tar shards in folder {url}")
                out.extend(found)
            elif glob.has_magic(url):
                found = sorted(glob.glob(url))
                if not found:
                    raise NotFoundError(f"no shards match {url!r} (run `vau synth` for the demo data?)")
                out.extend(found)
            elif os.path.isfile(url):
                out.append(url)
            else:
                raise NotFoundError(f"shard not found: {url}")
    return out


def shard_sizes(urls: Sequence[str]) -> Optional[list[int]]:
    """Sample count of each shard from the ``sizes.json`` beside it; None if any is unknown (or remote)."""
    if any(is_remote(u) for u in urls):
        return None  # no sizes.json lookups for URLs (a pipe command is not a path)
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
