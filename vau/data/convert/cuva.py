"""CUVA instruction records -> vau samples, one per video.

Input: a JSON list of records, several per video::

    {"ID": "Fighting_0012", "visual_input": "videos/Fighting_0012.mp4", "task": "Cause",
     "instruction": "What caused the anomaly in the video?", "output": "The two men ..."}

with ``task`` one of Description, Cause, Result, Detection, Classification, Timestamp
(others are kept as QA pairs too). Records are grouped by ``ID`` (first-seen order); each
video gives one sample:

* ``conversations``: one QA pair per record in file order (instruction -> output), tagged
  with the lower-cased task; the first instruction gets ``<video>\\n`` in front unless it
  already holds ``<video>``.
* ``anomaly``: ``abnormal`` true (CUVA has anomalous videos only); ``classes`` from the
  Classification outputs as written (a trailing period dropped); ``segments`` from the
  Timestamp outputs, ``[mmss,mmss]`` spans (several allowed) in seconds; ``description``,
  ``cause``, ``effect`` from the first non-empty Description, Cause, Result output.
* video: ``visual_input`` (relative to ``media_root``).

Skipped (with the reason): records missing a field or with a non-string one (the record),
and videos whose records disagree on ``visual_input`` or whose Timestamp output is not
``[mmss,mmss]`` spans (the whole video: its segments would silently be missing).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vau.data.convert.common import (
    Item,
    Record,
    Skipped,
    guarded,
    id_text,
    media_path,
    parse_mmss_spans,
    qa_turns,
    read_json_list,
)

FIELDS = ("ID", "instruction", "output", "task", "visual_input")
"""Keys every record needs (``ID`` may be a number; the others are strings)."""
TEXT_TASKS = {"description": "description", "cause": "cause", "result": "effect"}
"""Lower-cased task -> the anomaly field its output fills."""


def _check(rec: Any) -> dict[str, str]:
    """The record's fields as stripped strings (``ID`` as text)."""
    if not isinstance(rec, dict):
        raise ValueError(f"record is a {type(rec).__name__}, not an object")
    missing = [k for k in FIELDS if rec.get(k) is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    bad = [k for k in FIELDS[1:] if not isinstance(rec[k], str)]
    if bad:
        raise ValueError(f"{', '.join(bad)} must be strings")
    out = {k: rec[k].strip() for k in FIELDS[1:]}
    out["ID"] = id_text(rec["ID"])
    return out


def _anomaly(records: list[tuple[int, dict[str, str]]]) -> dict[str, Any]:
    """Anomaly section from the Classification, Timestamp and text-task outputs."""
    anomaly: dict[str, Any] = {"abnormal": True}
    classes: list[str] = []
    segments: list[list[int]] = []
    for index, rec in records:
        task, output = rec["task"].lower(), rec["output"]
        if task == "classification" and output:
            name = output.rstrip(".").strip()
            if name not in classes:
                classes.append(name)
        elif task == "timestamp":
            try:
                segments += parse_mmss_spans(output)
            except ValueError as e:
                raise ValueError(f"record [{index}]: Timestamp output: {e}") from None
        elif task in TEXT_TASKS and output:
            anomaly.setdefault(TEXT_TASKS[task], output)
    if classes:
        anomaly["classes"] = classes
    if segments:
        anomaly["segments"] = segments
    return anomaly


def _video(video_id: str, records: list[tuple[int, dict[str, str]]], where: str,
           media_root: Path | None) -> Record:
    inputs = sorted({rec["visual_input"] for _, rec in records})
    if len(inputs) > 1:
        raise ValueError(f"records disagree on visual_input: {', '.join(map(repr, inputs))}")
    turns = qa_turns((rec["instruction"], rec["output"], rec["task"].lower()) for _, rec in records)
    annotation = {"conversations": turns, "anomaly": _anomaly(records)}
    return Record(video_id, annotation, where, video=media_path(inputs[0], media_root))


def convert_cuva(src: Path, *, media_root: Path | None = None) -> Iterator[Item]:
    """Converts CUVA-style instruction records (see the module docstring).

    Args:
        src: The ``.json`` list of records.
        media_root: Folder the ``visual_input`` paths are relative to.

    Yields:
        Skipped for bad records as they come, then one Record (or Skipped) per video.

    Raises:
        ValueError: The file is not a JSON list.
    """
    videos: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for i, raw in enumerate(read_json_list(src)):
        try:
            rec = _check(raw)
        except ValueError as e:
            yield Skipped(f"{src}[{i}]", str(e))
            continue
        videos.setdefault(rec["ID"], []).append((i, rec))
    for video_id, records in videos.items():
        where = f"{src}: ID {video_id!r}"
        yield guarded(where, _video, video_id, records, where, media_root)
