"""Audio decoding with PyAV: the first audio stream as mono float samples at a fixed rate."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import av
import numpy as np
import torch

Source = Union[str, Path, bytes, bytearray, memoryview]


def _describe(src: Source) -> str:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes in memory>"
    return str(src)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def decode_audio(src: Source, sample_rate: int = 16000) -> torch.Tensor:
    """Decodes the first audio stream to mono float samples.

    Channels are downmixed and the signal resampled by FFmpeg's libswresample
    (``av.AudioResampler``), which is flushed at the end so the tail is not lost.

    Args:
        src: Path to a media file, or the file's contents as bytes.
        sample_rate: Output sample rate in Hz.

    Returns:
        ``float32`` tensor ``[num_samples]``.

    Raises:
        ValueError: If ``src`` cannot be opened or decoded, or has no audio stream.
    """
    try:
        if isinstance(src, (bytes, bytearray, memoryview)):
            container = av.open(io.BytesIO(bytes(src)), mode="r")
        else:
            container = av.open(str(src), mode="r")
    except (av.FFmpegError, OSError) as e:
        raise ValueError(f"cannot open media {_describe(src)}: {_one_line(e)}") from e
    with container:
        if not container.streams.audio:
            raise ValueError(f"no audio stream in {_describe(src)}")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                # Decoded frames carry their own pts; dropping it stops the resampler from
                # inserting silence or trimming at timestamp gaps, so samples stay contiguous.
                frame.pts = None
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as e:
            raise ValueError(f"cannot decode audio {_describe(src)}: {_one_line(e)}") from e
    if not chunks:
        return torch.zeros(0, dtype=torch.float32)
    return torch.from_numpy(np.concatenate(chunks).astype(np.float32, copy=False))
