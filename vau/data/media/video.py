"""Video decoding with PyAV: probing, frame-accurate sparse decoding, CLIP-style preprocessing.

Frame numbers are defined by a full sequential decode: frame ``i`` is the ``i``-th frame the
decoder emits when the stream is decoded from the start. Sparse decoding seeks to keyframes and
maps each decoded frame back to that numbering through its presentation timestamp (pts).
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import av
import numpy as np
import torch
import torch.nn.functional as F

from vau.errors import BadInputError

Source = Union[str, Path, bytes, bytearray, memoryview]

CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class VideoDecodeError(BadInputError):
    """The input could not be opened or decoded as a video."""


def _describe(src: Source) -> str:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes in memory>"
    return str(src)


def _open(src: Source) -> av.container.InputContainer:
    try:
        if isinstance(src, (bytes, bytearray, memoryview)):
            return av.open(io.BytesIO(bytes(src)), mode="r")
        return av.open(str(src), mode="r")
    except (av.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"cannot open video {_describe(src)}: {_one_line(e)}") from e


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _video_stream(container: av.container.InputContainer, src: Source) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise VideoDecodeError(f"no video stream in {_describe(src)}")
    return container.streams.video[0]


@dataclass(frozen=True)
class _Index:
    """Display-order table of a video stream built from demuxed packets (no decoding).

    Attributes:
        pts: Sorted presentation timestamps; position ``i`` is frame number ``i``.
        keyframes: Sorted frame numbers of keyframes.
        seek_ts: For each keyframe (same order), the timestamp to seek to so that the demuxer
            lands on that keyframe or an earlier one.
    """

    pts: list[int]
    keyframes: list[int]
    seek_ts: list[int]

    def keyframe_at_or_before(self, index: int) -> int:
        """Position in ``keyframes`` of the last keyframe not after frame ``index`` (-1 if none)."""
        return bisect.bisect_right(self.keyframes, index) - 1


def _build_index(container: av.container.InputContainer, stream: Any, src: Source) -> _Index:
    pts: list[int] = []
    key_pts: list[tuple[int, int]] = []  # (pts, dts-or-pts)
    try:
        for packet in container.demux(stream):
            # The final flush packet has no pts; packets flagged discard (edit lists) are decoded
            # but never emitted, so neither counts as a frame.
            if packet.pts is None or packet.is_discard:
                continue
            pts.append(packet.pts)
            if packet.is_keyframe:
                # A demuxer that seeks on dts could overshoot past this keyframe when given its pts
                # (dts < pts under B-frame reordering); min(dts, pts) cannot, so it is the fallback.
                ts = packet.pts if packet.dts is None else min(packet.pts, packet.dts)
                key_pts.append((packet.pts, ts))
    except av.FFmpegError as e:
        raise VideoDecodeError(f"cannot demux video {_describe(src)}: {_one_line(e)}") from e
    pts.sort()
    if len(set(pts)) != len(pts):
        # Duplicate pts make the pts->frame map ambiguous; callers fall back to counting.
        raise _AmbiguousPts()
    pos = {p: i for i, p in enumerate(pts)}
    keys = sorted((pos[p], ts) for p, ts in key_pts)
    return _Index(pts=pts, keyframes=[k for k, _ in keys], seek_ts=[t for _, t in keys])


class _AmbiguousPts(Exception):
    pass


def _count_by_decoding(container: av.container.InputContainer, stream: Any, src: Source) -> int:
    container.seek(0, stream=stream, backward=True, any_frame=False)
    n = 0
    try:
        for _ in container.decode(stream):
            n += 1
    except av.FFmpegError as e:
        raise VideoDecodeError(f"cannot decode video {_describe(src)}: {_one_line(e)}") from e
    return n


def _fps(stream: Any, num_frames: int) -> float:
    rate = stream.average_rate or stream.guessed_rate
    if rate:
        return float(rate)
    # Some containers carry no rate at all; derive one from the duration instead.
    if stream.duration and stream.time_base and num_frames:
        return num_frames / float(stream.duration * stream.time_base)
    return 0.0


def probe(src: Source) -> tuple[int, float, tuple[int, int]]:
    """Reads the frame count, frame rate and frame size of the first video stream.

    The frame count is exact: it is taken from the demuxed packets rather than from the
    container header (``stream.frames``), which can disagree with what a decoder emits,
    e.g. with mp4 edit lists. Demuxing reads the file but decodes nothing.

    Args:
        src: Path to a video file, or the file's contents as bytes.

    Returns:
        ``(num_frames, fps, (height, width))``.

    Raises:
        VideoDecodeError: If ``src`` cannot be opened or has no video stream.
    """
    with _open(src) as container:
        stream = _video_stream(container, src)
        try:
            num_frames = len(_build_index(container, stream, src).pts)
        except _AmbiguousPts:
            num_frames = _count_by_decoding(container, stream, src)
        if num_frames == 0:
            raise VideoDecodeError(f"no decodable video frames in {_describe(src)}")
        cc = stream.codec_context
        return num_frames, _fps(stream, num_frames), (int(cc.height), int(cc.width))


def _as_indices(indices: Any) -> list[int]:
    if isinstance(indices, torch.Tensor):
        indices = indices.reshape(-1).tolist()
    elif isinstance(indices, np.ndarray):
        indices = indices.reshape(-1).tolist()
    return [operator.index(i) for i in indices]


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def decode_frames(src: Source, indices: Sequence[int], *, threads: bool = True) -> torch.Tensor:
    """Decodes the frames at the given 0-based frame numbers.

    Frames are pixel-identical to the same frames of a full sequential decode. Only the needed
    parts of the stream are decoded: wanted frames are visited in sorted order; before each one
    the decoder seeks to the nearest preceding keyframe unless decoding on from the current
    position reaches it without passing that keyframe (then a seek would not save any work).

    Args:
        src: Path to a video file, or the file's contents as bytes.
        indices: Frame numbers, in any order, repeats allowed.
        threads: Let FFmpeg decode with several threads.

    Returns:
        A ``uint8`` tensor ``[T, H, W, 3]`` (RGB), frame ``t`` being ``indices[t]``.

    Raises:
        IndexError: If an index is negative or not below the number of frames.
        VideoDecodeError: If ``src`` cannot be opened or decoded.
    """
    wanted_list = _as_indices(indices)
    return decode_clip(src, lambda num_frames, fps: wanted_list, threads=threads)[0]


def decode_clip(
    src: Source, pick: Callable[[int, float], Sequence[int]], *, threads: bool = True
) -> tuple[torch.Tensor, list[int], int, float]:
    """Opens a video once, chooses frames from its length and rate, and decodes them.

    Same frames as :func:`decode_frames`; saves the second demux pass that a separate
    :func:`probe` followed by :func:`decode_frames` costs.

    Args:
        src: Path to a video file, or the file's contents as bytes.
        pick: ``(num_frames, fps) -> frame indices`` (e.g. a ``vau.data.media.sampling`` function).
        threads: Let FFmpeg decode with several threads.

    Returns:
        ``(frames uint8 [T, H, W, 3], indices, num_frames, fps)``.

    Raises:
        IndexError: If ``pick`` returns an index out of range.
        VideoDecodeError: If ``src`` cannot be opened or decoded.
    """
    with _open(src) as container:
        stream = _video_stream(container, src)
        if threads:
            stream.thread_type = "AUTO"
        try:
            index: _Index | None = _build_index(container, stream, src)
            num_frames = len(index.pts)
        except _AmbiguousPts:
            index = None
            num_frames = _count_by_decoding(container, stream, src)
        if num_frames == 0:
            raise VideoDecodeError(f"no decodable video frames in {_describe(src)}")
        fps = _fps(stream, num_frames)
        wanted_list = _as_indices(pick(num_frames, fps))
        for i in wanted_list:
            if not 0 <= i < num_frames:
                raise IndexError(f"frame index {i} out of range for {_describe(src)} with {num_frames} frames")
        cc = stream.codec_context
        if not wanted_list:
            return torch.empty((0, int(cc.height), int(cc.width), 3), dtype=torch.uint8), [], num_frames, fps
        wanted = sorted(set(wanted_list))
        try:
            got = _decode_seeking(container, stream, index, wanted) if index is not None else {}
            missing = [i for i in wanted if i not in got]
            if missing:
                # Timestamps did not line up (pts-less frames, overshooting seek, dropped frames):
                # a counted decode from the start defines frame numbers, so it cannot be wrong.
                got.update(_decode_sequential(container, stream, missing))
        except av.FFmpegError as e:
            raise VideoDecodeError(f"cannot decode video {_describe(src)}: {_one_line(e)}") from e
        missing = [i for i in wanted if i not in got]
        if missing:
            raise VideoDecodeError(
                f"decoder produced fewer frames than demuxed packets in {_describe(src)}; missing frame {missing[0]}"
            )
        return torch.from_numpy(np.stack([got[i] for i in wanted_list])), wanted_list, num_frames, fps


def _seek_candidates(index: _Index, key: int) -> Iterator[int]:
    """Timestamps to try, in order, so that decoding starts at or before keyframe ``key``."""
    tried: set[int] = set()
    # Most demuxers (mp4 included, in current FFmpeg) seek on pts, so the keyframe's own pts lands
    # exactly on it. Demuxers that seek on dts could overshoot to the next keyframe with it;
    # the keyframe's dts (<= pts) and then earlier keyframes are the fallbacks.
    for k in range(key, -1, -1):
        for ts in (index.pts[index.keyframes[k]], index.seek_ts[k]):
            if ts not in tried:
                tried.add(ts)
                yield ts


def _decode_seeking(container: Any, stream: Any, index: _Index, wanted: list[int]) -> dict[int, np.ndarray]:
    pts_to_index = {p: i for i, p in enumerate(index.pts)}

    def place(frame: av.VideoFrame) -> int | None:
        return pts_to_index.get(frame.pts) if frame.pts is not None else None

    got: dict[int, np.ndarray] = {}
    frames: Iterator[av.VideoFrame] | None = None
    pos = -1  # frame number of the last decoded frame on the current decode pass
    floor = -1  # keyframe number this pass was aimed at; seeking to it again gains nothing
    k = 0
    while k < len(wanted):
        target = wanted[k]
        key = index.keyframe_at_or_before(target)
        if frames is None or pos >= target:
            if key < 0:
                return got  # no keyframe before the target: only a decode from the start works
            for ts in _seek_candidates(index, key):
                container.seek(ts, stream=stream, backward=True, any_frame=False)
                it = iter(container.decode(stream))
                head = next(it, None)
                if head is None:
                    continue
                idx = place(head)
                if idx is not None and idx <= target:
                    frames = itertools.chain([head], it)
                    break
            else:
                return got  # every seek overshot or could not be placed
            pos = -1
            floor = index.keyframes[key]
        for frame in frames:
            idx = place(frame)
            if idx is None:
                if pos < 0:
                    return got  # cannot place this frame; the sequential fallback will
                idx = pos + 1
            pos = idx
            if idx == wanted[k]:
                got[idx] = _rgb(frame)
            while k < len(wanted) and wanted[k] <= idx:
                k += 1
            if k == len(wanted):
                return got
            nxt = index.keyframe_at_or_before(wanted[k])
            if nxt >= 0 and index.keyframes[nxt] > max(pos, floor):
                frames = None  # a keyframe lies between here and the next wanted frame: seek to it
                break
        else:
            return got  # stream ended before the wanted frame showed up
    return got


def _decode_sequential(container: Any, stream: Any, wanted: list[int]) -> dict[int, np.ndarray]:
    want = set(wanted)
    last = max(wanted)
    got: dict[int, np.ndarray] = {}
    container.seek(0, stream=stream, backward=True, any_frame=False)
    for n, frame in enumerate(container.decode(stream)):
        if n in want:
            got[n] = _rgb(frame)
        if n >= last:
            break
    return got


def resize_normalize(
    frames_uint8: torch.Tensor,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop: bool = True,
) -> torch.Tensor:
    """Resizes, crops and normalises frames the way CLIP-like image processors do.

    The shortest side is resized to ``size`` (bicubic, antialiased), then a centred
    ``size x size`` crop is taken, values are scaled to [0, 1] and normalised per channel.

    Args:
        frames_uint8: ``uint8`` tensor ``[T, H, W, 3]`` (RGB).
        size: Target length of the shortest side and of the square crop.
        mean: Per-channel mean (3 values) on the [0, 1] scale.
        std: Per-channel standard deviation (3 values) on the [0, 1] scale.
        crop: Take the centred square crop; without it the output is ``[T, 3, size, L]`` or
            ``[T, 3, L, size]``, keeping the aspect ratio.

    Returns:
        ``float32`` tensor ``[T, 3, size, size]`` (with ``crop=True``).
    """
    if frames_uint8.ndim != 4 or frames_uint8.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got shape {tuple(frames_uint8.shape)}")
    if frames_uint8.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames, got {frames_uint8.dtype}")
    # NHWC memory seen as NCHW is channels_last: torch's uint8 antialiased bicubic kernel runs
    # on it ~20x faster than on floats and rounds to uint8 like PIL, which HF processors use
    # (within 1 grey level of PIL's bicubic resize).
    x = frames_uint8.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    # Same rounding as Hugging Face's shortest_edge resize, so sizes match their processors.
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    x = x.float()
    if crop:
        top = (new_h - size) // 2
        left = (new_w - size) // 2
        x = x[..., top : top + size, left : left + size]
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x / 255.0 - m) / s).contiguous()


STRIP_FRAMES = 4
"""Frames of a clip a :func:`frame_strip` shows."""
STRIP_HEIGHT = 96
"""Height in pixels a :func:`frame_strip` is shrunk to (smaller frames keep their size)."""


def frame_strip(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                count: int = STRIP_FRAMES, height: int = STRIP_HEIGHT) -> np.ndarray:
    """A small picture of a clip: ``count`` evenly spaced frames side by side.

    Args:
        frames: A clip as :func:`resize_normalize` returns it (``[T, 3, H, W]``, normalised).
        mean: The per-channel mean it was normalised with.
        std: The per-channel standard deviation it was normalised with.
        count: Frames shown (fewer when the clip has fewer).
        height: Frames taller than this are shrunk to it (aspect kept).

    Returns:
        ``uint8`` array ``[h, n * w, 3]`` (RGB).
    """
    from vau.data.media.sampling import uniform

    x = frames.detach().float().cpu()[uniform(frames.shape[0], min(count, frames.shape[0]))]
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x * s + m).clamp(0, 1)
    if x.shape[-2] > height:
        x = F.interpolate(x, size=(height, max(1, round(x.shape[-1] * height / x.shape[-2]))), mode="bilinear",
                          align_corners=False, antialias=True).clamp(0, 1)
    # [n, 3, h, w] -> [h, n * w, 3]: frames left to right.
    return (x * 255).round().to(torch.uint8).permute(2, 0, 3, 1).reshape(x.shape[-2], -1, 3).numpy()


def _side(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if "height" in value and "width" in value:
            # A single square size is all resize_normalize supports; the smaller side keeps
            # the whole crop inside the resized image.
            return int(min(value["height"], value["width"]))
    raise ValueError(f"unsupported size entry in preprocessor config: {value!r}")


def processor_settings(path_or_dict: str | Path | dict | None = None) -> tuple[int, list[float], list[float]]:
    """Reads image size and normalisation from a Hugging Face ``preprocessor_config.json``.

    Args:
        path_or_dict: The config file, a model directory containing it, an already-parsed dict,
            or None for CLIP's defaults.

    Returns:
        ``(size, mean, std)``; ``size`` is ``crop_size`` when present (the final image side),
        else ``size``. Missing entries fall back to CLIP's values (224 and CLIP's mean/std).
    """
    if path_or_dict is None:
        cfg: dict = {}
    elif isinstance(path_or_dict, dict):
        cfg = path_or_dict
    else:
        path = Path(path_or_dict)
        if path.is_dir():
            path = path / "preprocessor_config.json"
        cfg = json.loads(path.read_text())
    size = _side(cfg.get("crop_size"))
    if size is None:
        size = _side(cfg.get("size"))
    mean = [float(v) for v in cfg.get("image_mean", CLIP_MEAN)]
    std = [float(v) for v in cfg.get("image_std", CLIP_STD)]
    return (size if size is not None else CLIP_SIZE), mean, std


def frame_geometry(decode: Any) -> tuple[int, list[float], list[float]]:
    """``(side, mean, std)`` frames are resized and normalised to under a ``DecodeConfig``:
    ``decode.size`` when set, else the processor's (training data and ``vau infer`` both ask here)."""
    size, mean, std = processor_settings(decode.processor)
    return decode.size or size, mean, std
