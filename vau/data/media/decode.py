"""Raw shard samples (member bytes) -> tensors: annotation, frames, image, audio, features."""

from __future__ import annotations

import io
import logging
import zlib
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from vau.config.data import SHORT_VIDEO, DecodeConfig
from vau.data.media import sampling
from vau.data.shards.annotation import parse_annotation
from vau.data.shards.manifest import AUDIO_EXTS, IMAGE_EXTS, VIDEO_EXTS
from vau.registry import Registry
from vau.errors import ConfigError

log = logging.getLogger("vau.data")

FrameSampler = Callable[[int, float, np.random.Generator], list[int]]
FRAME_SAMPLERS: Registry[Callable[[DecodeConfig], FrameSampler]] = Registry("frame sampler")
"""name -> builder(decode config) -> f(num_frames, fps, rng) -> frame indices."""
FRAME_SAMPLERS.register("uniform", lambda c: lambda num, fps, rng: sampling.uniform(num, c.frames))
FRAME_SAMPLERS.register(
    "random_in_segments", lambda c: lambda num, fps, rng: sampling.random_in_segments(num, c.frames, rng))


def _by_fps(c: DecodeConfig) -> FrameSampler:
    if not c.sample_fps:
        raise ConfigError("decode: the 'fps' frame sampler needs decode.sample_fps > 0")
    return lambda num, fps, rng: sampling.by_fps(num, fps, c.sample_fps, max_frames=c.frames)


FRAME_SAMPLERS.register("fps", _by_fps)


def _member(sample: dict, exts: tuple[str, ...]) -> Optional[tuple[str, bytes]]:
    for ext in exts:
        if ext in sample:
            return ext, sample[ext]
    return None


def sample_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """RNG of one sample's random choices: a function of (seed, epoch, key) only.

    Tying randomness to the sample rather than to a worker's history keeps a resumed run
    (which replays the stream but not the decoding) identical to an uninterrupted one.
    """
    return np.random.default_rng([seed, epoch, zlib.crc32(key.encode())])


def check_sample(sample: dict, *, target: Optional[str] = None, prompt: str = "",
                 media: Sequence[str] = ()) -> dict:
    """The checks of a raw sample that training makes before decoding media; returns the annotation.

    Training decoders and `vau shards inspect` both call this, so inspect counts as bad
    exactly the samples these rules make training skip.

    Args:
        sample: A raw sample from ``vau.data.shards.tario.iter_shard``.
        target: ``data.target`` of AnomShield training (conversations, caption, long_caption):
            the annotation must hold its text; None = the schema only.
        prompt: Human prompt of caption targets.
        media: Member extensions of which the sample needs one (empty: none needed).

    Raises:
        ValueError: One line: no ``.json``, invalid JSON/schema, no text for ``target``, no media.
    """
    key = sample["__key__"]
    members = sorted(k for k in sample if not k.startswith("__"))
    if "json" not in sample:
        raise ValueError(f"no {key}.json annotation in the sample (members: {members})")
    ann = parse_annotation(sample["json"])
    if media and _member(sample, tuple(media)) is None:
        raise ValueError(f"no video or image member (members: {members})")
    if target is not None:
        from vau.data.text.conversation import turns_from_annotation

        try:
            turns_from_annotation(ann, target, prompt)
        except ValueError as e:
            raise ValueError(f"{e} (data.target={target})") from None
    return ann


