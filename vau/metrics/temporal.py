"""Temporal localisation: IoU of segment sets, and segments parsed from answer text."""

from __future__ import annotations

import re
from typing import Iterable, Sequence


def _union(segments: Iterable[Sequence[float]]) -> list[tuple[float, float]]:
    spans = sorted((float(s), float(e)) for s, e in segments if float(e) > float(s))
    merged: list[tuple[float, float]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _length(spans: list[tuple[float, float]]) -> float:
    return sum(e - s for s, e in spans)


def temporal_iou(pred_segments: Sequence[Sequence[float]], gt_segments: Sequence[Sequence[float]]) -> float:
    """IoU of two sets of ``[start, end]`` segments (seconds), each taken as the union of its spans.

    ``|∪pred ∩ ∪gt| / |∪pred ∪ ∪gt|``; overlapping spans within a set count once; empty or
    zero-length spans are ignored. Two empty sets give 0.
    """
    p, g = _union(pred_segments), _union(gt_segments)
    inter, i, j = 0.0, 0, 0
    while i < len(p) and j < len(g):  # sweep over both sorted, disjoint span lists
        lo, hi = max(p[i][0], g[j][0]), min(p[i][1], g[j][1])
        inter += max(0.0, hi - lo)
        if p[i][1] < g[j][1]:
            i += 1
        else:
            j += 1
    union = _length(p) + _length(g) - inter
    return inter / union if union > 0 else 0.0


_NUM = r"\d+(?:\.\d+)?"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?"
_MMSS = re.compile(r"\[\s*(\d{3,4})\s*[,，]\s*(\d{3,4})\s*\]")  # ECVA: [0052,0114] = 00:52-01:14
_RANGE = re.compile(rf"({_CLOCK}|{_NUM})\s*(?:s|sec|seconds?)?\s*(?:-|–|to|until|and)\s*({_CLOCK}|{_NUM})")


def _seconds(text: str) -> float:
    if ":" in text:
        value = 0.0
        for part in text.split(":"):
            value = value * 60 + float(part)
        return value
    return float(text)


def parse_segments(text: str) -> list[list[float]]:
    """Time segments in an answer: ECVA's ``[mmss,mmss]``, ``mm:ss - mm:ss``, ``2.0 s to 3.5 s``.

    Returns:
        ``[[start, end], ...]`` in seconds, in order of appearance (empty if none found).
    """
    mmss = _MMSS.findall(text)
    if mmss:
        return [[_seconds(f"{a[:-2]}:{a[-2:]}"), _seconds(f"{b[:-2]}:{b[-2:]}")] for a, b in mmss]
    return [[_seconds(a), _seconds(b)] for a, b in _RANGE.findall(text)]
