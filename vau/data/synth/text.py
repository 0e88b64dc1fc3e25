"""Annotation text written from a scene's true state, so a model can learn to produce it.

Video annotations carry every kind of ``vau/data/schemas``. Normal videos get
``abnormal: false``, empty ``classes``/``segments``/``keywords`` and a normal-state
``description``, but no ``cause``/``effect`` (there is no event to explain); their
conversations skip the timestamp, cause and result questions for the same reason.
"""

from __future__ import annotations

import numpy as np

from vau.data.synth.events import EVENTS, EventKind
from vau.data.synth.scene import LARGE_SIZE, Actor, Scene, region

# Compass words for a motion direction, counter-clockwise from "right" in 45 degree steps.
DIRECTIONS = ("to the right", "up and to the right", "up", "up and to the left",
              "to the left", "down and to the left", "down", "down and to the right")
# (upper speed bound in px/s, adverb), checked in order.
SPEEDS = ((1.0, None), (5.0, "slowly"), (10.0, "steadily"), (float("inf"), "quickly"))

VIDEO_PROMPT = "<video>\n"
IMAGE_QUESTION = "<image>\nDescribe the image briefly."


def seconds(x: float) -> str:
    """``2.0`` -> ``"2.0 s"`` (segments lie on a 0.5 s grid, so one decimal is exact)."""
    return f"{x:.1f} s"


def span_text(start: float, end: float) -> str:
    """``"from 2.0 s to 3.5 s"``."""
    return f"from {seconds(start)} to {seconds(end)}"


def join(items: list[str]) -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _clause(text: str) -> str:
    """A sentence as a clause inside another: lower-case start, no final full stop."""
    return text[:1].lower() + text[1:].rstrip(".")


def motion(actor: Actor, scene: Scene, until: int) -> str:
    """How a shape moves over frames ``[0, until]``, e.g. ``"moves slowly to the left"``."""
    until = max(1, min(until, scene.num_frames - 1))
    d = actor.xy[until] - actor.xy[0]
    speed = float(np.hypot(*d)) * scene.fps / until
    adverb = next(word for bound, word in SPEEDS if speed < bound)
    if adverb is None:
        return "stands still"
    # Image y grows downwards; compass angles grow counter-clockwise with y up.
    angle = np.degrees(np.arctan2(-d[1], d[0]))
    return f"moves {adverb} {DIRECTIONS[round(angle / 45.0) % 8]}"


def _slots(scene: Scene) -> dict[str, str]:
    event = scene.event
    names = {key: scene.actors[i].name for key, i in zip("ab", event.actors)}
    return {**names, **event.slots}


def _fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


def _calm_frames(scene: Scene) -> int:
    """Frames (at most 1 s) before anything unusual happens: the span motion words describe."""
    limit = int(scene.event.start * scene.fps) if scene.event else scene.num_frames - 1
    return min(limit, int(scene.fps))


def _shape_list(scene: Scene) -> list[str]:
    return [f"a {a.name}" for a in scene.shapes]


