"""Drawing scenes with numpy and encoding them (mp4 with audio via PyAV, png via PIL).

Encoding is deterministic: libx264 and the AAC encoder run single-threaded (x264's threaded
rate control and lookahead make output depend on thread timing), x264 runs its C code paths
(its AVX-512 assembly gives run-to-run different bytes on the same frames; the C paths also
give the same bytes on every CPU), and the mp4 muxer writes no creation time, so the same scene
always gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import av
import numpy as np
from PIL import Image

from vau.data.synth.scene import BACKGROUNDS, SHAPES, Scene

SAMPLE_RATE = 16000
TONE_HZ = 880.0
TONE_LEVEL = 0.3
NOISE_LEVEL = 0.01
FADE_S = 0.01
"""Tone fade in/out; a hard edge would click (broadband energy) at the span's ends."""
AAC_FRAME = 1024
CRF = "18"
"""High quality, so object colours survive compression closely."""

Mask = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
"""``(dx, dy, size) -> bool mask``, offsets of pixel centres from the shape's centre."""


def _circle(dx: np.ndarray, dy: np.ndarray, s: float) -> np.ndarray:
    return dx**2 + dy**2 <= s**2


def _square(dx: np.ndarray, dy: np.ndarray, s: float) -> np.ndarray:
    return (np.abs(dx) <= s) & (np.abs(dy) <= s)


def _triangle(dx: np.ndarray, dy: np.ndarray, s: float) -> np.ndarray:
    # Equilateral, pointing up, circumradius s: the half width grows from 0 at the apex (dy = -s)
    # to s*sqrt(3)/2 at the base (dy = s/2).
    return (np.abs(dx) <= (dy + s) / np.sqrt(3)) & (dy <= s / 2)


def _flame(dx: np.ndarray, dy: np.ndarray, s: float) -> np.ndarray:
    # A teardrop: a round body with a pointed tongue on top.
    return _circle(dx, dy - 0.3 * s, 0.7 * s) | _triangle(dx, dy + 0.2 * s, 0.9 * s)


def _spark(dx: np.ndarray, dy: np.ndarray, s: float) -> np.ndarray:
    # A four-pointed burst: two crossed bars and a round core.
    return (((np.abs(dx) <= s) & (np.abs(dy) <= s / 4)) | ((np.abs(dy) <= s) & (np.abs(dx) <= s / 4))
            | _circle(dx, dy, s / 2))


def _dust(dx: np.ndarray, dy: np.ndarray, s: float) -> np.ndarray:
    # A flat cloud on the floor: an ellipse 1.6 s wide, 0.6 s high (half axes).
    return (dx / 1.6) ** 2 + (dy / 0.6) ** 2 <= s**2


MASKS: dict[str, Mask] = {"circle": _circle, "square": _square, "triangle": _triangle, "flame": _flame,
                          "spark": _spark, "dust": _dust,
                          **{f"ghost_{k}": m for k, m in (("circle", _circle), ("square", _square), ("triangle", _triangle))}}
"""Shapes, and the event effects (flame, spark, dust, the motion trail's ghosts)."""


def _layer(scene: Scene, i: int, involved: set[int]) -> int:
    """Drawing order: other shapes, motion ghosts and sparks (behind the crashing shapes: they
    burst out around them), the event's shapes, then flames and dust on top."""
    shape = scene.actors[i].shape
    if shape.startswith("ghost_") or shape == "spark":
        return 1
    if shape in SHAPES:
        return 2 if i in involved else 0
    return 3


def render_frame(scene: Scene, index: int) -> np.ndarray:
    """Draws frame ``index`` of a scene.

    Shapes involved in the event are drawn after the others, and its flame or dust last, so
    nothing hides the event.

    Returns:
        ``uint8`` array ``[H, W, 3]`` (RGB).
    """
    img = np.empty((scene.height, scene.width, 3), np.uint8)
    img[:] = BACKGROUNDS[scene.background]
    ys, xs = np.mgrid[0 : scene.height, 0 : scene.width] + 0.5  # pixel centres
    involved = set(scene.event.actors) if scene.event else set()
    for i in sorted(range(len(scene.actors)), key=lambda i: _layer(scene, i, involved)):
        actor = scene.actors[i]
        if not actor.visible[index]:
            continue
        cx, cy = actor.xy[index]
        img[MASKS[actor.shape](xs - cx, ys - cy, actor.size * actor.scale[index])] = actor.rgb[index]
    return img


def render_video(scene: Scene) -> np.ndarray:
    """All frames, ``uint8`` ``[T, H, W, 3]``."""
    return np.stack([render_frame(scene, i) for i in range(scene.num_frames)])


def render_audio(scene: Scene, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Low background noise, plus a clear tone exactly while the event lasts.

    Returns:
        ``float32`` mono samples, ``duration * sample_rate`` of them.
    """
    n = round(scene.duration * sample_rate)
    t = np.arange(n) / sample_rate
    audio = NOISE_LEVEL * rng.standard_normal(n)
    if scene.event is not None:
        start, end = scene.event.start, scene.event.end
        # Trapezoid envelope: 1 inside the span, ramping to 0 over FADE_S at each end.
        envelope = np.clip(np.minimum(t - start, end - t) / FADE_S + 0.5, 0.0, 1.0)
        audio += TONE_LEVEL * envelope * np.sin(2 * np.pi * TONE_HZ * t)
    return audio.astype(np.float32)


def _mux(container: av.container.OutputContainer, stream: av.stream.Stream, frame: object) -> None:
    for packet in stream.encode(frame):
        container.mux(packet)


def encode_mp4(frames: np.ndarray, fps: int, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encodes frames (H.264, yuv420p) and mono audio (AAC) into mp4 bytes.

    Args:
        frames: ``uint8`` ``[T, H, W, 3]`` RGB.
        fps: Frame rate (an integer, so frame times are exact in the 1/fps time base).
        audio: ``float32`` mono samples.
        sample_rate: Audio sample rate in Hz.

    Returns:
        The mp4 file's bytes.
    """
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = 1
        video.codec_context.gop_size = 2 * fps  # a keyframe every 2 s, so readers can seek
        video.options = {"crf": CRF, "x264-params": "no-asm=1"}  # see the module docstring
        sound = container.add_stream("aac", rate=sample_rate, layout="mono")
        sound.codec_context.thread_count = 1
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            _mux(container, video, frame)
        _mux(container, video, None)
        for offset in range(0, len(audio), AAC_FRAME):
            frame = av.AudioFrame.from_ndarray(audio[None, offset : offset + AAC_FRAME], format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = offset
            _mux(container, sound, frame)
        _mux(container, sound, None)
    return buf.getvalue()


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a ``uint8`` ``[H, W, 3]`` image (PIL writes no timestamp chunk)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
