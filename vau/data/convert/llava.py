"""LLaVA-style conversation data (CC3M/LLaVA-Pretrain, LLaVA-Instruct, ShareGPT4V, VideoChat,
ECVA SFT) -> vau samples.

Input: a JSON list of records::

    {"id": "GCC_train_002582585", "image": "GCC_train_002582585.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nDescribe the image."},
                       {"from": "gpt", "value": "olive oil is a healthy ingredient ..."}]}

``image`` or ``video`` (a path relative to ``media_root``) is optional: text-only records
(ShareGPT) give samples without media. Extra record keys (``model``, ``source``...) and
extra turn keys are ignored. The turns are kept as they are (``<image>``/``<video>``
included) as the sample's ``conversations``; nothing else is derived from them. A record
without an ``id`` gets ``<file stem>-<index>``.

Skipped (with the reason): records that are not objects, have no or empty conversations,
a turn that is not ``{"from": "human"|"gpt", "value": str}``, turns that do not alternate
human/gpt starting with the human, a last human turn without an answer, or both
``image`` and ``video``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vau.data.convert.common import (
    Item,
    Record,
    guarded,
    id_text,
    media_path,
    read_json_list,
)

ROLES = ("human", "gpt")
"""Turn speakers in order: turn ``j`` must be ``ROLES[j % 2]``."""


def _turns(conversations: Any) -> list[dict]:
    """Checks the turns and keeps only ``from`` / ``value`` of each."""
    if not isinstance(conversations, list) or not conversations:
        raise ValueError("no conversations")
    turns = []
    for j, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise ValueError(f"turn {j}: needs a string 'value'")
        expected = ROLES[j % 2]
        if turn.get("from") != expected:
            raise ValueError(f"turn {j}: from {turn.get('from')!r}, expected {expected!r} "
                             "(turns alternate human/gpt, human first)")
        turns.append({"from": turn["from"], "value": turn["value"]})
    if len(turns) % 2:
        raise ValueError("the last human turn has no gpt answer")
    return turns


def _media(rec: dict, media_root: Path | None) -> dict[str, str]:
    """``{"video": path}`` / ``{"image": path}`` / ``{}`` from the record."""
    kinds = [k for k in ("video", "image") if rec.get(k) is not None]
    if len(kinds) > 1:
        raise ValueError("has both 'video' and 'image'")
    if not kinds:
        return {}
    name = rec[kinds[0]]
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{kinds[0]!r} must be a non-empty path, got {name!r}")
    return {kinds[0]: media_path(name.strip(), media_root)}


def _record(rec: Any, index: int, src: Path, where: str, media_root: Path | None) -> Record:
    if not isinstance(rec, dict):
        raise ValueError(f"record is a {type(rec).__name__}, not an object")
    turns = _turns(rec.get("conversations"))
    rid = id_text(rec["id"]) if rec.get("id") not in (None, "") else f"{src.stem}-{index}"
    return Record(rid, {"conversations": turns}, where, **_media(rec, media_root))


def convert_llava(src: Path, *, media_root: Path | None = None) -> Iterator[Item]:
    """Converts a LLaVA-style JSON list (see the module docstring).

    Args:
        src: The ``.json`` file.
        media_root: Folder the records' ``image`` / ``video`` paths are relative to.

    Yields:
        One Record per good record, one Skipped per bad one.

    Raises:
        ValueError: The file is not a JSON list.
    """
    for i, rec in enumerate(read_json_list(src)):
        where = f"{src}[{i}]"
        yield guarded(where, _record, rec, i, src, where, media_root)
