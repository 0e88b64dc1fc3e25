"""Frame-index sampling: which frame numbers to decode from a video.

Pure functions: no I/O and no torch. Each takes the video's length in frames (and its
frame rate where time matters) and returns frame indices in ``[0, num_frames)``, sorted
ascending unless a docstring says otherwise. Randomness comes only from an explicit
``numpy.random.Generator`` argument, so a seeded generator gives a repeatable result.

Spans of frames are half-open ``(start, end)`` pairs: frame ``f`` is inside when
``start <= f < end``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "uniform",
    "random_in_segments",
    "by_fps",
    "segments",
    "coarse",
    "dense_in_segments",
    "seconds_to_frames",
    "remove_spans",
    "outside_spans_uniform",
]


def _int(name: str, value: object) -> int:
    """Returns ``value`` as an int, or raises ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _positive_int(name: str, value: object) -> int:
    """Returns ``value`` as an int > 0, or raises ValueError naming ``name``."""
    v = _int(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    return v


def _positive_float(name: str, value: object) -> float:
    """Returns ``value`` as a finite float > 0, or raises ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _spans(name: str, spans: Iterable[Sequence[object]]) -> list[tuple[int, int]]:
    """Validates integer ``(start, end)`` spans with ``0 <= start <= end``."""
    out = []
    for j, span in enumerate(spans):
        if len(span) != 2:
            raise ValueError(f"{name}[{j}] must be a (start, end) pair, got {span!r}")
        start, end = _int(f"{name}[{j}]", span[0]), _int(f"{name}[{j}]", span[1])
        if start < 0 or end < start:
            raise ValueError(f"{name}[{j}] must satisfy 0 <= start <= end, got {span!r}")
        out.append((start, end))
    return out


def uniform(num_frames: int, n: int) -> list[int]:
    """Picks ``n`` frames at the centres of ``n`` equal segments of the video.

    Frame ``i`` is ``int((i + 0.5) * num_frames / n)`` (computed in exact integer
    arithmetic). When ``n > num_frames`` frames repeat, so the result always has length
    ``n``.

    Args:
        num_frames: Number of frames in the video (> 0).
        n: Number of frames to pick (> 0).

    Returns:
        ``n`` non-decreasing frame indices in ``[0, num_frames)``.

    Raises:
        ValueError: If ``num_frames`` or ``n`` is not a positive integer.
    """
    # Used by: AnomShield hard prompt coarse stage (ECVA §IV-A), via coarse(); AnomEval §V.
    num_frames = _positive_int("num_frames", num_frames)
    n = _positive_int("n", n)
    return [((2 * i + 1) * num_frames) // (2 * n) for i in range(n)]


def random_in_segments(num_frames: int, n: int, rng: np.random.Generator) -> list[int]:
    """Picks one random frame in each of ``n`` equal segments (TSN-style sampling).

    Segment ``i`` is ``[i * num_frames // n, (i + 1) * num_frames // n)``. When
    ``n > num_frames`` some segments are empty; an empty segment yields its start frame,
    so the result always has length ``n``.

    Args:
        num_frames: Number of frames in the video (> 0).
        n: Number of segments, and of frames returned (> 0).
        rng: Source of randomness; the same seeded generator gives the same frames.

    Returns:
        ``n`` non-decreasing frame indices in ``[0, num_frames)``.

    Raises:
        ValueError: If ``num_frames`` or ``n`` is not a positive integer, or ``rng`` is
            not a ``numpy.random.Generator``.
    """
    # Used by: training-time random alternative to uniform() for the ECVA AnomShield hard
    # prompt frames (§IV-A); evaluation uses uniform().
    num_frames = _positive_int("num_frames", num_frames)
    n = _positive_int("n", n)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    starts = np.arange(n, dtype=np.int64) * num_frames // n
    ends = np.maximum(np.arange(1, n + 1, dtype=np.int64) * num_frames // n, starts + 1)
    return [int(x) for x in rng.integers(starts, ends)]


def by_fps(
    num_frames: int, fps: float, target_fps: float, max_frames: int | None = None
) -> list[int]:
    """Samples the video at a fixed rate of ``target_fps`` frames per second.

    Takes times ``t_k = k / target_fps`` for every ``k >= 0`` with ``t_k`` inside the
    video (``t_k < num_frames / fps``); each maps to frame ``round(t_k * fps)`` (halves
    round up), clipped to the last frame. One index per time point, so when
    ``target_fps > fps`` indices repeat. If ``max_frames`` is given and there are more
    time points, ``max_frames`` of them are kept by :func:`uniform` subsampling.

    Args:
        num_frames: Number of frames in the video (> 0).
        fps: The video's frame rate (> 0).
        target_fps: Sampling rate in frames per second (> 0).
        max_frames: Optional cap on the number of frames returned (> 0).

    Returns:
        Non-decreasing frame indices in ``[0, num_frames)``; at least one (frame 0).

    Raises:
        ValueError: If an argument is not positive (or not a number).
    """
    # Used by: fixed-rate frame sampling for the VLM input (ECVA AnomShield §IV-A).
    num_frames = _positive_int("num_frames", num_frames)
    fps = _positive_float("fps", fps)
    target_fps = _positive_float("target_fps", target_fps)
    if max_frames is not None:
        max_frames = _positive_int("max_frames", max_frames)
    # Frame positions k * fps / target_fps for k with k * fps / target_fps < num_frames.
    step = fps / target_fps
    count = max(1, math.ceil(num_frames / step))
    if (count - 1) * step >= num_frames:  # guard against float round-up in ceil
        count = max(1, count - 1)
    pos = np.arange(count, dtype=np.float64) * step
    idx = np.minimum(np.floor(pos + 0.5).astype(np.int64), num_frames - 1)
    out = [int(x) for x in idx]
    if max_frames is not None and len(out) > max_frames:
        out = [out[p] for p in uniform(len(out), max_frames)]
    return out


def segments(num_frames: int, n_segments: int) -> list[tuple[int, int]]:
    """Splits the video into ``n_segments`` equal, contiguous ``[start, end)`` ranges.

    Segment ``i`` is ``[i * num_frames // n_segments, (i + 1) * num_frames // n_segments)``;
    the segments cover ``[0, num_frames)`` exactly, without overlap, and none is empty.

    Args:
        num_frames: Number of frames in the video (> 0).
        n_segments: Number of segments (> 0 and <= ``num_frames``).

    Returns:
        ``n_segments`` ``(start, end)`` pairs in order; the last ends at ``num_frames``.

    Raises:
        ValueError: If an argument is not a positive integer, or
            ``n_segments > num_frames``.
    """
    # Used by: AnomShield hard prompt segment split (ECVA §IV-A), via dense_in_segments().
    num_frames = _positive_int("num_frames", num_frames)
    n_segments = _positive_int("n_segments", n_segments)
    if n_segments > num_frames:
        raise ValueError(f"n_segments must be <= num_frames ({num_frames}), got {n_segments}")
    bounds = [i * num_frames // n_segments for i in range(n_segments + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def coarse(num_frames: int, n_frames: int = 32, n_segments: int = 8) -> list[list[int]]:
    """Coarse stage of the hard prompt: uniform frames grouped into segments.

    Picks ``n_frames`` frames with :func:`uniform` and splits them, in order, into
    ``n_segments`` groups of ``n_frames // n_segments`` consecutive picks.

    Args:
        num_frames: Number of frames in the video (> 0).
        n_frames: Total frames to pick (> 0, divisible by ``n_segments``).
        n_segments: Number of groups (> 0).

    Returns:
        ``n_segments`` lists of frame indices, each non-decreasing, in video order.

    Raises:
        ValueError: If an argument is not a positive integer, or ``n_frames`` is not
            divisible by ``n_segments``.
    """
    # Used by: ECVA AnomShield hard prompt, coarse stage (§IV-A).
    num_frames = _positive_int("num_frames", num_frames)
    n_frames = _positive_int("n_frames", n_frames)
    n_segments = _positive_int("n_segments", n_segments)
    if n_frames % n_segments:
        raise ValueError(f"n_frames ({n_frames}) must be divisible by n_segments ({n_segments})")
    per = n_frames // n_segments
    picks = uniform(num_frames, n_frames)
    return [picks[s * per : (s + 1) * per] for s in range(n_segments)]


def dense_in_segments(
    num_frames: int, chosen: Iterable[int], n_segments: int = 8, k: int = 8
) -> list[int]:
    """Dense stage of the hard prompt: ``k`` uniform frames inside each chosen segment.

    The video is split with ``segments(num_frames, n_segments)``; for each distinct
    chosen segment index, in ascending segment order, ``k`` frames are placed as
    ``start + uniform(end - start, k)`` (repeating frames if the segment is shorter
    than ``k``).

    Args:
        num_frames: Number of frames in the video (> 0).
        chosen: Segment indices in ``[0, n_segments)``; duplicates are ignored.
        n_segments: Number of segments in the split (> 0, <= ``num_frames``).
        k: Frames per chosen segment (> 0).

    Returns:
        ``k * len(set(chosen))`` non-decreasing frame indices.

    Raises:
        ValueError: If an argument is not a positive integer, ``chosen`` is empty or
            holds an index outside ``[0, n_segments)``.
    """
    # Used by: ECVA AnomShield hard prompt, dense resampling of selected segments (§IV-A).
    k = _positive_int("k", k)
    segs = segments(num_frames, n_segments)
    wanted = set()
    for c in chosen:
        c = _int("chosen", c)
        if not 0 <= c < len(segs):
            raise ValueError(f"chosen index {c} is outside [0, {len(segs)})")
        wanted.add(c)
    if not wanted:
        raise ValueError("chosen must hold at least one segment index")
    out: list[int] = []
    for c in sorted(wanted):
        start, end = segs[c]
        out.extend(start + off for off in uniform(end - start, k))
    return out


def seconds_to_frames(
    spans: Iterable[Sequence[float]], fps: float, num_frames: int
) -> list[tuple[int, int]]:
    """Converts ``[[start_s, end_s], ...]`` in seconds to ``[start, end)`` frame spans.

    ``start = floor(start_s * fps)`` and ``end = ceil(end_s * fps)``, both clipped to
    ``[0, num_frames]``, so every frame overlapping the time span is included. A span
    wholly outside the video becomes empty (``start == end``); output order and length
    follow the input.

    Args:
        spans: Pairs of ``(start_s, end_s)`` seconds with ``start_s <= end_s``.
        fps: The video's frame rate (> 0).
        num_frames: Number of frames in the video (> 0).

    Returns:
        One ``(start_frame, end_frame)`` pair per input span.

    Raises:
        ValueError: If ``fps`` or ``num_frames`` is not positive, or a span is not a
            pair of finite numbers with ``start_s <= end_s``.
    """
    # Used by: AnomEval hallucination check (§V), turning annotated anomaly times to frames.
    fps = _positive_float("fps", fps)
    num_frames = _positive_int("num_frames", num_frames)
    out = []
    for j, span in enumerate(spans):
        if len(span) != 2:
            raise ValueError(f"spans[{j}] must be a (start_s, end_s) pair, got {span!r}")
        try:
            s, e = float(span[0]), float(span[1])
        except (TypeError, ValueError):
            raise ValueError(f"spans[{j}] must hold numbers, got {span!r}") from None
        if not (math.isfinite(s) and math.isfinite(e)) or e < s:
            raise ValueError(f"spans[{j}] must be finite with start_s <= end_s, got {span!r}")
        start = min(max(math.floor(s * fps), 0), num_frames)
        end = min(max(math.ceil(e * fps), start), num_frames)
        out.append((start, end))
    return out


def remove_spans(indices: Iterable[int], spans_frames: Iterable[Sequence[int]]) -> list[int]:
    """Drops every frame index that lies inside any ``[start, end)`` span.

    Args:
        indices: Frame indices; their order and repeats are kept.
        spans_frames: ``(start, end)`` frame spans with ``0 <= start <= end``.

    Returns:
        The indices not in any span, in their input order (not re-sorted).

    Raises:
        ValueError: If a span or an index is malformed.
    """
    # Used by: AnomEval hallucination check (§V): the anomaly frames removed.
    spans = _spans("spans_frames", spans_frames)
    out = []
    for f in indices:
        f = _int("indices", f)
        if not any(s <= f < e for s, e in spans):
            out.append(f)
    return out


def outside_spans_uniform(
    num_frames: int, n: int, spans_frames: Iterable[Sequence[int]]
) -> list[int]:
    """Picks ``n`` frames uniformly over the frames not in any span.

    The frames of ``[0, num_frames)`` outside every span are listed in order and ``n``
    of them are chosen with :func:`uniform` over that list (repeating if fewer than
    ``n`` remain).

    Args:
        num_frames: Number of frames in the video (> 0).
        n: Number of frames to pick (> 0).
        spans_frames: ``(start, end)`` spans with ``0 <= start <= end <= num_frames``.

    Returns:
        ``n`` non-decreasing frame indices, none inside a span.

    Raises:
        ValueError: If an argument is not positive, a span lies outside the video, or
            the spans cover every frame.
    """
    # Used by: AnomEval hallucination check (§V): a video with the anomaly removed.
    num_frames = _positive_int("num_frames", num_frames)
    n = _positive_int("n", n)
    spans = _spans("spans_frames", spans_frames)
    for j, (s, e) in enumerate(spans):
        if e > num_frames:
            raise ValueError(f"spans_frames[{j}] ends at {e}, past num_frames ({num_frames})")
    keep = np.ones(num_frames, dtype=bool)
    for s, e in spans:
        keep[s:e] = False
    remaining = np.flatnonzero(keep)
    if remaining.size == 0:
        raise ValueError("spans_frames cover every frame; no frames remain outside them")
    return [int(remaining[p]) for p in uniform(int(remaining.size), n)]
