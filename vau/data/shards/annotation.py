"""Sample annotations (``<key>.json`` in a shard): JSON Schema validation per sample kind.

The schemas live in ``vau/data/shards/schemas/`` (one file per kind: caption, conversation,
anomaly, key_sentences, scene, retrieval; ``annotation.schema.json`` composes them).
They are the documentation of the shard format as much as the validator's input.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

KINDS = ("caption", "captions", "conversations", "anomaly", "key_sentences", "scene", "query")
"""Top-level annotation sections; a sample carries at least one."""


@lru_cache(maxsize=None)
def _validator() -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    files = resources.files("vau.data.shards") / "schemas"
    schemas = {p.name: json.loads(p.read_text()) for p in files.iterdir() if p.name.endswith(".schema.json")}
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values()
    )
    return Draft202012Validator(schemas["annotation.schema.json"], registry=registry)


def schema_files() -> list[str]:
    """Names of the packaged schema files."""
    return sorted(p.name for p in (resources.files("vau.data.shards") / "schemas").iterdir() if p.name.endswith(".json"))


def validate_annotation(ann: Any) -> dict:
    """Checks an annotation against the schema; returns it unchanged.

    Args:
        ann: The parsed ``<key>.json`` object.

    Returns:
        ``ann``.

    Raises:
        ValueError: One line naming the offending field (``anomaly.segments[0]: ...``).
    """
    errors = sorted(_validator().iter_errors(ann), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        if e.validator == "anyOf" and not e.absolute_path:
            raise ValueError(f"annotation (top level): needs at least one of {', '.join(KINDS)}")
        where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in e.absolute_path).replace(".[", "[")
        raise ValueError(f"annotation {where or '(top level)'}: {e.message}")
    for i, (start, end) in enumerate(ann.get("anomaly", {}).get("segments", [])):
        if not start < end:
            raise ValueError(f"annotation anomaly.segments[{i}]: start {start} must be < end {end}")
    return ann


def parse_annotation(data: bytes | str) -> dict:
    """Parses and validates ``<key>.json`` contents.

    Raises:
        ValueError: Invalid JSON or an annotation that breaks the schema (one line).
    """
    try:
        ann = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"invalid JSON: {e}") from e
    return validate_annotation(ann)
