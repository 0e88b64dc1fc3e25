"""Synthetic samples and the synthetic data set (raw media, manifests, shards).

Sample ``i`` is drawn from its own random stream, ``default_rng([seed, stream, i])``, so it
is the same however many samples are made. The anomaly class of video ``i`` comes from a
seeded shuffle of a fixed cycle (2 normal + one of each event class per 6 videos), which keeps
every class present and about a third of the videos normal even in small sets.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vau.data.synth.events import EVENTS, EventKind
from vau.io import atomic_write_text
from vau.progress import track
from vau.data.synth.render import (
    encode_mp4,
    encode_png,
    render_audio,
    render_frame,
    render_video,
)
from vau.data.synth.scene import (
    FPS,
    HEIGHT,
    WIDTH,
    Scene,
    place_apart,
    sample_actors,
    sample_background,
)
from vau.data.synth.text import image_annotation, video_annotation
from vau.errors import ConfigError, ExistsError, UnknownNameError

NORMAL = "normal"
CYCLE: tuple[str, ...] = (NORMAL,) * (len(EVENTS) // 2) + tuple(EVENTS)
"""One block of video classes; each block of ``len(CYCLE)`` videos is a shuffle of it."""
CLASSES: tuple[str, ...] = (NORMAL, *EVENTS)
STEP = 0.5
"""Durations and event spans lie on this grid (seconds), so their text is exact."""
DURATION_RANGE = (2.0, 8.0)
SOURCE = "synth"
SETS = ("videos", "images")
STAMP = "synth.json"
"""Settings of the last complete run, beside the shards."""
VERSION = 4
"""Bumped when the generator's output changes, so old data is not taken as current."""
SPLITS = ("train", "val")

# Separate random streams per use, so e.g. image i never mirrors video i.
_VIDEO_STREAM, _IMAGE_STREAM, _CLASS_STREAM = 1, 2, 3


