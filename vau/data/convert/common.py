"""Helpers shared by the format converters: what they yield, ids -> keys, times, QA turns.

A converter is a generator of :class:`Record` (one future manifest entry) and
:class:`Skipped` (one source item left out, with the reason). ``vau.data.convert.convert``
turns records into manifest lines: it assigns the unique sanitised key, fills
``meta.source`` / ``meta.id`` and validates the annotation.

Time conventions:

* ``mmss`` moments (ECVA, CUVA) are minutes and seconds run together, ``0114`` = 1 min 14 s
  = 74 s; a span ``[0052,0114]`` becomes ``[52, 74]`` seconds as written (no end padding).
* Frame spans (UCF-Crime, XD-Violence) are inclusive: ``[start, end]`` frames cover
  ``start/fps`` up to the end of frame ``end``, i.e. ``(end + 1)/fps`` seconds.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VIDEO_TOKEN = "<video>"
"""Placeholder for the visual tokens in the first human turn (LLaVA convention)."""

_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]+")
_MMSS = r"\d+(?::\d{2})?"
_SPAN = re.compile(rf"\[\s*({_MMSS})\s*[,，]\s*({_MMSS})\s*\]")
# Separators tolerated between bracketed spans: "[a,b][c,d]", "[a,b], [c,d]", "[a,b]；[c,d]".
_SPAN_SEPARATORS = re.compile(r"[\s,，;；、]*")
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
_ALL_BRACKETED = re.compile(r"^(\s*\[[^\[\]]*\]\s*)+$")
SECONDS_DECIMALS = 6
"""Seconds computed from frames are rounded to this many decimals (float noise only)."""


@dataclass
class Record:
    """One converted sample, before it gets its manifest key.

    Attributes:
        id: The source's own id (kept as ``meta.id``; the key is derived from it).
        annotation: Annotation sections (``meta`` may hold extra provenance).
        where: ``file:row``-style location for messages.
        video: Video path for the manifest, if any.
        image: Image path for the manifest, if any.
    """

    id: str
    annotation: dict[str, Any]
    where: str
    video: str | None = None
    image: str | None = None


@dataclass
class Skipped:
    """A source item the converter left out.

    Attributes:
        where: ``file:row``-style location.
        reason: One line saying what is wrong.
    """

    where: str
    reason: str


Item = Record | Skipped
"""What converters yield."""


def guarded(where: str, build: Callable[..., Record], *args: Any) -> Item:
    """Returns ``build(*args)``; a ValueError it raises becomes a :class:`Skipped` at ``where``.

    Converters parse each source item in a function that raises on bad input, so one bad
    row costs one sample instead of the whole conversion.
    """
    try:
        return build(*args)
    except ValueError as e:
        return Skipped(where, str(e))


# --- ids and keys ------------------------------------------------------------------------

def id_text(value: Any) -> str:
    """Source id as text: ints (and integral floats from spreadsheets) without a ``.0``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def sanitize_key(raw: str) -> str:
    """Maps an id to the manifest's key alphabet (letters, digits, ``_``, ``-``).

    Every run of other characters (``.``, ``#``, spaces, non-ASCII) becomes one ``_``, so
    the mapping is deterministic; ``sample`` stands in for an empty id.
    """
    return _BAD_KEY_CHARS.sub("_", raw) or "sample"


@dataclass
class UniqueKeys:
    """Hands out sanitised keys, suffixing ``-2``, ``-3``... to repeats (in input order)."""

    used: set[str] = field(default_factory=set)

    def __call__(self, raw: str) -> str:
        """Returns an unused key for the id ``raw`` and marks it used."""
        base = key = sanitize_key(raw)
        n = 2
        while key in self.used:
            key, n = f"{base}-{n}", n + 1
        self.used.add(key)
        return key


# --- media paths -------------------------------------------------------------------------

def media_path(name: str, media_root: Path | None) -> str:
    """Path to put in the manifest for the media file ``name`` (never checked here).

    Args:
        name: Path as the source gives it, usually relative to the data set's media folder.
        media_root: That folder, or None to leave ``name`` relative (the shard writer then
            resolves it against the manifest's folder or its ``--root``).

    Returns:
        ``name`` itself when it is absolute or ``media_root`` is None, else the absolute
        path ``media_root/name`` (so the manifest works wherever it is written).
    """
    if media_root is None or os.path.isabs(name):
        return name
    return os.path.join(os.path.abspath(media_root), name)


def with_video_ext(name: str, ext: str = ".mp4") -> str:
    """``name`` with ``ext`` appended unless it already ends in it (ids are often bare)."""
    return name if name.lower().endswith(ext.lower()) else name + ext


def strip_video_ext(name: str, ext: str = ".mp4") -> str:
    """``name`` without a trailing ``ext`` (the id of a video named by its file)."""
    return name[: -len(ext)] if name.lower().endswith(ext.lower()) else name


# --- times -------------------------------------------------------------------------------

