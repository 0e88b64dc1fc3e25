"""Reading a run's offline wandb files back: which steps an earlier segment already logged.

wandb ships no reader for its ``.wandb`` transaction log (the Python one left with wandb-core),
so this is the small part of the format we need (the LevelDB-style log of wandb's datastore):
a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of records, each
``crc32 (u32) | length (u16) | type (u8: 1 full, 2 first, 3 middle, 4 last) | data`` with
``data`` a serialized ``wandb_internal_pb2.Record``. A record cut short by a kill ends the read.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterator

_HEADER, _BLOCK, _RECORD_HEADER = 7, 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    if not data.startswith(b":W&B"):
        return
    pos, parts = _HEADER, b""
    while pos + _RECORD_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _RECORD_HEADER:  # block trailer: padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _RECORD_HEADER])
        if kind == 0:  # zero padding up to the block end
            pos += left
            continue
        chunk = data[pos + _RECORD_HEADER:pos + _RECORD_HEADER + length]
        if len(chunk) < length:
            return  # cut short by a kill
        pos += _RECORD_HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            parts = chunk
        elif kind == _MIDDLE:
            parts += chunk
        elif kind == _LAST:
            yield parts + chunk
            parts = b""


def history(path: Path) -> Iterator[dict]:
    """The history rows (``{key: value}``, ``_step`` included) of one ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    for raw in _records(path):
        record = pb.Record()
        try:
            record.ParseFromString(raw)
        except Exception:  # protobuf's DecodeError: a damaged record ends what can be trusted
            return
        if record.WhichOneof("record_type") == "history":
            yield {(item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                   for item in record.history.item}


def segments(wandb_dir: Path, run_id: str) -> list[Path]:
    """The ``.wandb`` files of ``run_id``'s offline segments under ``wandb_dir``, oldest first."""
    return sorted(p for d in wandb_dir.glob(f"offline-run-*-{run_id}") for p in d.glob("*.wandb"))


def last_logged_step(wandb_dir: Path, run_id: str) -> int | None:
    """The highest ``_step`` the run's earlier offline segments logged (None: nothing yet)."""
    steps = [row["_step"] for f in segments(wandb_dir, run_id) for row in history(f) if "_step" in row]
    return max(steps) if steps else None
