"""Reading a run's offline wandb files back: which steps an earlier segment already logged
(and, for tests and tools, a run's history, group and config).

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
from typing import Any, Iterator

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


def _parsed(path: Path) -> Iterator[Any]:
    """The ``wandb_internal_pb2.Record`` messages of one ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    for raw in _records(path):
        record = pb.Record()
        try:
            record.ParseFromString(raw)
        except Exception:  # protobuf's DecodeError: a damaged record ends what can be trusted
            return
        yield record


def _items(items: Any) -> dict:
    return {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in items}


def history(path: Path) -> Iterator[dict]:
    """The history rows (``{key: value}``, ``_step`` included) of one ``.wandb`` file, in order."""
    for record in _parsed(path):
        if record.WhichOneof("record_type") == "history":
            yield _items(record.history.item)


def run_info(path: Path) -> dict:
    """The run of one ``.wandb`` file: ``{"run_id", "project", "entity", "group", "job_type",
    "config": {key: value}}``, the config as the run record and later config updates leave it."""
    info: dict = {"config": {}}
    for record in _parsed(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            info.update(run_id=r.run_id, project=r.project, entity=r.entity, group=r.run_group, job_type=r.job_type)
            info["config"].update(_items(r.config.update))
        elif kind == "config":
            info["config"].update(_items(record.config.update))
    return info


def segments(wandb_dir: Path, run_id: str) -> list[Path]:
    """The ``.wandb`` files of ``run_id``'s offline segments under ``wandb_dir``, oldest first."""
    return sorted(p for d in wandb_dir.glob(f"offline-run-*-{run_id}") for p in d.glob("*.wandb"))


def last_logged_step(wandb_dir: Path, run_id: str) -> int | None:
    """The highest ``_step`` the run's earlier offline segments logged (None: nothing yet)."""
    steps = [row["_step"] for f in segments(wandb_dir, run_id) for row in history(f) if "_step" in row]
    return max(steps) if steps else None


def artifacts(path: Path) -> list[dict]:
    """The artifacts one ``.wandb`` file logs, in order (a logged ``wandb.Table`` holding media is
    one, of type ``run_table``): ``{"type", "name", "files": {path in the artifact: local file}}``.
    Offline, the local files are wandb's staged copies, which ``wandb sync`` uploads."""
    return [{"type": record.artifact.type, "name": record.artifact.name,
             "files": {c.path: c.local_path for c in record.artifact.manifest.contents}}
            for record in _parsed(path) if record.WhichOneof("record_type") == "artifact"]
