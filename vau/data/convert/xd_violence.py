"""XD-Violence temporal annotations (``annotations.txt``) -> vau samples.

Input: one line per video, the name (``.mp4`` optional) then [start, end] frame pairs::

    Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6 32 400 560 800

The class codes come from the name's ``_label_`` suffix (up to three codes joined by
``-``, ``0`` = unused slot), as the XD-Violence release defines them: A normal, B1
Fighting, B2 Shooting, B4 Riot, B5 Abuse, B6 Car accident, G Explosion; several codes give
several classes (``G-B2-B6`` -> Explosion, Shooting, Car accident). Names may contain
``.``, ``#`` and spaces: the name ends at the end of its label, the rest of the line is
frame numbers.

Frames are converted to seconds with ``fps`` (default 24.0, XD-Violence's frame rate) as
inclusive spans: ``[s, e]`` -> ``[s/fps, (e+1)/fps]``.

Annotation: ``anomaly`` = ``{abnormal: not A, classes, segments}``, ``meta`` = ``{fps,
label}``. ``meta.id`` is the name without ``.mp4``; the key is that name sanitised
(``.``, ``#``, spaces -> ``_``). Video: ``<name>.mp4`` (relative to ``media_root``).

Skipped (with the reason): lines without a ``_label_`` suffix, unknown codes, ``A`` mixed
with violent codes, bad frame numbers (as in UCF-Crime), and normal videos with spans.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from vau.data.convert.common import (
    Item,
    Record,
    frame_spans,
    guarded,
    label_anomaly,
    media_path,
    positive_fps,
    text_lines,
)

DEFAULT_FPS = 24.0
"""XD-Violence videos are 24 fps."""
NORMAL_CODE = "A"
CLASSES = {
    "B1": "Fighting",
    "B2": "Shooting",
    "B4": "Riot",
    "B5": "Abuse",
    "B6": "Car accident",
    "G": "Explosion",
}
"""Violent label code -> class name (``A`` is normal; there is no B3)."""
UNUSED_CODE = "0"

# The name runs lazily up to "_label_<codes>", then an optional ".mp4", then frame numbers.
_LINE = re.compile(
    r"^(?P<name>.*?_label_(?P<label>[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*))(?:\.mp4)?(?P<frames>(?:\s+\S+)*)\s*$"
)


def label_classes(label: str) -> list[str]:
    """``B2-G-0`` -> ``["Shooting", "Explosion"]``; ``A`` -> ``[]``.

    Raises:
        ValueError: An unknown code, no code, or ``A`` mixed with violent codes.
    """
    codes = [c for c in label.split("-") if c != UNUSED_CODE]
    unknown = [c for c in codes if c != NORMAL_CODE and c not in CLASSES]
    if unknown:
        raise ValueError(f"label {label!r}: unknown code(s) {', '.join(unknown)} "
                         f"(known: {NORMAL_CODE}, {', '.join(CLASSES)})")
    if not codes:
        raise ValueError(f"label {label!r} has no class code")
    if NORMAL_CODE in codes and len(codes) > 1:
        raise ValueError(f"label {label!r}: normal code {NORMAL_CODE} mixed with violent codes")
    classes: list[str] = []
    for code in codes:
        if code != NORMAL_CODE and CLASSES[code] not in classes:
            classes.append(CLASSES[code])
    return classes


def _record(line: str, where: str, fps: float, media_root: Path | None) -> Record:
    m = _LINE.match(line)
    if m is None:
        raise ValueError(f"no '_label_<codes>' at the end of the video name: {line!r}")
    name, label = m.group("name"), m.group("label")
    anomaly = label_anomaly(label_classes(label), frame_spans(m.group("frames").split(), fps))
    annotation = {"anomaly": anomaly, "meta": {"fps": fps, "label": label}}
    return Record(name, annotation, where, video=media_path(f"{name}.mp4", media_root))


def convert_xd_violence(src: Path, *, media_root: Path | None = None,
                        fps: float = DEFAULT_FPS) -> Iterator[Item]:
    """Converts XD-Violence ``annotations.txt`` (see the module docstring).

    Args:
        src: The annotation file.
        media_root: Folder holding ``<name>.mp4``.
        fps: Frame rate to turn frame numbers into seconds.

    Yields:
        One Record per good line, one Skipped per bad one.

    Raises:
        ValueError: ``fps`` is not a number > 0.
    """
    fps = positive_fps(fps)
    for lineno, line in text_lines(src):
        where = f"{src}:{lineno}"
        yield guarded(where, _record, line, where, fps, media_root)
