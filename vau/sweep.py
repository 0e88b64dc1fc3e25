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
    evaluate:                         # `vau sweep eval`: each member's last export -> vau infer,
      shards: /data/ecva/test/*.tar   # then one vau eval over all of them (a row per member)
      infer: [infer=ecva]             # overrides of every member's vau infer
      eval: [eval=ecva]               # overrides of the vau eval
      members:                        # eval-only rows: another member's export, other infer settings
        no_hard_prompt: {of: full, infer: [sampling=uniform]}

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

_FIELDS = {"name", "experiment", "stages", "overrides", "grid", "members", "sbatch", "evaluate"}
_EVAL_FIELDS = {"shards", "infer", "eval", "members"}


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
    _check_evaluate(path, spec)
    return spec


def _check_evaluate(path: str | Path, spec: dict[str, Any]) -> None:
    ev = spec.get("evaluate")
    if ev is None:
        return
    if not isinstance(ev, dict) or set(ev) - _EVAL_FIELDS:
        raise ConfigError(f"{path}: 'evaluate' is a mapping with keys {sorted(_EVAL_FIELDS)}")
    for key in ("infer", "eval"):
        if not isinstance(ev.get(key) or [], list):
            raise ConfigError(f"{path}: evaluate.{key} must be a list of key=value overrides")
    labels = [m.name.removeprefix(f"{spec['name']}-") for m in members(spec)]
    extra = ev.get("members") or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"{path}: evaluate.members is a mapping name -> {{of: MEMBER, infer: [...]}}")
    for label, m in extra.items():
        if not isinstance(m, dict) or set(m) - {"of", "infer"} or m.get("of") not in labels:
            raise ConfigError(f"{path}: evaluate.members.{label} needs 'of' = one of the members "
                              f"({', '.join(labels)}) and optionally 'infer' overrides")
        if label in labels:
            raise ConfigError(f"{path}: evaluate.members.{label} has the name of a trained member")


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


@dataclass
class EvalRow:
    """One row of a sweep's results table: a member's last export, answered by `vau infer`."""

    label: str
    """Row name (the member's label: ``full``, or an eval-only member's, ``no_hard_prompt``)."""
    model: Path
    """The export it evaluates (the last stage of member ``of``)."""
    of: str
    """The trained member whose export it is."""
    infer: list[str]
    """Overrides of its `vau infer` (the sweep's, then the eval-only member's own)."""
    ready: bool
    """The export exists (the member's chain is done)."""


def eval_rows(spec: dict[str, Any], ms: list[Member], plans: list[list[tuple[str, list[str], Any]]]) -> list[EvalRow]:
    """Every trained member's row, then the eval-only members' (``evaluate.members``)."""
    ev = spec.get("evaluate") or {}
    common = list(ev.get("infer") or [])
    rows, by_label = [], {}
    for m, runs in zip(ms, plans):
        label = m.name.removeprefix(f"{spec['name']}-")
        last = runs[-1][2]
        by_label[label] = (Path(last.run.dir) / "export", finished(last))
        rows.append(EvalRow(label, by_label[label][0], label, common, by_label[label][1]))
    for label, extra in (ev.get("members") or {}).items():
        model, ready = by_label[extra["of"]]
        rows.append(EvalRow(label, model, extra["of"], [*common, *(extra.get("infer") or [])], ready))
    return rows


def sweep_dir(spec: dict[str, Any], plans: list[list[tuple[str, list[str], Any]]]) -> Path:
    """``<runs>/sweeps/<name>``: the run list, the members' answers and the results table."""
    return Path(plans[0][-1][2].run.dir).parent / "sweeps" / spec["name"]


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
