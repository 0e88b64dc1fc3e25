"""Frame-index sampling (vau.data.media.sampling): exact small cases, properties, bad input."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from vau.data.media import sampling as S


def _pairs(seed: int, count: int = 300, max_frames: int = 200, max_n: int = 300):
    r = np.random.default_rng(seed)
    return [
        (int(r.integers(1, max_frames + 1)), int(r.integers(1, max_n + 1))) for _ in range(count)
    ]


def _half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


# ---------------------------------------------------------------- uniform


def test_uniform_exact_small_cases():
    assert S.uniform(10, 4) == [1, 3, 6, 8]  # 1.25, 3.75, 6.25, 8.75
    assert S.uniform(3, 5) == [0, 0, 1, 2, 2]  # 0.3, 0.9, 1.5, 2.1, 2.7
    assert S.uniform(5, 5) == [0, 1, 2, 3, 4]
    assert S.uniform(1, 3) == [0, 0, 0]
    assert S.uniform(100, 1) == [50]


def test_uniform_matches_formula_and_properties():
    for num_frames, n in _pairs(0):
        got = S.uniform(num_frames, n)
        assert got == [int((i + 0.5) * num_frames / n) for i in range(n)]
        assert len(got) == n
        assert all(0 <= f < num_frames for f in got)
        assert got == sorted(got)
        if n <= num_frames:
            assert len(set(got)) == n  # no repeats when there are enough frames


# ---------------------------------------------------------------- segments


def test_segments_exact():
    assert S.segments(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert S.segments(8, 8) == [(i, i + 1) for i in range(8)]
    assert S.segments(7, 1) == [(0, 7)]


def test_segments_cover_exactly_without_overlap():
    for num_frames, n in _pairs(1):
        n = min(n, num_frames)
        segs = S.segments(num_frames, n)
        assert len(segs) == n
        assert segs[0][0] == 0 and segs[-1][1] == num_frames
        assert all(s < e for s, e in segs)  # none empty
        assert all(segs[i][1] == segs[i + 1][0] for i in range(n - 1))  # contiguous
        covered = [f for s, e in segs for f in range(s, e)]
        assert covered == list(range(num_frames))  # every frame exactly once
        lengths = [e - s for s, e in segs]
        assert max(lengths) - min(lengths) <= 1  # equal up to rounding


# ---------------------------------------------------------------- random_in_segments


def test_random_in_segments_properties():
    rng = np.random.default_rng(123)
    for num_frames, n in _pairs(2):
        got = S.random_in_segments(num_frames, n, rng)
        assert len(got) == n
        assert all(isinstance(f, int) for f in got)
        assert all(0 <= f < num_frames for f in got)
        assert got == sorted(got)
        for i, f in enumerate(got):
            lo = i * num_frames // n
            hi = (i + 1) * num_frames // n
            if hi > lo:
                assert lo <= f < hi, (num_frames, n, i, f)
            else:  # empty segment when n > num_frames: its start frame
                assert f == lo


def test_random_in_segments_covers_whole_segment():
    # With enough draws every frame of every segment appears, and nothing else does.
    rng = np.random.default_rng(5)
    seen = [set() for _ in range(3)]
    for _ in range(400):
        for i, f in enumerate(S.random_in_segments(12, 3, rng)):
            seen[i].add(f)
    assert seen == [set(range(0, 4)), set(range(4, 8)), set(range(8, 12))]


def test_random_in_segments_seeded_determinism():
    a = S.random_in_segments(1000, 16, np.random.default_rng(7))
    b = S.random_in_segments(1000, 16, np.random.default_rng(7))
    c = S.random_in_segments(1000, 16, np.random.default_rng(8))
    assert a == b
    assert a != c


# ---------------------------------------------------------------- by_fps


def _by_fps_reference(num_frames, fps, target_fps):
    fps, target_fps = Fraction(fps), Fraction(target_fps)
    out, k = [], 0
    while Fraction(k) / target_fps < Fraction(num_frames) / fps:
        out.append(min(_half_up(Fraction(k) / target_fps * fps), num_frames - 1))
        k += 1
    return out


def test_by_fps_exact():
    # 1 s at 30 fps sampled at 4 fps: positions 0, 7.5, 15, 22.5 -> halves round up.
    assert S.by_fps(30, 30, 4) == [0, 8, 15, 23]
    assert S.by_fps(100, 25, 1) == [0, 25, 50, 75]
    assert S.by_fps(101, 25, 1) == [0, 25, 50, 75, 100]
    assert S.by_fps(5, 10, 1) == [0]  # 0.5 s of video: only t = 0
    # Upsampling repeats frames and clips the last to the final frame.
    assert S.by_fps(3, 10, 20) == [0, 1, 1, 2, 2, 2]  # 0, .5, 1, 1.5, 2, 2.5 -> clip
    assert S.by_fps(3, 10, 20) == _by_fps_reference(3, 10, 20)


def test_by_fps_matches_reference():
    cases = [
        (n, fps, t)
        for n in (1, 7, 30, 31, 97, 300)
        for fps in (10, 24, 25, 30)
        for t in (1, 2, 3, 4, 8)
    ]
    for num_frames, fps, target in cases:
        got = S.by_fps(num_frames, fps, target)
        assert got == _by_fps_reference(num_frames, fps, target), (num_frames, fps, target)
        assert all(0 <= f < num_frames for f in got) and got == sorted(got)


def test_by_fps_max_frames_uniform_subsample():
    full = S.by_fps(300, 30, 4)
    assert len(full) == 40
    capped = S.by_fps(300, 30, 4, max_frames=10)
    assert capped == [full[int((i + 0.5) * 40 / 10)] for i in range(10)]
    assert S.by_fps(300, 30, 4, max_frames=100) == full  # cap above the count: unchanged


# ---------------------------------------------------------------- coarse / dense


def test_coarse_exact_and_grouping():
    assert S.coarse(64, 8, 4) == [[4, 12], [20, 28], [36, 44], [52, 60]]
    for num_frames in (5, 32, 100, 1001):
        groups = S.coarse(num_frames)
        assert len(groups) == 8 and all(len(g) == 4 for g in groups)
        assert [f for g in groups for f in g] == S.uniform(num_frames, 32)


def test_dense_in_segments_exact():
    # Segments of 10 frames; 4 frames at offsets int((j+.5)*10/4) = 1, 3, 6, 8.
    assert S.dense_in_segments(80, [2, 0, 2], n_segments=8, k=4) == [1, 3, 6, 8, 21, 23, 26, 28]


def test_dense_in_segments_properties():
    r = np.random.default_rng(3)
    for _ in range(200):
        num_frames = int(r.integers(8, 500))
        n_segments = int(r.integers(1, min(num_frames, 16) + 1))
        k = int(r.integers(1, 20))
        chosen = [int(c) for c in r.integers(0, n_segments, size=int(r.integers(1, 6)))]
        got = S.dense_in_segments(num_frames, chosen, n_segments=n_segments, k=k)
        segs = S.segments(num_frames, n_segments)
        distinct = sorted(set(chosen))
        assert len(got) == k * len(distinct)
        assert got == sorted(got)
        for block, c in enumerate(distinct):
            s, e = segs[c]
            part = got[block * k : (block + 1) * k]
            assert all(s <= f < e for f in part)


# ---------------------------------------------------------------- spans


def test_seconds_to_frames_exact():
    spans = [[1.0, 2.5], [-1, 0.1], [9, 20], [0.25, 0.26]]
    assert S.seconds_to_frames(spans, 10, 50) == [(10, 25), (0, 1), (50, 50), (2, 3)]


def test_remove_spans_bruteforce():
    r = np.random.default_rng(4)
    for _ in range(200):
        num_frames = int(r.integers(1, 100))
        indices = [int(x) for x in r.integers(0, num_frames, size=int(r.integers(0, 40)))]
        spans = []
        for _ in range(int(r.integers(0, 4))):
            s = int(r.integers(0, num_frames + 1))
            spans.append((s, int(r.integers(s, num_frames + 1))))
        inside = {f for s, e in spans for f in range(s, e)}
        got = S.remove_spans(indices, spans)
        assert got == [f for f in indices if f not in inside]  # order and repeats kept
        assert not set(got) & inside


def test_remove_spans_exact():
    assert S.remove_spans([0, 2, 4, 5, 7, 9], [(2, 5), (9, 10)]) == [0, 5, 7]
    assert S.remove_spans([3, 1], []) == [3, 1]


def test_outside_spans_uniform():
    # Remaining frames: 0, 1, 5, 6, 8, 9; uniform(6, 3) picks positions 1, 3, 5.
    assert S.outside_spans_uniform(10, 3, [(2, 5), (7, 8)]) == [1, 6, 9]
    r = np.random.default_rng(6)
    for _ in range(100):
        num_frames, n = int(r.integers(2, 200)), int(r.integers(1, 50))
        s = int(r.integers(0, num_frames))
        e = int(r.integers(s, num_frames))  # leaves at least the last frame
        got = S.outside_spans_uniform(num_frames, n, [(s, e)])
        assert len(got) == n and got == sorted(got)
        assert all(0 <= f < num_frames and not s <= f < e for f in got)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: S.uniform(0, 4), "num_frames"),
        (lambda: S.uniform(10, 0), "n"),
        (lambda: S.uniform(10, -2), "n"),
        (lambda: S.uniform(10.0, 2), "num_frames"),
        (lambda: S.uniform(True, 2), "num_frames"),
        (lambda: S.random_in_segments(0, 4, np.random.default_rng(0)), "num_frames"),
        (lambda: S.random_in_segments(10, 0, np.random.default_rng(0)), "n"),
        (lambda: S.random_in_segments(10, 2, 0), "rng"),
        (lambda: S.by_fps(0, 30, 1), "num_frames"),
        (lambda: S.by_fps(10, 0, 1), "fps"),
        (lambda: S.by_fps(10, 30, -1), "target_fps"),
        (lambda: S.by_fps(10, float("nan"), 1), "fps"),
        (lambda: S.by_fps(10, 30, 1, max_frames=0), "max_frames"),
        (lambda: S.segments(0, 1), "num_frames"),
        (lambda: S.segments(5, 0), "n_segments"),
        (lambda: S.segments(5, 6), "n_segments"),
        (lambda: S.coarse(100, 30, 8), "n_frames"),
        (lambda: S.coarse(100, 32, 0), "n_segments"),
        (lambda: S.dense_in_segments(80, [8], 8, 4), "chosen"),
        (lambda: S.dense_in_segments(80, [-1], 8, 4), "chosen"),
        (lambda: S.dense_in_segments(80, [], 8, 4), "chosen"),
        (lambda: S.dense_in_segments(80, [0], 8, 0), "k"),
        (lambda: S.seconds_to_frames([[2, 1]], 10, 50), "spans"),
        (lambda: S.seconds_to_frames([[1]], 10, 50), "spans"),
        (lambda: S.seconds_to_frames([[0, 1]], 0, 50), "fps"),
        (lambda: S.seconds_to_frames([[0, 1]], 10, 0), "num_frames"),
        (lambda: S.remove_spans([1], [(5, 2)]), "spans_frames"),
        (lambda: S.remove_spans([1], [(-1, 2)]), "spans_frames"),
        (lambda: S.outside_spans_uniform(10, 3, [(0, 10)]), "spans_frames"),
        (lambda: S.outside_spans_uniform(10, 3, [(0, 5), (5, 10)]), "spans_frames"),
        (lambda: S.outside_spans_uniform(10, 3, [(8, 12)]), "spans_frames"),
        (lambda: S.outside_spans_uniform(10, 0, []), "n"),
    ],
)
def test_bad_input_raises_naming_argument(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()
