"""Manifests: one JSON object per line naming a sample's media files and its annotation.

A line looks like::

    {"key": "ecva_0001", "video": "videos/0001.mp4", "audio": "audio/0001.wav",
     "features": {"clip": "feats/0001.npy"}, "annotation": {"caption": "...", ...}}

``video`` / ``image`` (one of them, or neither for feature-only samples), ``audio`` and
``features`` are optional; ``annotation`` is an object or the path of a ``.json`` file.
Relative paths are resolved against the manifest's folder (or ``root`` when given).
``key`` defaults to the line number; keys must be unique and contain no ``.`` or ``/``
(the tar member ``<key>.<ext>`` is split at the first dot by every WebDataset reader).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from vau.data.shards.annotation import validate_annotation

VIDEO_EXTS = ("mp4", "mkv", "webm", "avi", "mov")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
AUDIO_EXTS = ("wav", "flac", "mp3", "m4a", "ogg")
_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
_FEATURE = re.compile(r"^[A-Za-z0-9_\-]+$")
_FIELDS = {"key", "video", "image", "audio", "features", "annotation"}


@dataclass
class Sample:
    """A validated sample ready to be written: tar member suffix -> bytes."""

    key: str
    """Sample key (tar member prefix)."""
    members: dict[str, bytes] = field(default_factory=dict)
    """``{"mp4": ..., "json": ..., "clip.npy": ...}``."""

    @property
    def nbytes(self) -> int:
        """Total payload size."""
        return sum(len(v) for v in self.members.values())


def _ext(path: Path, allowed: tuple[str, ...], what: str) -> str:
    ext = path.suffix.lower().lstrip(".")
    if ext not in allowed:
        raise ValueError(f"{what} {path}: extension .{ext} not one of {', '.join(allowed)}")
    return ext


def _read(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise ValueError(f"{what} file not found: {path}")
    return path.read_bytes()


# Media checks take the path, so their one-line errors name the file.
def _check_video(path: Path) -> None:
    from vau.data.media.video import decode_frames, probe

    n, _, _ = probe(path)  # raises VideoDecodeError (a ValueError) with the reason
    decode_frames(path, [0, n - 1])  # first and last frame decode: catches truncated files


def _check_image(path: Path) -> None:
    from vau.data.media.image import load_image

    load_image(path)


def _check_audio(path: Path) -> None:
    from vau.data.media.audio import decode_audio

    decode_audio(path)


def _check_npy(data: bytes, path: Path) -> None:
    try:
        np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"features {path}: not a plain .npy array ({e})") from e


def build_sample(entry: dict, base: Path, *, check_media: bool = True, lineno: Optional[int] = None) -> Sample:
    """Validates one manifest entry and reads its files.

    Args:
        entry: The parsed manifest line.
        base: Folder that relative paths are resolved against.
        check_media: Decode videos/images/audio/npy once to reject unreadable files.
        lineno: Line number, the default key.

    Returns:
        The sample's tar members.

    Raises:
        ValueError: One line with the reason (missing file, unreadable video, bad annotation...).
    """
    if not isinstance(entry, dict):
        raise ValueError(f"manifest entry must be a JSON object, got {type(entry).__name__}")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ValueError(f"unknown manifest field(s) {sorted(unknown)}; expected {sorted(_FIELDS)}")
    key = str(entry.get("key", f"{lineno:09d}" if lineno is not None else ""))
    if not _KEY.match(key):
        raise ValueError(f"key {key!r}: use letters, digits, '_' and '-' only (no '.' or '/')")
    if "video" in entry and "image" in entry:
        raise ValueError("a sample has either 'video' or 'image', not both")
    if "annotation" not in entry:
        raise ValueError("missing 'annotation' (an object or the path of a .json file)")

    def resolve(p: Union[str, Path]) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else base / p

    sample = Sample(key)
    ann = entry["annotation"]
    if isinstance(ann, str):
        path = resolve(ann)
        try:
            ann = json.loads(_read(path, "annotation"))
        except json.JSONDecodeError as e:
            raise ValueError(f"annotation {path}: invalid JSON ({e})") from e
    validate_annotation(ann)
    for kind, exts, check in (("video", VIDEO_EXTS, _check_video), ("image", IMAGE_EXTS, _check_image),
                              ("audio", AUDIO_EXTS, _check_audio)):
        if kind in entry:
            path = resolve(entry[kind])
            ext = _ext(path, exts, kind)
            data = _read(path, kind)
            if check_media:
                check(path)
            sample.members["jpg" if ext == "jpeg" else ext] = data
    feats = entry.get("features", {})
    if not isinstance(feats, dict):
        raise ValueError("'features' must map a name to a .npy path")
    for name, p in feats.items():
        if not _FEATURE.match(name):
            raise ValueError(f"feature name {name!r}: letters, digits, '_' and '-' only")
        path = resolve(p)
        _ext(path, ("npy",), f"feature {name}")
        data = _read(path, f"feature {name}")
        if check_media:
            _check_npy(data, path)
        sample.members[f"{name}.npy"] = data
    sample.members["json"] = json.dumps(ann, ensure_ascii=False, sort_keys=True).encode()
    return sample


def iter_manifest(path: Union[str, Path]) -> Iterator[tuple[int, Union[dict, ValueError]]]:
    """Yields ``(line number, parsed entry or the parse error)``; blank lines are skipped."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, ValueError(f"invalid JSON line ({e.msg} at column {e.colno})")


def write_manifest(path: Union[str, Path], entries: list[dict]) -> None:
    """Writes entries as a JSONL manifest (atomically)."""
    from vau.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in entries))