def video_annotation(scene: Scene, meta: dict, rng: np.random.Generator | None = None) -> dict:
    """The full annotation of a synthetic video (see the module docstring for normal videos).

    Args:
        scene: The simulated scene.
        meta: Provenance stored under ``meta`` (source, seed, fps, duration, ...).
        rng: Shuffles the order of the questions (default: the fixed order). `vau infer` asks
            each question as the first turn, beside the video; a model that only ever saw the
            detection question there cannot answer the others.

    Returns:
        An annotation that passes ``vau.data.shards.annotation.validate_annotation``.
    """
    shapes = _shape_list(scene)
    calm = _calm_frames(scene)
    moving = [f"a {a.name} {motion(a, scene, calm)}" for a in scene.shapes]
    setting = f"On a plain {scene.background} background, {join(moving)}."
    length = f"The video lasts {seconds(scene.duration)}."
    if scene.event is None:
        short = f"{_sentence(join(shapes))} move around calmly."
        story = "All shapes keep moving smoothly and nothing unusual happens."
        ann = {
            "anomaly": {"abnormal": False, "classes": [], "segments": [], "keywords": [],
                        "description": "The shapes move smoothly around the scene; nothing unusual happens."},
            "key_sentences": [f"{len(shapes)} shapes move smoothly", "nothing unusual happens"],
            "query": f"{_sentence(join(shapes))} moving calmly on a {scene.background} background.",
        }
        qa = _normal_qa()
    else:
        kind, slots = EVENTS[scene.event.kind], _slots(scene)
        start, end = scene.event.start, scene.event.end
        short = _fill(kind.caption, slots)
        story = (f"{_sentence(span_text(start, end))}, {_clause(_fill(kind.description, slots))}. "
                 f"{_fill(kind.effect, slots)}")
        ann = {
            "anomaly": {
                "abnormal": True, "classes": [scene.event.kind], "segments": [[start, end]],
                "keywords": [_fill(k, slots) for k in kind.keywords],
                "description": _fill(kind.description, slots),
                "cause": _fill(kind.cause, slots), "effect": _fill(kind.effect, slots),
            },
            "key_sentences": [_fill(kind.key_sentence, slots), span_text(start, end), f"{kind.label} anomaly"],
            "query": _fill(kind.query, slots),
        }
        qa = _anomaly_qa(kind, slots, start, end)
    long = f"{setting} {story} {length}"
    qa.append(("description", "Describe what happens in the video.", long))
    if rng is not None:
        qa = [qa[i] for i in rng.permutation(len(qa))]
    return {
        "caption": short,
        "captions": [short, long],
        "scene": f"A plain {scene.background} background with {join(shapes)}.",
        **ann,
        "conversations": _conversation(qa),
        "meta": meta,
    }


def _normal_qa() -> list[tuple[str, str, str]]:
    return [
        ("detection", "Is there an anomaly in this video? Answer yes or no.", "No."),
        ("classification", "What kind of anomaly happens in the video?", "None; the video is normal."),
    ]


def _anomaly_qa(kind: EventKind, slots: dict[str, str], start: float, end: float) -> list[tuple[str, str, str]]:
    return [
        ("detection", "Is there an anomaly in this video? Answer yes or no.", "Yes."),
        ("classification", "What kind of anomaly happens in the video?", f"{_sentence(kind.label)}."),
        ("timestamp", "When does the anomaly happen?", f"{_sentence(span_text(start, end))}."),
        ("cause", "Why does the anomaly happen?", _fill(kind.cause, slots)),
        ("result", "What is the result of the anomaly?", _fill(kind.effect, slots)),
    ]


def _conversation(qa: list[tuple[str, str, str]]) -> list[dict]:
    """LLaVA turns from ``(task, question, answer)``; the first question carries the video token."""
    turns = []
    for n, (task, question, answer) in enumerate(qa):
        prompt = VIDEO_PROMPT + question if n == 0 else question
        turns += [{"from": "human", "value": prompt, "task": task}, {"from": "gpt", "value": answer, "task": task}]
    return turns


def _placed(actor: Actor, scene: Scene) -> str:
    size = "large" if actor.size >= LARGE_SIZE else "small"
    where = region(actor.xy[0], scene.width, scene.height)
    return f"a {size} {actor.name} in the {where}"


def image_annotation(scene: Scene, meta: dict) -> dict:
    """The annotation of a synthetic image (a one-frame scene): captions and a pretraining turn.

    Args:
        scene: The scene (frame 0 is the image).
        meta: Provenance stored under ``meta``.

    Returns:
        An annotation that passes ``vau.data.shards.annotation.validate_annotation``.
    """
    short = f"{_sentence(join(_shape_list(scene)))} on a {scene.background} background."
    long = f"On a plain {scene.background} background there is {join([_placed(a, scene) for a in scene.shapes])}."
    return {
        "caption": short,
        "captions": [short, long],
        "conversations": [{"from": "human", "value": IMAGE_QUESTION}, {"from": "gpt", "value": short}],
        "meta": meta,
    }
