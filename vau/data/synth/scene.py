"""Scene state: named shapes and colours, and where every shape is on every frame.

A scene is simulated in full before anything is drawn or written, so the renderer, the audio
track and the annotation text all read the same ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WIDTH = HEIGHT = 64
FPS = 8
SHAPES = ("circle", "square", "triangle")

# Object colours are far apart in RGB (>100) so each shape stays identifiable after lossy
# H.264 compression and yuv420p chroma subsampling.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "cyan": (40, 210, 220),
    "white": (240, 240, 240),
    "pink": (245, 130, 190),
}
# Backgrounds are darker (luma <= 45) than every object colour (luma >= 80): yuv420p keeps luma at
# full resolution but halves chroma, so shape edges stay sharp only where luma differs.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "dark grey": (45, 45, 45),
    "dark brown": (55, 35, 20),
}
FLAME_COLOURS: tuple[tuple[int, int, int], ...] = ((255, 130, 0), (250, 90, 10), (255, 170, 30))

# How far each shape reaches from its centre, in multiples of its size (left, right, top, bottom).
# The triangle is equilateral with circumradius `size`, centred on its centroid.
EXTENTS: dict[str, tuple[float, float, float, float]] = {
    "circle": (1.0, 1.0, 1.0, 1.0),
    "square": (1.0, 1.0, 1.0, 1.0),
    "triangle": (0.866, 0.866, 1.0, 0.5),
    "flame": (0.8, 0.8, 1.3, 1.0),
    "spark": (1.0, 1.0, 1.0, 1.0),
    "dust": (1.6, 1.6, 0.6, 0.6),
}
# A motion trail's ghosts reach as far as the shape they follow.
EXTENTS.update({f"ghost_{k}": EXTENTS[k] for k in SHAPES})

# Reach along the horizontal and vertical lines through the centre (left, right, top, bottom):
# where two shapes meeting head-on touch. Only the triangle differs (its sides slope inwards).
CENTRE_LINE_EXTENTS: dict[str, tuple[float, float, float, float]] = {
    **EXTENTS, "triangle": (1 / np.sqrt(3), 1 / np.sqrt(3), 1.0, 0.5),
}

SIZE_RANGE = (5.0, 8.0)
"""Shape size (radius, half side, circumradius) in pixels."""
SPEED_RANGE = (3.0, 8.0)
"""Calm drifting speed in pixels per second."""
LARGE_SIZE = 6.5
"""Sizes at or above this are described as large, below as small."""


@dataclass
class Actor:
    """One shape and its state on every frame.

    Attributes:
        shape: A key of ``EXTENTS``: a shape of ``SHAPES``, or an event effect (``flame``,
            ``spark``, ``dust``, ``ghost_<shape>``), which is not a shape of the scene.
        colour: Colour name (a key of ``COLOURS``, or ``orange`` for flames).
        size: Base size in pixels.
        start: Position ``(x, y)`` at time 0 of its calm drift.
        velocity: Calm drift velocity ``(vx, vy)`` in pixels per second.
        xy: ``[T, 2]`` centre per frame.
        rgb: ``[T, 3]`` colour per frame.
        scale: ``[T]`` size multiplier per frame.
        visible: ``[T]`` whether it is drawn on each frame.
    """

    shape: str
    colour: str
    size: float
    start: np.ndarray
    velocity: np.ndarray
    xy: np.ndarray
    rgb: np.ndarray
    scale: np.ndarray
    visible: np.ndarray

    @property
    def name(self) -> str:
        """``"red circle"``: unique in a scene, since colours are not repeated."""
        return f"{self.colour} {self.shape}"

    def extent(self, side: int) -> float:
        """Reach from the centre towards ``side`` (0 left, 1 right, 2 top, 3 bottom), in pixels."""
        return EXTENTS[self.shape][side] * self.size

    def reach(self, side: int) -> float:
        """Like ``extent``, but along the line through the centre (see ``CENTRE_LINE_EXTENTS``)."""
        return CENTRE_LINE_EXTENTS[self.shape][side] * self.size

    def bounds(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest centre ``(x, y)`` that keep the whole shape in the frame."""
        lo = np.array([self.extent(0), self.extent(2)])
        hi = np.array([width - self.extent(1), height - self.extent(3)])
        return lo, hi