def sample_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The random stream of one sample (or one class block)."""
    return np.random.default_rng([seed, stream, index])


def video_class(seed: int, index: int) -> str:
    """Anomaly class of video ``index`` (``normal`` or an ``EVENTS`` key)."""
    block, pos = divmod(index, len(CYCLE))
    return CYCLE[int(sample_rng(seed, _CLASS_STREAM, block).permutation(len(CYCLE))[pos])]


def _on_grid(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo + STEP * int(rng.integers(0, round((hi - lo) / STEP) + 1))


def sample_span(rng: np.random.Generator, duration: float, kind: EventKind) -> tuple[float, float]:
    """An event span on the grid, leaving at least one step of calm before and after it."""
    length = _on_grid(rng, kind.span[0], min(kind.span[1], duration - 2 * STEP))
    start = _on_grid(rng, STEP, duration - STEP - length)
    return start, start + length


def simulate_video(rng: np.random.Generator, kind: str, *, width: int = WIDTH, height: int = HEIGHT,
                   fps: int = FPS) -> Scene:
    """A 2-3 shape scene of 2-8 s with the event ``kind`` (none for ``normal``)."""
    spec = EVENTS.get(kind)
    num_frames = round(_on_grid(rng, *DURATION_RANGE) * fps)
    scene = Scene(width, height, fps, num_frames, sample_background(rng), [])
    count = int(rng.integers(max(2, spec.shapes if spec else 0), 4))
    scene.actors = sample_actors(rng, count, scene.times, width, height, avoid=spec.avoid if spec else ())
    if spec is not None:
        start, end = sample_span(rng, scene.duration, spec)
        scene.event = spec.simulate(scene, rng, start, end)
    return scene


@dataclass
class SynthSample:
    """One generated sample."""

    key: str
    """Sample key (tar member prefix)."""
    media: str
    """Manifest field of the media: ``video`` or ``image``."""
    ext: str
    """File extension of ``data``."""
    data: bytes
    """The encoded mp4 or png."""
    annotation: dict
    """The ``<key>.json`` annotation."""
    scene: Scene
    """The ground truth it was made from."""


def _meta(seed: int, index: int, split: str, scene: Scene) -> dict:
    return {"source": SOURCE, "seed": seed, "index": index, "split": split,
            "width": scene.width, "height": scene.height}


def make_video(seed: int, index: int, *, kind: str | None = None, split: str = "train") -> SynthSample:
    """Synthetic video ``index`` of the data set with this seed.

    Args:
        seed: Data-set seed (>= 0).
        index: Sample number (>= 0).
        kind: Force an anomaly class (default: ``video_class(seed, index)``).
        split: Stored in ``meta.split``.

    Returns:
        The mp4 (H.264 + AAC) and its annotation.

    Raises:
        KeyError: ``kind`` is not one of ``CLASSES``.
    """
    kind = video_class(seed, index) if kind is None else kind
    if kind not in CLASSES:
        raise UnknownNameError(f"unknown synthetic video class {kind!r} (valid: {', '.join(CLASSES)})")
    rng = sample_rng(seed, _VIDEO_STREAM, index)
    scene = simulate_video(rng, kind)
    data = encode_mp4(render_video(scene), int(scene.fps), render_audio(scene, rng))
    meta = {**_meta(seed, index, split, scene), "fps": scene.fps, "duration": scene.duration,
            "num_frames": scene.num_frames}
    return SynthSample(f"synth-video-{index:06d}", "video", "mp4", data, video_annotation(scene, meta, rng), scene)


def make_image(seed: int, index: int, *, split: str = "train") -> SynthSample:
    """Synthetic image ``index``: 2-4 still shapes, as a PNG with its captions."""
    rng = sample_rng(seed, _IMAGE_STREAM, index)
    scene = Scene(WIDTH, HEIGHT, 1, 1, sample_background(rng), [])
    scene.actors = sample_actors(rng, int(rng.integers(2, 5)), scene.times, WIDTH, HEIGHT)
    place_apart(rng, scene.actors, WIDTH, HEIGHT)
    data = encode_png(render_frame(scene, 0))
    return SynthSample(f"synth-image-{index:06d}", "image", "png", data,
                       image_annotation(scene, _meta(seed, index, split, scene)), scene)


MAKERS: dict[str, Callable[..., SynthSample]] = {"videos": make_video, "images": make_image}


def val_indices(count: int, fraction: float) -> frozenset[int]:
    """Which of ``count`` samples are validation samples, spread evenly over the indices.

    ``round(count * fraction)`` of them, but at least one and never all when there are two or
    more samples and ``fraction > 0``, so both splits exist.
    """
    k = round(count * fraction)
    if fraction > 0 and count >= 2:
        k = min(max(k, 1), count - 1)
    return frozenset(int((j + 0.5) * count / k) for j in range(k)) if k else frozenset()


def shard_maxcount(count: int, maxcount: int) -> int:
    """Samples per shard: at most ``maxcount``, and few enough that a set of two or more
    samples spans at least two shards (one shard per rank/worker in multi-process tests)."""
    return max(1, min(maxcount, math.ceil(count / 2)))


@dataclass
class SynthSummary:
    """What ``generate`` wrote."""

    root: Path
    """``<out>/synth``."""
    counts: dict[str, int] = field(default_factory=dict)
    """Samples per set, ``{"videos-train": 24, ...}``."""
    shards: dict[str, list[str]] = field(default_factory=dict)
    """Shard files per set."""
    seconds: float = 0.0
    """Wall time."""
    up_to_date: bool = False
    """The shards were already there, made with the same settings; nothing was written."""

    @property
    def shard_dir(self) -> Path:
        """Where the shards are."""
        return self.root / "shards"


def _check_args(seed: int, videos: int, images: int, val_fraction: float, maxcount: int) -> None:
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    if videos < 0 or images < 0:
        raise ConfigError(f"--videos and --images must be >= 0, got {videos}, {images}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if maxcount < 1:
        raise ConfigError(f"--maxcount must be >= 1, got {maxcount}")


def generate(
    out: str | Path,
    *,
    seed: int = 0,
    videos: int = 32,
    images: int = 32,
    val_fraction: float = 0.25,
    maxcount: int = 8,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> SynthSummary:
    """Writes the synthetic data set under ``<out>/synth``.

    Layout: ``raw/{videos,images}/<key>.{mp4,png}``, manifests ``{videos,images}-{train,val}.jsonl``
    and shards ``shards/{videos,images}-{train,val}-%06d.tar`` (with ``sizes.json``).

    Args:
        out: Data root (``data.root`` of the experiments).
        seed: Seed of the whole set; the same seed gives byte-identical shards.
        videos: Number of videos.
        images: Number of images.
        val_fraction: Share of each set that goes to validation.
        maxcount: Samples per shard at most (see ``shard_maxcount``).
        overwrite: Replace existing shards instead of refusing.
        progress: Show progress bars (default: when stderr is a terminal).
        log: Where one-line messages of the shard writer go.

    Returns:
        Counts, shard files and the time taken.

    Raises:
        FileExistsError: ``<out>/synth/shards`` already holds shards and ``overwrite`` is False.
        ValueError: A bad argument, or a generated sample that the shard writer rejected.
    """
    from vau.data.shards.manifest import write_manifest
    from vau.data.shards.writer import rejects_file, write_shards

    _check_args(seed, videos, images, val_fraction, maxcount)
    t0 = time.perf_counter()
    summary = SynthSummary(Path(out) / "synth")
    existing = sorted(summary.shard_dir.glob("*.tar"))
    settings = {"seed": seed, "videos": videos, "images": images, "val_fraction": val_fraction,
                "maxcount": maxcount, "version": VERSION}
    stamp = summary.root / STAMP
    if existing and not overwrite:
        # Same settings: the data would come out byte-identical, so there is nothing to do and
        # `vau synth && vau train ...` can be run again as is.
        if stamp.is_file() and json.loads(stamp.read_text()) == settings:
            return _existing_summary(summary, t0)
        raise ExistsError(f"{summary.shard_dir} already holds {len(existing)} shard(s) made with other settings "
                              "(or not by vau synth); pass --overwrite to replace them")
    stamp.unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    # Media of an earlier, larger run would linger unreferenced; raw/ is only ever ours.
    shutil.rmtree(summary.root / "raw", ignore_errors=True)
    for name, count in (("videos", videos), ("images", images)):
        val = val_indices(count, val_fraction)
        entries: dict[str, list[dict]] = {split: [] for split in SPLITS}
        log(f"vau synth: making {count} {name} in {summary.root / 'raw' / name}, then their shards")
        for i in track(range(count), count, f"making {name}", progress):
            split = "val" if i in val else "train"
            sample = MAKERS[name](seed, i, split=split)
            rel = f"raw/{name}/{sample.key}.{sample.ext}"
            (summary.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (summary.root / rel).write_bytes(sample.data)
            entries[split].append({"key": sample.key, sample.media: rel, "annotation": sample.annotation})
        for split, items in entries.items():
            set_name = f"{name}-{split}"
            manifest = summary.root / f"{set_name}.jsonl"
            write_manifest(manifest, items)
            # Written (and old shards replaced) even when empty, so no stale set survives.
            pattern = str(summary.shard_dir / f"{set_name}-%06d.tar")
            result = write_shards(manifest, pattern, maxcount=shard_maxcount(len(items), maxcount),
                                  overwrite=overwrite, progress=progress, log=log)
            if result.rejected:
                raise ValueError(f"{result.rejected} synthetic sample(s) rejected; see {rejects_file(pattern)}")
            summary.counts[set_name] = result.samples
            summary.shards[set_name] = result.shards
    atomic_write_text(stamp, json.dumps(settings, sort_keys=True) + "\n")
    summary.seconds = time.perf_counter() - t0
    return summary


def _existing_summary(summary: SynthSummary, t0: float) -> SynthSummary:
    from vau.data.shards.shardlist import shard_sizes

    for name in SETS:
        for split in SPLITS:
            set_name = f"{name}-{split}"
            shards = sorted(str(p) for p in summary.shard_dir.glob(f"{set_name}-*.tar"))
            summary.shards[set_name] = shards
            summary.counts[set_name] = sum(shard_sizes(shards) or [0])
    summary.up_to_date = True
    summary.seconds = time.perf_counter() - t0
    return summary
