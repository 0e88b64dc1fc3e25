"""Converters from public annotation formats into vau manifests (``vau shards convert``).

Each format has a module with a generator ``convert_<format>(src, *, media_root, ...)``
that parses the source file and yields records and skipped items (see ``common``);
:func:`convert` turns the records into manifest lines::

    {"key": "Abuse028_x264", "video": "/data/ucf/Abuse/Abuse028_x264.mp4",
     "annotation": {"anomaly": {...}, "meta": {"source": "ucf_crime", "id": "Abuse028_x264", ...}}}

and writes them with :func:`vau.data.shards.manifest.write_manifest` (atomically). Every line
gets:

* ``key``: the source id mapped to letters, digits, ``_`` and ``-`` (other runs of
  characters become one ``_``), with ``-2``, ``-3``... appended to repeats in file order;
* ``meta.source`` (the format name) and ``meta.id`` (the id as the source writes it);
* an annotation that passed :func:`vau.data.shards.annotation.validate_annotation`.

Media files are not checked here (the shard writer decodes them and rejects missing or
broken ones); only UCF-Crime searches ``media_root``, because its videos sit in class
sub-folders the annotation does not name.

Bad source items (a malformed record, an unparseable row) are skipped, counted in
:class:`ConvertSummary` and logged as ``<file>: row N: skipped: <reason>``; problems with
the whole file (not a JSON list, a missing sheet column) raise one-line ValueErrors.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vau.data.shards.annotation import validate_annotation
from vau.data.convert.common import Item, Record, Skipped, UniqueKeys
from vau.data.convert.cuva import convert_cuva
from vau.data.convert.ecva import convert_ecva
from vau.data.convert.llava import convert_llava
from vau.data.convert.ucf_crime import convert_ucf_crime
from vau.data.convert.video_qa import convert_sutd_traffic_qa, convert_videochatgpt
from vau.data.convert.xd_violence import convert_xd_violence
from vau.data.shards.manifest import write_manifest
from vau.registry import Registry
from vau.errors import ConfigError, NotFoundError

__all__ = ["CONVERTERS", "ConvertSummary", "Converter", "convert", "convert_entries"]


@dataclass(frozen=True)
class Converter:
    """A registered format."""

    fn: Callable[..., Iterator[Item]]
    """``fn(src, *, media_root, **options)`` yielding records and skipped items."""
    help: str
    """One line for ``vau shards convert --help``."""
    options: tuple[str, ...] = ()
    """Keyword options ``fn`` takes besides ``media_root`` (e.g. ``("fps",)``)."""


@dataclass
class ConvertSummary:
    """What :func:`convert` did."""

    entries: int
    """Manifest lines written."""
    skipped: int
    """Source items left out (records, rows, lines or videos; reasons were logged)."""


CONVERTERS: Registry[Converter] = Registry("annotation format")
CONVERTERS.register("llava", Converter(
    convert_llava, "LLaVA-style JSON list of {id, image|video, conversations} (LLaVA, ShareGPT4V, VideoChat)"))
# The LLaVA-style releases of AnomShield's stage data (ECVA §IV-C) are the same format.
for _name, _what in (("sharegpt4v", "ShareGPT4V"), ("sharegpt4o", "ShareGPT-4o"), ("videogpt_plus", "VideoGPT-plus")):
    CONVERTERS.register(_name, Converter(convert_llava, f"{_what}: LLaVA-style JSON list (same as llava)"))
CONVERTERS.register("videochatgpt", Converter(
    convert_videochatgpt, "VideoChatGPT VideoInstruct-100K JSON list of {video_id, q, a}, one sample per video"))
CONVERTERS.register("sutd_traffic_qa", Converter(
    convert_sutd_traffic_qa, "SUTD-TrafficQA R2/R3 .jsonl (header line + one list per question), one sample per video"))
CONVERTERS.register("ecva", Converter(
    convert_ecva, "ECVA annotation sheet (.xlsx/.csv with video_id, X1..X4 columns), one sample per row"))
CONVERTERS.register("cuva", Converter(
    convert_cuva, "CUVA JSON list of {instruction, visual_input, output, task, ID}, one sample per ID"))
CONVERTERS.register("ucf_crime", Converter(
    convert_ucf_crime, "UCF-Crime Temporal_Anomaly_Annotation.txt (frame spans; --fps, default 30)", ("fps",)))
CONVERTERS.register("xd_violence", Converter(
    convert_xd_violence, "XD-Violence annotations.txt (frame spans, _label_ codes; --fps, default 24)", ("fps",)))


def _entry(record: Record, source: str, keys: UniqueKeys) -> dict:
    """Manifest line of a record; the annotation is validated before a key is spent on it."""
    annotation = dict(record.annotation)
    annotation["meta"] = {**annotation.get("meta", {}), "source": source, "id": record.id}
    validate_annotation(annotation)
    entry: dict[str, Any] = {"key": keys(record.id)}
    for kind in ("video", "image"):
        if getattr(record, kind) is not None:
            entry[kind] = getattr(record, kind)
    entry["annotation"] = annotation
    return entry


def convert_entries(fmt: str, src: str | Path, *, media_root: str | Path | None = None,
                    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
                    **options: Any) -> tuple[list[dict], int]:
    """Runs a converter and returns its manifest lines without writing them.

    Args:
        fmt, src, media_root, log, **options: As for :func:`convert`.

    Returns:
        ``(manifest entries, number of skipped source items)``.
    """
    converter = CONVERTERS.get(fmt)
    src = Path(src)
    if not src.is_file():
        raise NotFoundError(f"{fmt} source not found: {src}")
    # None means "not given" (a CLI passes every flag), so only set options are checked.
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(converter.options))
    if unknown:
        raise ConfigError(f"format {fmt!r} takes no option {', '.join(unknown)} "
                         f"(it takes: {', '.join(converter.options) or 'none'})")
    root = Path(media_root) if media_root is not None else None
    keys = UniqueKeys()
    entries: list[dict] = []
    skipped = 0
    for item in converter.fn(src, media_root=root, **given):
        if isinstance(item, Record):
            try:
                entries.append(_entry(item, fmt, keys))
                continue
            except ValueError as e:  # a converter bug or an odd source value: lose the item, not the run
                item = Skipped(item.where, str(e))
        skipped += 1
        log(f"{item.where}: skipped: {item.reason}")
    return entries, skipped


def convert(fmt: str, src: str | Path, *, media_root: str | Path | None = None,
            out: str | Path, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
            **options: Any) -> ConvertSummary:
    """Converts an annotation file of format ``fmt`` into a manifest.

    Args:
        fmt: A name in :data:`CONVERTERS` (``llava``, ``ecva``, ``cuva``, ``ucf_crime``,
            ``xd_violence``).
        src: The annotation file.
        media_root: Folder the source's media paths are relative to; given, the manifest
            holds absolute paths under it, else the source's relative paths (which the
            shard writer resolves against the manifest's folder or its ``--root``).
        out: The manifest to write (``.jsonl``), replaced atomically.
        log: Where one line per skipped item goes (default: stderr).
        **options: Format options; ``fps`` (frame rate of the frame numbers) for
            ``ucf_crime`` (default 30) and ``xd_violence`` (default 24). Options set to
            None are ignored.

    Returns:
        Counts of lines written and items skipped.

    Raises:
        KeyError: Unknown format (the message lists the valid ones).
        FileNotFoundError: ``src`` does not exist.
        ValueError: An option the format does not take, a bad option value, or a source
            file that cannot be read as that format (one line naming the file).
    """
    entries, skipped = convert_entries(fmt, src, media_root=media_root, log=log, **options)
    write_manifest(out, entries)
    return ConvertSummary(entries=len(entries), skipped=skipped)
