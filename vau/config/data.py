"""Config of shard-fed data sections: sources, mixing, shuffling, decoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from vau.config.schema import DataConfig


@dataclass
class SourceConfig:
    """One shard set in a data mix."""

    shards: str = "???"
    """Shard spec: brace pattern (``d/train-{000000..000009}.tar``), glob, a folder, or several joined by ``::``."""
    weight: float = 1.0
    """Relative sampling weight in the training mix (ignored for evaluation)."""
    name: Optional[str] = None
    """Label in logs; null = the spec."""


SHORT_VIDEO = ("reject", "pad")
"""Policies of ``decode.short_video``."""


@dataclass
class DecodeConfig:
    """How samples are decoded into tensors."""

    video: bool = True
    """Decode video members into frames (false: keep annotation/features only)."""
    frames: int = 8
    """Frames per video clip (at most, for the ``fps`` sampler)."""
    train_sampler: str = "random_in_segments"
    """Frame sampler in training: a key of ``vau.data.media.decode.FRAME_SAMPLERS``."""
    eval_sampler: str = "uniform"
    """Frame sampler in evaluation (deterministic)."""
    sample_fps: Optional[float] = None
    """Rate of the ``fps`` sampler (frames per second of video; at most ``frames`` frames)."""
    size: Optional[int] = None
    """Resize + centre-crop side in pixels; null = the processor's (or CLIP's 224)."""
    processor: Optional[str] = None
    """HF ``preprocessor_config.json`` (or its folder) giving size/mean/std; null = CLIP's values."""
    raw: bool = False
    """Return uint8 frames [T, H, W, 3] as decoded (no resize/normalise)."""
    image: bool = True
    """Decode image members (jpg/png) into a one-frame clip."""
    audio_rate: Optional[int] = None
    """Decode audio (wav/flac member, else the video's track) at this rate in Hz; null = skip audio."""
    features: List[str] = field(default_factory=list)
    """Names of ``<key>.<name>.npy`` feature members to load (allow_pickle=False)."""
    short_video: str = "reject"
    """A video with fewer frames than its clip takes: reject (a counted bad sample) or pad (repeat frames, counted)."""


@dataclass
class ShardDataConfig(DataConfig):
    """Data read from WebDataset-style tar shards (see README, "Shard format")."""

    train: List[SourceConfig] = field(default_factory=list)
    """Training sources, mixed by weight; read as resampled (infinite) streams."""
    val: List[SourceConfig] = field(default_factory=list)
    """Validation sources, read once in full (exact single pass)."""
    samples_per_epoch: Optional[int] = None
    """Training samples per epoch (all ranks); null = the train shards' size from sizes.json, else endless."""
    shuffle_buffer: int = 256
    """Samples held in each worker's shuffle buffer (training)."""
    shuffle_initial: int = 64
    """Buffer fill before the first sample is yielded."""
    allow_pipe: bool = False
    """Accept ``pipe:<command>`` shard URLs, which run shell commands from the config."""
    max_bad_fraction: float = 0.5
    """Fail the run when more than this fraction of a worker's last ``bad_window`` reads were bad samples (1.0 = never)."""
    bad_window: int = 1000
    """Reads (per DataLoader worker) that ``max_bad_fraction`` is measured over."""
    first_good_within: int = 100
    """Fail the run when a worker's first this many reads of an epoch or pass held no good sample."""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    """Media decoding."""