def parse_mmss(token: str) -> int:
    """Seconds of an ``mmss`` moment: ``0114`` -> 74, ``1012`` -> 612 (``01:14`` also works).

    Raises:
        ValueError: Not digits, or seconds >= 60.
    """
    token = token.strip()
    if ":" in token:
        minutes, _, seconds = token.partition(":")
    else:
        minutes, seconds = token[:-2] or "0", token[-2:]
    if not (minutes.isdigit() and seconds.isdigit()):
        raise ValueError(f"moment {token!r} is not mmss digits")
    if int(seconds) >= 60:
        raise ValueError(f"moment {token!r} has {seconds} seconds (must be < 60)")
    return int(minutes) * 60 + int(seconds)


def parse_mmss_spans(text: str) -> list[list[int]]:
    """Parses ``[mmss,mmss][mmss,mmss]...`` into ``[[start, end], ...]`` seconds.

    Args:
        text: The cell/answer; spans may be separated by spaces, commas or semicolons.

    Returns:
        The spans in order (empty for an empty text).

    Raises:
        ValueError: Anything but spans in the text, a bad moment, or start >= end.
    """
    spans: list[list[int]] = []
    pos = _SPAN_SEPARATORS.match(text).end()
    while pos < len(text):
        m = _SPAN.match(text, pos)
        if m is None:
            raise ValueError(f"expected [mmss,mmss] spans, got {text!r}")
        start, end = parse_mmss(m.group(1)), parse_mmss(m.group(2))
        if start >= end:
            raise ValueError(f"span {m.group(0)!r}: start {start}s is not before end {end}s")
        spans.append([start, end])
        pos = _SPAN_SEPARATORS.match(text, m.end()).end()
    return spans


def bracketed_texts(text: str) -> list[str]:
    """Splits ``[text][text]`` into its non-empty parts; unbracketed text is one part."""
    if _ALL_BRACKETED.match(text):
        parts = _BRACKETED.findall(text)
    else:  # free text (possibly containing brackets) is kept whole rather than guessed at
        parts = [text]
    return [p.strip() for p in parts if p.strip()]


def positive_fps(fps: Any) -> float:
    """``fps`` as a finite float > 0, else a ValueError naming the option."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a number, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    return value


def frame_spans(values: Iterable[str], fps: float) -> list[list[float]]:
    """Converts flat ``s1 e1 s2 e2 ...`` frame numbers to second spans.

    Frames are inclusive (see the module docstring): ``[s, e]`` -> ``[s/fps, (e+1)/fps]``.
    A pair of ``-1`` means "no span" and is dropped.

    Raises:
        ValueError: A non-integer, an odd count, one half of a pair missing, or end < start.
    """
    values = list(values)
    try:
        frames = [int(v) for v in values]
    except ValueError:
        raise ValueError(f"frame numbers must be integers, got {' '.join(values)!r}") from None
    if len(frames) % 2:
        raise ValueError(f"odd number of frame numbers ({len(frames)}): need start/end pairs")
    spans = []
    for start, end in zip(frames[::2], frames[1::2], strict=True):
        if start == end == -1:
            continue
        if start < 0 or end < 0:
            raise ValueError(f"frame span [{start}, {end}]: only one end is -1 (or negative)")
        if end < start:
            raise ValueError(f"frame span [{start}, {end}]: end before start")
        spans.append([round(start / fps, SECONDS_DECIMALS), round((end + 1) / fps, SECONDS_DECIMALS)])
    return spans


def label_anomaly(classes: list[str], segments: list[list[float]]) -> dict[str, Any]:
    """Anomaly section of a VAD label: abnormal iff it has classes.

    Raises:
        ValueError: A normal video (no classes) with anomalous segments.
    """
    if not classes and segments:
        raise ValueError(f"normal video with {len(segments)} anomalous span(s)")
    return {"abnormal": bool(classes), "classes": classes, "segments": segments}


# --- conversations -----------------------------------------------------------------------

def qa_turns(pairs: Iterable[tuple[str, str, str | None]], media_token: str = VIDEO_TOKEN) -> list[dict]:
    """Builds LLaVA-style turns from ``(question, answer, task)`` pairs.

    The first question gets ``"<video>\\n"`` in front unless it already holds the token;
    ``task`` (if given) tags both turns of its pair.
    """
    turns: list[dict] = []
    for question, answer, task in pairs:
        if not turns and media_token not in question:
            question = f"{media_token}\n{question}"
        tag = {"task": task} if task else {}
        turns += [{"from": "human", "value": question, **tag}, {"from": "gpt", "value": answer, **tag}]
    return turns


# --- reading -----------------------------------------------------------------------------

def read_json_list(src: Path) -> list:
    """Loads a JSON file that must hold a list of records.

    Raises:
        ValueError: Invalid JSON or not a list (naming the file).
    """
    try:
        data = json.loads(src.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{src}: invalid JSON ({e})") from e
    if not isinstance(data, list):
        raise ValueError(f"{src}: expected a JSON list of records, got {type(data).__name__}")
    return data


def text_lines(src: Path) -> Iterator[tuple[int, str]]:
    """Yields ``(line number, stripped line)`` of a text file, without blank and ``#`` lines."""
    with open(src, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                yield lineno, line
