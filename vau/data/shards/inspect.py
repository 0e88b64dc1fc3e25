"""`vau shards inspect`: what a shard set holds and whether it decodes.

A sample counts as good under the rules training applies: the pairing of members
(``vau.data.shards.tario``: out-of-order and duplicate members are bad), the annotation schema, the
text of ``data.target`` and a media member when a target is given (AnomShield training's
rules, :func:`vau.data.media.decode.check_sample`), and ``decode.short_video`` for videos shorter
than a clip.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Optional

from vau.config.data import DecodeConfig
from vau.data.shards.annotation import KINDS
from vau.data.media.decode import SampleDecoder
from vau.data.shards.shardlist import PipeNotAllowed, expand_shards, shard_sizes
from vau.data.shards.tario import BadSample, iter_shard
from vau.errors import ConfigError


@dataclass
class ShardReport:
    """Summary of a shard set."""

    shards: int = 0
    """Shard files."""
    samples: int = 0
    """Samples read whole with a valid annotation."""
    bad: int = 0
    """Bad samples (truncated tar, missing/invalid annotation, failed decode check)."""
    members: dict[str, int] = field(default_factory=dict)
    """Member extension -> samples having it (mp4, json, clip.npy, ...)."""
    kinds: dict[str, int] = field(default_factory=dict)
    """Annotation section -> samples having it."""
    decoded: int = 0
    """Samples that passed the full decode check."""
    short_videos: int = 0
    """Videos with fewer frames than a clip takes (bad under ``short_video=reject``, padded under ``pad``)."""
    sizes_json: Optional[int] = None
    """Sample count recorded in sizes.json (None if absent)."""
    errors: list[str] = field(default_factory=list)
    """First few bad-sample messages."""
    examples: list[dict] = field(default_factory=list)
    """Shapes of the first decoded samples."""

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def _shape(v: object) -> object:
    return list(v.shape) if hasattr(v, "shape") else v


def inspect_shards(spec: str, decode: int = 3, max_errors: int = 10, *, target: Optional[str] = None,
                   frames: int = DecodeConfig.frames, short_video: str = DecodeConfig.short_video,
                   allow_pipe: bool = False) -> ShardReport:
    """Reads every sample of a shard set, checks it as training would; fully decodes the first ``decode``.

    Args:
        spec: Shard spec (brace pattern, glob, folder, URLs; see ``vau.data.shards.shardlist``).
        decode: Samples to run through the full decoder (video frames, image, features).
        max_errors: Bad-sample messages kept in the report.
        target: ``data.target`` of AnomShield training: the annotation must hold its text and
            the sample a video or image member; None = the schema only (any family).
        frames: ``data.decode.frames``: videos shorter than this are short videos.
        short_video: ``data.decode.short_video``: ``reject`` counts short videos bad, ``pad`` good.
        allow_pipe: Run ``pipe:`` shard commands (``data.allow_pipe``).
    """
    if frames < 1:
        raise ConfigError(f"frames={frames}: a clip needs at least 1 frame")
    try:
        urls = expand_shards(spec, allow_pipe=allow_pipe)
    except PipeNotAllowed as e:
        raise PipeNotAllowed(e.url, "pass --allow-pipe to run it") from None
    report = ShardReport(shards=len(urls))
    sizes = shard_sizes(urls)
    report.sizes_json = sum(sizes) if sizes is not None else None
    decoder = SampleDecoder(DecodeConfig(raw=True, frames=frames, short_video=short_video), train=False,
                            target=target, need_media=target is not None)
    members: Counter = Counter()
    kinds: Counter = Counter()

    def bad(key: str, url: str, reason: str) -> None:
        report.bad += 1
        if len(report.errors) < max_errors:
            report.errors.append(f"{url}: {key}: {reason}")

    for url in urls:
        for item in iter_shard(url):
            if isinstance(item, BadSample):
                bad(item.key, item.url, item.reason)
                continue
            key = item["__key__"]
            try:
                if report.decoded < decode:
                    out = decoder(item)
                    ann = out["annotation"]
                    report.decoded += 1
                    report.examples.append({"key": key, **{k: _shape(v) for k, v in out.items()
                                                           if k in ("video", "image", "fps", "num_frames")}})
                else:
                    # The decoder's own checks without decoding frames: the schema and pairing
                    # rules, then the short-video policy from a probe (demuxing only).
                    ann = decoder.check(item)
                    decoder.check_clip(item)
            except Exception as e:  # noqa: BLE001 - the report lists every kind of failure
                bad(key, url, f"{type(e).__name__}: {' '.join(str(e).split())}")
                continue
            report.samples += 1
            members.update(k for k in item if not k.startswith("__"))
            kinds.update(k for k in KINDS if k in ann)
    report.members, report.kinds = dict(sorted(members.items())), dict(sorted(kinds.items()))
    report.short_videos = decoder.short_videos
    return report


def format_report(spec: str, r: ShardReport) -> str:
    """Human-readable report."""
    lines = [
        f"shards:   {r.shards} ({spec})",
        f"samples:  {r.samples} good, {r.bad} bad" + (f" (sizes.json says {r.sizes_json})" if r.sizes_json is not None else ""),
        "members:  " + (", ".join(f"{k}: {v}" for k, v in r.members.items()) or "-"),
        "kinds:    " + (", ".join(f"{k}: {v}" for k, v in r.kinds.items()) or "-"),
        f"decoded:  {r.decoded} sample(s) decoded in full",
    ]
    if r.short_videos:
        lines.append(f"short:    {r.short_videos} video(s) with fewer frames than a clip takes")
    lines += [f"  {e}" for e in r.examples]
    if r.errors:
        lines.append("bad samples:" + (f" (first {len(r.errors)})" if r.bad > len(r.errors) else ""))
        lines += [f"  {e}" for e in r.errors]
    return "\n".join(lines)
