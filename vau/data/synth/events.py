"""Anomaly event classes: how each one changes a scene, and the words that describe it.

Every class is one ``EVENTS`` entry (registered with ``@event``), so adding a class means
adding one simulation function and its templates here; nothing else branches on class names.
Templates are ``str.format`` strings over ``{a}``/``{b}`` (the names of the shapes involved,
``"red circle"``) and the event's own ``slots`` (e.g. ``{where}``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vau.data.synth.scene import FLAME_COLOURS, Actor, Event, Scene, reflect, region

Simulate = Callable[[Scene, np.random.Generator, float, float], Event]


@dataclass(frozen=True)
class EventKind:
    """One anomaly class.

    Attributes:
        simulate: Changes the scene in place so the event happens in ``[start, end]`` seconds;
            returns the ``Event`` (its shapes and template slots).
        span: Shortest and longest event in seconds.
        shapes: How many shapes the scene needs at least.
        avoid: Colours kept out of the scene (so the event's own colours stay unambiguous).
        label: Human-readable class name.
        caption: Short caption.
        description: What happens.
        cause: Why it happens.
        effect: What it leads to.
        keywords: Abnormal keywords.
        key_sentence: The phrase an answer must contain.
        query: Retrieval query.
    """

    simulate: Simulate
    span: tuple[float, float]
    shapes: int
    avoid: tuple[str, ...]
    label: str
    caption: str
    description: str
    cause: str
    effect: str
    keywords: tuple[str, ...]
    key_sentence: str
    query: str


EVENTS: dict[str, EventKind] = {}


def event(name: str, **fields) -> Callable[[Simulate], Simulate]:
    """Registers a simulation function with its ``EventKind`` fields under ``name``."""

    def deco(fn: Simulate) -> Simulate:
        if name in EVENTS:
            raise KeyError(f"event class {name!r} is registered twice")
        EVENTS[name] = EventKind(simulate=fn, **fields)
        return fn

    return deco


# Colours of the event effects: none is a shape colour, so an effect is never taken for a shape.
SPARK_RGB = (255, 250, 170)
DUST_RGB = (175, 150, 115)
TRAIL_RGB = (130, 255, 180)
TRAIL_LAGS = (1, 2, 3)
"""Frames each ghost of a running shape's motion trail lags behind it (together: a streak)."""


def _effect(scene: Scene, shape: str, size: float, xy: np.ndarray, rgb: tuple[int, int, int] | np.ndarray,
            visible: np.ndarray) -> int:
    """Adds an effect actor (not a shape of the scene) and returns its index.

    Each anomaly leaves a mark that a single frame shows (sparks where shapes crash, dust where
    one lands, a motion trail behind one that runs), as real anomalies are mostly seen in
    still frames; without one, 4-8 sampled frames of two small shapes rarely tell the classes apart.
    """
    n = scene.num_frames
    colour = np.broadcast_to(np.asarray(rgb, np.uint8), (n, 3)).copy()
    scene.actors.append(Actor(shape, shape, size, xy[0].copy(), np.zeros(2), xy, colour, np.ones(n), visible))
    return len(scene.actors) - 1


def _pick(rng: np.random.Generator, scene: Scene, count: int) -> list[int]:
    return [int(i) for i in rng.choice(len(scene.actors), size=count, replace=False)]


@event(
    "collision", span=(1.0, 2.0), shapes=2, avoid=(), label="collision",
    caption="A {a} and a {b} collide.",
    description="The {a} and the {b} move towards each other and crash together.",
    cause="The {a} and the {b} move straight towards each other and neither gets out of the way.",
    effect="Both shapes stop dead on impact, then bounce apart.",
    keywords=("collision", "{a}", "{b}"),
    key_sentence="the {a} and the {b} collide",
    query="A {a} crashes into a {b}.",
)
def _collision(scene: Scene, rng: np.random.Generator, start: float, end: float) -> Event:
    ia, ib = _pick(rng, scene, 2)
    a, b = scene.actors[ia], scene.actors[ib]
    axis = int(rng.integers(2))  # 0: side by side, 1: one above the other
    size = np.array([scene.width, scene.height], float)
    # Centres this far apart along the axis make the facing sides touch on the line between the
    # centres; one pixel less, so they also touch once drawn on the pixel grid.
    gap = a.reach(2 * axis + 1) + b.reach(2 * axis) - 1.0
    # A meeting point near the centre leaves room on both sides for the approach.
    meet = rng.uniform(0.4, 0.6, size=2) * size
    contact_a, contact_b = meet.copy(), meet.copy()
    contact_a[axis] -= gap / 2
    contact_b[axis] += gap / 2
    room = min(contact_a[axis] - a.extent(2 * axis), size[axis] - b.extent(2 * axis + 1) - contact_b[axis])
    approach = min(12.0, room / start)
    rebound = float(rng.uniform(6.0, 10.0))
    t = scene.times
    unit = np.eye(2)[axis]
    for actor, contact, sign in ((a, contact_a, -1.0), (b, contact_b, 1.0)):
        lo, hi = actor.bounds(scene.width, scene.height)
        before = contact + sign * unit * approach * np.clip(start - t, 0, None)[:, None]
        after = reflect(contact, sign * unit * rebound, np.clip(t - end, 0, None), lo, hi)
        # Before: closing in; during [start, end]: stopped in contact; after: bouncing apart.
        actor.xy = np.where((t < start)[:, None], before, after)
    _effect(scene, "spark", a.size + b.size + float(rng.uniform(2.0, 4.0)), np.tile(meet, (scene.num_frames, 1)), SPARK_RGB,
            (t >= start) & (t <= end))  # as long as the shapes stand in contact
    return Event("collision", start, end, (ia, ib))


@event(
    "fire", span=(1.0, 2.5), shapes=0, avoid=("red", "yellow", "pink"), label="fire",
    caption="A fire breaks out in the {where} of the scene.",
    description="Flickering orange flames appear in the {where} of the scene and burn for a while.",
    cause="Something catches fire in the {where} of the scene.",
    effect="The flames flicker orange and red, then go out.",
    keywords=("fire", "flames", "{where}"),
    key_sentence="a fire breaks out in the {where}",
    query="Flames burst out in the {where} of a scene with moving shapes.",
)
def _fire(scene: Scene, rng: np.random.Generator, start: float, end: float) -> Event:
    n = scene.num_frames
    size = float(rng.uniform(9.0, 12.0))
    flame = Actor("flame", "orange", size, np.zeros(2), np.zeros(2), np.zeros((n, 2)),
                  np.zeros((n, 3), np.uint8), np.ones(n), np.zeros(n, bool))
    lo, hi = flame.bounds(scene.width, scene.height)
    flame.start = rng.uniform(lo + 2, hi - 2)
    flame.xy = np.tile(flame.start, (n, 1))
    # Flicker: the flame changes size and colour every frame.
    flame.scale = rng.uniform(0.75, 1.15, size=n)
    flame.rgb = np.array(FLAME_COLOURS, np.uint8)[rng.integers(len(FLAME_COLOURS), size=n)]
    t = scene.times
    flame.visible = (t >= start) & (t < end)
    scene.actors.append(flame)
    return Event("fire", start, end, (len(scene.actors) - 1,),
                 {"where": region(flame.start, scene.width, scene.height)})


@event(
    "fall", span=(0.5, 1.0), shapes=1, avoid=(), label="fall",
    caption="A {a} suddenly falls to the bottom.",
    description="The {a}, moving along the top, suddenly drops straight down to the bottom and lies still.",
    cause="The {a} loses its support near the top of the scene.",
    effect="It hits the bottom of the scene and stays there without moving.",
    keywords=("fall", "{a}", "drop"),
    key_sentence="the {a} falls to the bottom",
    query="A {a} drops from the top to the bottom.",
)
def _fall(scene: Scene, rng: np.random.Generator, start: float, end: float) -> Event:
    (i,) = _pick(rng, scene, 1)
    actor = scene.actors[i]
    lo, hi = actor.bounds(scene.width, scene.height)
    top = float(rng.uniform(lo[1] + 1, 0.3 * scene.height))
    # Before the fall it drifts sideways along the top; it falls straight down from where it is.
    actor.start = np.array([actor.start[0], top])
    actor.velocity = np.array([np.sign(actor.velocity[0] or 1.0) * rng.uniform(4.0, 8.0), 0.0])
    t = scene.times
    actor.xy = reflect(actor.start, actor.velocity, np.minimum(t, start), lo, hi)
    progress = np.clip((t - start) / (end - start), 0.0, 1.0)
    actor.xy[:, 1] = top + (hi[1] - top) * progress**2  # accelerating, like gravity
    floor = np.tile([actor.xy[-1, 0], scene.height - 2.0], (scene.num_frames, 1))
    _effect(scene, "dust", float(rng.uniform(5.0, 7.0)), floor, DUST_RGB, (t >= end) & (t < end + 1.5))
    return Event("fall", start, end, (i,))


@event(
    "sudden_run", span=(1.0, 2.0), shapes=1, avoid=(), label="sudden run",
    caption="A {a} suddenly starts running very fast.",
    description="The {a} suddenly speeds up and races across the scene much faster than the other shapes.",
    cause="The {a} is suddenly startled.",
    effect="It dashes around the scene, then slows down to its calm pace again.",
    keywords=("sudden run", "{a}", "speeding"),
    key_sentence="the {a} suddenly runs fast",
    query="A {a} suddenly dashes across the scene.",
)
def _sudden_run(scene: Scene, rng: np.random.Generator, start: float, end: float) -> Event:
    (i,) = _pick(rng, scene, 1)
    actor = scene.actors[i]
    factor = float(rng.uniform(5.0, 7.0))
    t = scene.times
    # Same path as its calm drift, but its clock runs `factor` times faster during the span.
    warped = t + (factor - 1.0) * np.clip(t - start, 0.0, end - start)
    actor.xy = reflect(actor.start, actor.velocity, warped, *actor.bounds(scene.width, scene.height))
    for lag in TRAIL_LAGS:
        # In an effect colour, not a faded copy of the shape's: faint same-hue ghosts read as one
        # more calm shape, and a tiny vision tower missed most runs (22 of 27 held out).
        xy = np.concatenate([np.repeat(actor.xy[:1], lag, 0), actor.xy[:-lag]])
        _effect(scene, f"ghost_{actor.shape}", actor.size, xy, TRAIL_RGB, (t >= start) & (t < end))
    return Event("sudden_run", start, end, (i,))
