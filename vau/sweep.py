"""Sweeps: a base experiment x a grid and/or list of overrides -> one run per member.

A sweep file (``conf/sweep/*.yaml``)::

    name: ecva_table8                 # run names: <name>-<member slug>; wandb group: <name>
    experiment: anomshield/stage3
    sbatch: [--nodes=1, --time=24:00:00]  # extra sbatch options of the job array
    overrides: [trainer.max_steps=1000]   # applied to every member
    grid:                             # cartesian product
      model.connector.kind: [bimamba, mlp]
    members:                          # and/or explicit members
      - [model.connector.kind=mamba]

Each member is an ordinary resumable run (``resume=auto``); a member is finished when its
export exists, so re-running a sweep skips finished members and resumes the others.
"""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from vau.errors import ConfigError

_FIELDS = {"name", "experiment", "overrides", "grid", "members", "sbatch"}


@dataclass
class Member:
    """One run of a sweep."""

    name: str
    """run.name of the member."""
    overrides: list[str]
    """Overrides on top of the sweep's experiment (the member's own first)."""


def _slug(overrides: list[str]) -> str:
    parts = []
    for o in overrides:
        key, _, value = o.partition("=")
        parts.append(f"{'.'.join(key.split('.')[-2:])}-{value}")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(parts)) or "base"


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Reads and checks a sweep file (one-line errors naming the key)."""
    spec = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping")
    unknown = set(spec) - _FIELDS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; expected {sorted(_FIELDS)}")
    for key in ("name", "experiment"):
        if not spec.get(key):
            raise ConfigError(f"{path}: missing '{key}'")
    if not spec.get("grid") and not spec.get("members"):
        raise ConfigError(f"{path}: give a 'grid' and/or 'members'")
    return spec


def members(spec: dict[str, Any]) -> list[Member]:
    """The sweep's members: grid product first, then the explicit list; names are unique."""
    grid = spec.get("grid") or {}
    combos = [[f"{k}={v}" for k, v in zip(grid, values)] for values in itertools.product(*grid.values())] if grid else []
    combos += [list(m) for m in spec.get("members") or []]
    out, seen = [], set()
    for own in combos:
        name = f"{spec['name']}-{_slug(own)}"
        if name in seen:
            raise ConfigError(f"sweep {spec['name']}: two members named {name}")
        seen.add(name)
        common = list(spec.get("overrides") or [])
        out.append(Member(name, [*common, *own, f"run.name={name}", f"logger.wandb.group={spec['name']}",
                                 "resume=auto"]))
    return out


def finished(cfg: Any) -> bool:
    """A member is finished when its run dir holds an export."""
    return (Path(cfg.run.dir) / "export" / "model.safetensors").is_file()


def sbatch_command(spec: dict[str, Any], list_file: Path, indices: list[int]) -> list[str]:
    """The job-array submission for the members at ``indices`` of ``list_file``: through
    ``launch/submit.sh`` (the site file's account, partition, GPUs, ...; the sweep's ``sbatch:``
    options win over them)."""
    from vau.config import conf_dir

    submit = conf_dir().parent / "launch" / "submit.sh"
    return [str(submit), "sweep", "--parsable", f"--array={','.join(map(str, indices))}",
            f"--job-name={spec['name']}", *spec.get("sbatch", []), str(list_file)]


def write_member_list(path: Path, spec: dict[str, Any], ms: list[Member]) -> None:
    """One line per member: ``experiment=... overrides...`` (array task i reads line i)."""
    from vau.io import atomic_write_text

    atomic_write_text(path, "".join(shlex.join([f"experiment={spec['experiment']}", *m.overrides]) + "\n" for m in ms))
