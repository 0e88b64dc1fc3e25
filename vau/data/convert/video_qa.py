"""Video QA sets of AnomShield's stage 3 (ECVA §IV-C) whose release is not LLaVA-style.

**VideoChatGPT's VideoInstruct-100K** ("VideoChat100K" in the paper): a JSON list of
``{"video_id": "v_k3b8Ls0TrAk", "q": "What happens ...?", "a": "A man ..."}``. Records are
grouped by ``video_id`` (first-seen order); each video gives one sample whose
``conversations`` are its QA pairs in file order (``<video>`` before the first question),
video ``<media_root>/<video_id>.mp4``.

**SUTD-TrafficQA** (``R2_train.jsonl`` / ``R3_*.jsonl``): JSON lines, the first one the header
``["record_id", "vid_id", "vid_filename", "perspective", "q_body", "q_type", "option0",
"option1", "option2", "option3", "answer"]``, then one list per question; ``answer`` is the
index of the right option and empty options are unused. Each video (``vid_filename``) gives
one sample: per question the human turn is the question and its lettered options
(``A. ...``), the gpt turn ``"<letter>. <option>"``; tasks are tagged ``traffic_<q_type>``.

Skipped (with the reason): malformed records or lines (the record), and a SUTD line whose
``answer`` does not name a non-empty option.
"""

from __future__ import annotations

import json
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
    qa_turns,
    read_json_list,
    strip_video_ext,
    text_lines,
    with_video_ext,
)


def _videochatgpt_pair(rec: Any) -> tuple[str, str, str]:
    if not isinstance(rec, dict):
        raise ValueError(f"record is a {type(rec).__name__}, not an object")
    if rec.get("video_id") in (None, ""):
        raise ValueError("no video_id")
    if not isinstance(rec.get("q"), str) or not isinstance(rec.get("a"), str) or not rec["q"].strip():
        raise ValueError("needs string 'q' and 'a'")
    return id_text(rec["video_id"]), rec["q"].strip(), rec["a"].strip()


def convert_videochatgpt(src: Path, *, media_root: Path | None = None) -> Iterator[Item]:
    """Converts VideoInstruct-100K (see the module docstring); one Record per video.

    Raises:
        ValueError: The file is not a JSON list.
    """
    videos: dict[str, list[tuple[str, str]]] = {}
    for i, raw in enumerate(read_json_list(src)):
        try:
            vid, q, a = _videochatgpt_pair(raw)
        except ValueError as e:
            yield Skipped(f"{src}[{i}]", str(e))
            continue
        videos.setdefault(vid, []).append((q, a))
    for vid, pairs in videos.items():
        turns = qa_turns((q, a, None) for q, a in pairs)
        yield Record(vid, {"conversations": turns}, f"{src}: video_id {vid!r}",
                     video=media_path(with_video_ext(vid), media_root))


SUTD_HEADER = ("record_id", "vid_id", "vid_filename", "perspective", "q_body", "q_type",
               "option0", "option1", "option2", "option3", "answer")
"""Columns of a SUTD-TrafficQA annotation line."""
LETTERS = "ABCD"


def _sutd_row(values: Any) -> dict[str, Any]:
    if not isinstance(values, list) or len(values) != len(SUTD_HEADER):
        raise ValueError(f"expected a list of {len(SUTD_HEADER)} values ({', '.join(SUTD_HEADER)})")
    row = dict(zip(SUTD_HEADER, values))
    if not isinstance(row["vid_filename"], str) or not row["vid_filename"].strip():
        raise ValueError("no vid_filename")
    if not isinstance(row["q_body"], str) or not row["q_body"].strip():
        raise ValueError("no q_body")
    options = [o.strip() if isinstance(o, str) else "" for o in (row[f"option{k}"] for k in range(4))]
    try:
        answer = int(row["answer"])
    except (TypeError, ValueError):
        raise ValueError(f"answer {row['answer']!r} is not an option index") from None
    if not 0 <= answer < 4 or not options[answer]:
        raise ValueError(f"answer {answer} names no option")
    listed = "\n".join(f"{LETTERS[k]}. {o}" for k, o in enumerate(options) if o)
    return {"video": row["vid_filename"].strip(), "question": f"{row['q_body'].strip()}\n{listed}",
            "answer": f"{LETTERS[answer]}. {options[answer]}", "task": f"traffic_{row['q_type']}".lower()}


def convert_sutd_traffic_qa(src: Path, *, media_root: Path | None = None) -> Iterator[Item]:
    """Converts a SUTD-TrafficQA ``.jsonl`` (see the module docstring); one Record per video.

    Raises:
        ValueError: The first line is not the SUTD header.
    """
    videos: dict[str, list[dict]] = {}
    header_seen = False
    for lineno, line in text_lines(src):
        where = f"{src}:{lineno}"
        try:
            values = json.loads(line)
        except json.JSONDecodeError as e:
            if not header_seen:
                raise ValueError(f"{where}: not JSON lines ({e})") from e
            yield Skipped(where, f"not JSON ({e})")
            continue
        if not header_seen:
            if values != list(SUTD_HEADER):
                raise ValueError(f"{where}: expected the SUTD-TrafficQA header {list(SUTD_HEADER)}")
            header_seen = True
            continue
        try:
            row = _sutd_row(values)
        except ValueError as e:
            yield Skipped(where, str(e))
            continue
        videos.setdefault(row["video"], []).append(row)
    for name, rows in videos.items():
        where = f"{src}: vid_filename {name!r}"
        yield guarded(where, lambda: Record(
            strip_video_ext(name), {"conversations": qa_turns((r["question"], r["answer"], r["task"]) for r in rows)},
            where, video=media_path(name, media_root)))