class SampleDecoder:
    """Turns a raw sample ``{"__key__", "json": bytes, "mp4": bytes, ...}`` into tensors.

    Output keys: ``key``, ``url``, ``annotation`` (validated dict) and, when present,
    ``video`` (``float32 [T, 3, S, S]``, or ``uint8 [T, H, W, 3]`` with ``raw``) with
    ``frame_indices``/``fps``/``num_frames``, ``image`` (a one-frame clip like ``video``),
    ``audio`` (``float32 [N]``), and ``features`` (name -> tensor).

    Raises ValueError (one line) for anything that makes the sample unusable; the stream
    counts it as a bad sample. :func:`check_sample` runs first (``target``/``prompt``/
    ``need_media`` are its rules), so a sample is refused before its media are decoded.

    A video with fewer frames than its clip takes (``decode.frames`` for the uniform and
    random samplers) follows ``decode.short_video``: ``reject`` refuses it, ``pad`` repeats
    frames; either way ``short_videos`` counts it. Images are one-frame clips by nature and
    never count as short.
    """

    def __init__(self, cfg: DecodeConfig, *, train: bool, seed: int = 0, target: Optional[str] = None,
                 prompt: str = "", need_media: bool = False) -> None:
        from vau.data.media.video import frame_geometry

        if cfg.short_video not in SHORT_VIDEO:
            raise ConfigError(f"decode.short_video={cfg.short_video!r}: expected one of {', '.join(SHORT_VIDEO)}")
        self.cfg, self.train, self.seed = cfg, train, seed
        self.target, self.prompt = target, prompt
        self.media_exts: tuple[str, ...] = ()
        if need_media:
            self.media_exts = (VIDEO_EXTS if cfg.video else ()) + (IMAGE_EXTS if cfg.image else ())
        self.short_videos = 0  # videos shorter than their clip (rejected or padded), in this process
        self.sampler = FRAME_SAMPLERS.get(cfg.train_sampler if train else cfg.eval_sampler)(cfg)
        self.size, self.mean, self.std = frame_geometry(cfg)
        self.epoch = 0

    def _pixels(self, frames: torch.Tensor) -> torch.Tensor:
        from vau.data.media.video import resize_normalize

        return frames if self.cfg.raw else resize_normalize(frames, self.size, self.mean, self.std)

    def check(self, sample: dict) -> dict:
        """:func:`check_sample` with this decoder's rules; returns the validated annotation."""
        return check_sample(sample, target=self.target, prompt=self.prompt, media=self.media_exts)

    def clip_indices(self, key: str, num_frames: int, fps: float, rng: np.random.Generator) -> list[int]:
        """Frame indices of one clip, under the ``decode.short_video`` policy."""
        idx = list(self.sampler(num_frames, fps, rng))
        if num_frames < len(idx):
            self.short_videos += 1
            if self.cfg.short_video == "reject":
                raise ValueError(f"video has {num_frames} frame(s), fewer than the {len(idx)} a clip takes "
                                 f"(decode.frames={self.cfg.frames}); decode.short_video=reject skips it, pad repeats frames")
            n = self.short_videos
            if n & (n - 1) == 0:  # 1, 2, 4, 8, ...: the count stays visible without a line per sample
                log.warning("padded %d short video(s) so far by repeating frames (latest: %s, %d frame(s) for a "
                            "%d-frame clip; decode.short_video=pad)", n, key, num_frames, len(idx))
        return idx

    def check_clip(self, sample: dict) -> None:
        """Probes the sample's video (no frame decoding) and applies the short-video policy to it."""
        video = _member(sample, VIDEO_EXTS)
        if video is not None and self.cfg.video:
            from vau.data.media.video import probe

            num, fps, _ = probe(video[1])
            self.clip_indices(sample["__key__"], num, fps, sample_rng(self.seed, self.epoch, sample["__key__"]))

    def __call__(self, sample: dict) -> dict[str, Any]:
        key = sample["__key__"]
        out: dict[str, Any] = {"key": key, "url": sample.get("__url__"), "annotation": self.check(sample)}
        video = _member(sample, VIDEO_EXTS)
        if video is not None and self.cfg.video:
            from vau.data.media.video import decode_clip

            rng = sample_rng(self.seed, self.epoch, key)
            frames, idx, num, fps = decode_clip(video[1], lambda n, fps: self.clip_indices(key, n, fps, rng))
            out["video"] = self._pixels(frames)
            out.update(frame_indices=torch.tensor(idx), fps=fps, num_frames=num)
        image = _member(sample, IMAGE_EXTS)
        if image is not None and self.cfg.image:
            from vau.data.media.image import load_image

            out["image"] = self._pixels(load_image(image[1])[None])
        if self.cfg.audio_rate:
            from vau.data.media.audio import decode_audio

            src = _member(sample, AUDIO_EXTS) or video
            if src is None:
                raise ValueError("decode.audio_rate is set but the sample has no audio or video member")
            out["audio"] = decode_audio(src[1], self.cfg.audio_rate)
        if self.cfg.features:
            out["features"] = {}
            for name in self.cfg.features:
                data = sample.get(f"{name}.npy")
                if data is None:
                    raise ValueError(f"missing feature member {key}.{name}.npy")
                try:
                    arr = np.load(io.BytesIO(data), allow_pickle=False)
                except (ValueError, OSError, EOFError) as e:
                    raise ValueError(f"{key}.{name}.npy: not a plain .npy array ({e})") from e
                out["features"][name] = torch.from_numpy(arr)
        return out


class MediaWrapper:
    """Base of a family's decoder that wraps a :class:`SampleDecoder` as ``self.media``: the
    stream sets ``epoch`` on the decoder it is given, and it must reach the media decoder."""

    media: SampleDecoder

    @property
    def epoch(self) -> int:
        return self.media.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.media.epoch = value  # per-sample frame randomness follows the stream's epoch


def collate(samples: list[dict]) -> dict[str, Any]:
    """Batches decoded samples: equal-shape tensors are stacked, everything else listed.

    Feature dicts are collated per name. Variable-length tensors (e.g. audio) stay lists;
    families that need padding pass their own collate function.
    """
    out: dict[str, Any] = {}
    for k in samples[0]:
        vals = [s.get(k) for s in samples]
        if isinstance(vals[0], dict) and all(isinstance(v, dict) for v in vals):
            out[k] = collate(vals) if k == "features" else vals
        elif all(isinstance(v, torch.Tensor) for v in vals) and len({v.shape for v in vals}) == 1:
            out[k] = torch.stack(vals)
        else:
            out[k] = vals
    return out