@dataclass
class Event:
    """The one anomaly of a scene.

    Attributes:
        kind: Anomaly class (a key of ``vau.data.synth.events.EVENTS``).
        start: Start of the anomalous span in seconds.
        end: End of the anomalous span in seconds.
        actors: Indices into ``Scene.actors`` of the shapes involved, in template order.
        slots: Extra words the text templates use (e.g. ``where``).
    """

    kind: str
    start: float
    end: float
    actors: tuple[int, ...] = ()
    slots: dict[str, str] = field(default_factory=dict)


@dataclass
class Scene:
    """Everything that is true about one synthetic clip (or, with one frame, one image)."""

    width: int
    height: int
    fps: float
    num_frames: int
    background: str
    actors: list[Actor]
    event: Event | None = None

    @property
    def times(self) -> np.ndarray:
        """Time of each frame in seconds."""
        return np.arange(self.num_frames) / self.fps

    @property
    def duration(self) -> float:
        """Length in seconds (frames times frame duration)."""
        return self.num_frames / self.fps

    @property
    def shapes(self) -> list[Actor]:
        """The actors that are ordinary shapes (not flames)."""
        return [a for a in self.actors if a.shape in SHAPES]


def reflect(start: np.ndarray, velocity: np.ndarray, t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Straight-line motion that bounces off the walls ``[lo, hi]`` (a triangle wave per axis).

    Args:
        start: Position at ``t = 0``, shape ``[2]``.
        velocity: Pixels per second, shape ``[2]``.
        t: Times, shape ``[T]``.
        lo: Lowest position per axis.
        hi: Highest position per axis.

    Returns:
        ``[T, 2]`` positions.
    """
    span = np.maximum(hi - lo, 1e-6)
    x = np.mod(start - lo + velocity * t[:, None], 2 * span)
    return lo + np.where(x > span, 2 * span - x, x)


def new_actor(rng: np.random.Generator, shape: str, colour: str, times: np.ndarray, width: int, height: int) -> Actor:
    """A shape at a random place drifting calmly in a random direction."""
    size = float(rng.uniform(*SIZE_RANGE))
    n = len(times)
    actor = Actor(shape, colour, size, np.zeros(2), np.zeros(2), np.zeros((n, 2)),
                  np.tile(np.array(COLOURS[colour], np.uint8), (n, 1)), np.ones(n), np.ones(n, bool))
    lo, hi = actor.bounds(width, height)
    angle = rng.uniform(0, 2 * np.pi)
    actor.start = rng.uniform(lo, hi)
    actor.velocity = rng.uniform(*SPEED_RANGE) * np.array([np.cos(angle), np.sin(angle)])
    actor.xy = reflect(actor.start, actor.velocity, times, lo, hi)
    return actor


def sample_actors(rng: np.random.Generator, count: int, times: np.ndarray, width: int, height: int,
                  avoid: tuple[str, ...] = ()) -> list[Actor]:
    """``count`` shapes with distinct colours (none of ``avoid``), so each name is unique."""
    palette = [c for c in COLOURS if c not in avoid]
    colours = rng.choice(palette, size=count, replace=False)
    return [new_actor(rng, str(rng.choice(SHAPES)), str(c), times, width, height) for c in colours]


def sample_background(rng: np.random.Generator) -> str:
    """A background colour name."""
    return str(rng.choice(list(BACKGROUNDS)))


_ROWS = ("upper", "middle", "lower")
_COLS = ("left", "middle", "right")


def region(xy: np.ndarray, width: int, height: int) -> str:
    """Name of the third of the frame (3 x 3 grid) a point lies in, e.g. ``upper left``."""
    col = min(int(3 * xy[0] / width), 2)
    row = min(int(3 * xy[1] / height), 2)
    return "centre" if (row, col) == (1, 1) else f"{_ROWS[row]} {_COLS[col]}"


def place_apart(rng: np.random.Generator, actors: list[Actor], width: int, height: int, tries: int = 200) -> None:
    """Re-draws still shapes' positions until no two overlap, so every captioned shape is seen.

    Positions are set on frame 0 (one-frame scenes); after ``tries`` failed draws the last one
    is kept (only reachable with far more shapes than the 64 x 64 frame holds).
    """
    for _ in range(tries):
        for actor in actors:
            actor.start = rng.uniform(*actor.bounds(width, height))
            actor.xy[0] = actor.start
        if all(np.hypot(*(a.start - b.start)) > a.size + b.size + 1
               for i, a in enumerate(actors) for b in actors[i + 1:]):
            return
