"""UCF-Crime temporal annotations (``Temporal_Anomaly_Annotation.txt``) -> vau samples.

Input: one line per test video, whitespace-separated::

    Abuse028_x264.mp4  Abuse  165  240  -1  -1
    Normal_Videos_015_x264.mp4  Normal  -1  -1  -1  -1

name (``.mp4`` optional), class (``Normal`` for normal videos), then [start, end] frame
pairs (two in the official file; ``-1 -1`` = no span). Frames are converted to seconds with
``fps`` (default 30.0, UCF-Crime's frame rate) as inclusive spans: ``[s, e]`` ->
``[s/fps, (e+1)/fps]``, so ``165 240`` -> ``[5.5, 8.033333]``.

Annotation: ``anomaly`` = ``{abnormal: class != Normal, classes: [class] or [], segments}``,
``meta.fps``. Key and ``meta.id``: the name without ``.mp4``.

Videos live in class sub-folders (``Abuse/Abuse028_x264.mp4``,
``Testing_Normal_Videos_Anomaly/...``), so with ``media_root`` the converter indexes that
folder recursively by file name once (the first path in sorted order wins for a repeated
name) and points at the file found; a video not found is given as ``media_root/<name>.mp4``,
which the shard writer rejects with "file not found". Without ``media_root`` the path is
just ``<name>.mp4``.

Skipped (with the reason): lines with fewer than two fields, non-integer or unpaired frame
numbers, a span with one ``-1`` or end < start, and Normal videos with spans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from vau.data.convert.common import (
    Item,
    Record,
    frame_spans,
    guarded,
    label_anomaly,
    media_path,
    positive_fps,
    strip_video_ext,
    text_lines,
    with_video_ext,
)

DEFAULT_FPS = 30.0
"""UCF-Crime videos are 30 fps."""
NORMAL = "normal"
"""Class name (any case) of normal videos."""


def index_files(root: Path) -> dict[str, Path]:
    """File name -> path of every file under ``root`` (first in sorted order wins)."""
    index: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            index.setdefault(path.name, path)
    return index


def video_locator(media_root: Path | None) -> Callable[[str], str]:
    """Returns ``file name -> manifest path``, searching ``media_root`` (indexed once)."""
    if media_root is None:
        return lambda name: name
    index = index_files(media_root)

    def locate(name: str) -> str:
        found = index.get(name)
        return str(found.absolute()) if found else media_path(name, media_root)

    return locate


def _record(line: str, where: str, fps: float, locate: Callable[[str], str]) -> Record:
    fields = line.split()
    if len(fields) < 2:
        raise ValueError(f"expected 'name class start end start end', got {line!r}")
    name, label, frames = fields[0], fields[1], fields[2:]
    classes = [] if label.lower() == NORMAL else [label]
    annotation = {"anomaly": label_anomaly(classes, frame_spans(frames, fps)), "meta": {"fps": fps}}
    return Record(strip_video_ext(name), annotation, where, video=locate(with_video_ext(name)))


def convert_ucf_crime(src: Path, *, media_root: Path | None = None, fps: float = DEFAULT_FPS) -> Iterator[Item]:
    """Converts ``Temporal_Anomaly_Annotation.txt`` (see the module docstring).

    Args:
        src: The annotation file.
        media_root: UCF-Crime video folder, searched recursively by file name.
        fps: Frame rate to turn frame numbers into seconds.

    Yields:
        One Record per good line, one Skipped per bad one.

    Raises:
        ValueError: ``fps`` is not a number > 0.
    """
    fps = positive_fps(fps)
    locate = video_locator(media_root)
    for lineno, line in text_lines(src):
        where = f"{src}:{lineno}"
        yield guarded(where, _record, line, where, fps, locate)
