"""Anomaly classification from free-text answers."""

from __future__ import annotations

import re
from vau.errors import BadInputError


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def classification_accuracy(predictions: dict[str, str], classes: dict[str, list[str]]) -> float:
    """Share of answers that name one of the sample's classes.

    A class may be multi-level (``"Traffic accident/Collision"``): naming any level counts.
    Matching is on normalised words (case and punctuation ignored), as a whole phrase.

    Args:
        predictions: Sample id -> answer text.
        classes: Sample id -> reference class names.
    """
    if not predictions:
        raise BadInputError("classification_accuracy: no predictions")
    hits = 0
    for key, answer in predictions.items():
        text = f" {_norm(answer)} "
        names = [level for c in classes.get(key, []) for level in re.split(r"[/>|]", c)]
        hits += any(f" {_norm(n)} " in text for n in names if _norm(n))
    return hits / len(predictions)
