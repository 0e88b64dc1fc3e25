"""Deterministic synthetic data: shapes moving on a plain background, with one known anomaly.

The embedded default data of the demo experiments and the tests (``vau synth``). A scene is
simulated first (``scene``, ``events``), then rendered and encoded (``render``: 64x64 H.264 mp4
at 8 fps with a 16 kHz AAC track whose 880 Hz tone marks the anomaly; PNG stills) and described
(``text``: every annotation kind, written from the simulated state). ``dataset`` makes samples
and writes the raw media, manifests and shards.
"""

from vau.data.synth.dataset import (
    CLASSES,
    NORMAL,
    SynthSample,
    SynthSummary,
    generate,
    make_image,
    make_video,
    val_indices,
    video_class,
)
from vau.data.synth.events import EVENTS
from vau.data.synth.render import SAMPLE_RATE, TONE_HZ
from vau.data.synth.scene import BACKGROUNDS, COLOURS, FLAME_COLOURS, FPS, HEIGHT, WIDTH

__all__ = [
    "BACKGROUNDS",
    "CLASSES",
    "COLOURS",
    "EVENTS",
    "FLAME_COLOURS",
    "FPS",
    "HEIGHT",
    "NORMAL",
    "SAMPLE_RATE",
    "TONE_HZ",
    "WIDTH",
    "SynthSample",
    "SynthSummary",
    "generate",
    "make_image",
    "make_video",
    "val_indices",
    "video_class",
]
