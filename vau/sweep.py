"""Sweeps: a base experiment (or a chain of stages) x a grid and/or list of overrides.

A sweep file (``conf/sweep/*.yaml``)::

    name: ecva_table8                 # run names: <name>-<member>[-<stage>]; wandb group: <name>
    experiment: anomshield/stage3     # one run per member, or:
    stages: [anomshield/stage1, anomshield/stage2, anomshield/stage3]   # a chain per member
    sbatch: [--nodes=1, --time=24:00:00]  # extra sbatch options of the jobs
    overrides: [trainer.max_steps=1000]   # applied to every member (every stage)
    grid:                             # cartesian product
      model.connector.kind: [bimamba, mlp]
    members:                          # and/or explicit members: a list of override lists
      - [model.connector.kind=mamba]  # (named from their overrides) or a mapping name -> list

A chained member trains each stage with the member's overrides and ``init_from`` = the same
member's previous stage export, so an ablated architecture goes through every stage. Each run
is an ordinary resumable run (``resume=auto``) and is finished when its export exists:
re-running a sweep skips finished runs and resumes the others.
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

_FIELDS = {"name", "experiment", "stages", "overrides", "grid", "members", "sbatch"}


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
    if not spec.get("name"):
        raise ConfigError(f"{path}: missing 'name'")
    if bool(spec.get("experiment")) == bool(spec.get("stages")):
        raise ConfigError(f"{path}: give 'experiment' (one run per member) or 'stages' (a chain per member)")
    if spec.get("stages") is not None and not (isinstance(spec["stages"], list) and
                                               all(isinstance(x, str) for x in spec["stages"])):
        raise ConfigError(f"{path}: 'stages' must be a list of experiment names")
    if not spec.get("grid") and not spec.get("members"):
        raise ConfigError(f"{path}: give a 'grid' and/or 'members'")
    return spec


def members(spec: dict[str, Any]) -> list[Member]:
    """The sweep's members: grid product first, then the explicit list; names are unique."""
    grid = spec.get("grid") or {}
    combos = [(None, [f"{k}={v}" for k, v in zip(grid, values)])
              for values in itertools.product(*grid.values())] if grid else []
    listed = spec.get("members") or []
    combos += list(listed.items()) if isinstance(listed, dict) else [(None, m) for m in listed]
    out, seen = [], set()
    for label, own in combos:
        own = list(own or [])
        name = f"{spec['name']}-{label or _slug(own)}"
        if name in seen:
            raise ConfigError(f"sweep {spec['name']}: two members named {name}")
        seen.add(name)
        common = list(spec.get("overrides") or [])
        out.append(Member(name, [*common, *own, f"run.name={name}", f"logger.wandb.group={spec['name']}",
                                 "resume=auto"]))
    return out


def stage_runs(spec: dict[str, Any], member: Member) -> list[tuple[str, list[str]]]:
    """``(experiment, overrides)`` of each run of ``member``: one, or one per stage of the chain.

    A chained stage is named ``<member>-<stage>`` (the experiment's last path part); its
    ``init_from`` (the previous stage's export) is added by :func:`chain_configs`, which knows
    the previous stage's run dir.
    """
    if not spec.get("stages"):
        return [(spec["experiment"], list(member.overrides))]
    return [(exp, [*member.overrides, f"run.name={member.name}-{exp.rsplit('/', 1)[-1]}"]) for exp in spec["stages"]]


def chain_runs(spec: dict[str, Any], member: Member, compose: Any) -> list[tuple[str, list[str], Any]]:
    """``(experiment, overrides, resolved config)`` of each of ``member``'s runs; each stage after
    the first is initialised from the previous stage's export (``<run dir>/export``)."""
    runs: list[tuple[str, list[str], Any]] = []
    for experiment, overrides in stage_runs(spec, member):
        if runs:
            overrides = [*overrides, f"init_from={Path(runs[-1][2].run.dir) / 'export'}"]
        runs.append((experiment, overrides, compose([f"experiment={experiment}", *overrides])))
    return runs


def finished(cfg: Any) -> bool:
    """A run is finished when its run dir holds an export."""
    return (Path(cfg.run.dir) / "export" / "model.safetensors").is_file()


def run_state(cfg: Any) -> str:
    """``done`` (an export), ``started`` (checkpoints, no export: stopped or running) or ``todo``."""
    if finished(cfg):
        return "done"
    ckpts = Path(cfg.run.dir) / "checkpoints"
    return "started" if ckpts.is_dir() and any(ckpts.iterdir()) else "todo"


def sbatch_command(spec: dict[str, Any], list_file: Path, indices: list[int],
                   after: str | None = None) -> list[str]:
    """The job-array submission of the runs at ``indices`` of ``list_file``: through
    ``launch/submit.sh`` (the site file's account, partition, GPUs, ...; the sweep's ``sbatch:``
    options win over them); ``after`` = a job id it waits for (``--dependency=afterok``)."""
    from vau.config import conf_dir

    submit = conf_dir().parent / "launch" / "submit.sh"
    return [str(submit), "sweep", "--parsable", f"--array={','.join(map(str, indices))}",
            f"--job-name={spec['name']}", *([f"--dependency=afterok:{after}"] if after else []),
            *spec.get("sbatch", []), str(list_file)]


def write_run_list(path: Path, runs: list[tuple[str, list[str]]]) -> None:
    """One line per run: ``experiment=... overrides...`` (array task i reads line i)."""
    from vau.io import atomic_write_text

    atomic_write_text(path, "".join(shlex.join([f"experiment={exp}", *overrides]) + "\n" for exp, overrides in runs))
