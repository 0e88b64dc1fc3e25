"""`vau sweep [status] SWEEP.yaml [--dry-run] [--local] [overrides]`: a grid of runs (or of stage
chains) as SLURM jobs, or here one after another; `status` lists each member's stages."""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path

HELP = ("run a sweep file: SLURM jobs (one array; a chain of stages per member linked by afterok) or --local, "
        "one run after another; finished runs are skipped. `vau sweep status FILE` shows each member's stages")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="sweep file (e.g. conf/sweep/ecva_table8.yaml), or `status` followed by the file")
    p.add_argument("--dry-run", action="store_true", help="print the members and the sbatch commands; submit nothing")
    p.add_argument("--local", action="store_true", help="run the members here, one after another (no SLURM)")
    p.add_argument("overrides", nargs="*", help="key=value applied to every member (after the sweep's own)")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose
    from vau.errors import ConfigError
    from vau.sweep import chain_runs, load_sweep, members, run_state

    status = args.sweep == "status"
    if status:
        if not args.overrides:
            raise ConfigError("usage: vau sweep status SWEEP.yaml [overrides]")
        args.sweep = args.overrides.pop(0)
    spec = load_sweep(args.sweep)
    ms = members(spec)
    for m in ms:
        m.overrides += args.overrides
    plans = [chain_runs(spec, m, compose) for m in ms]  # composes (validates) every run first
    chained = bool(spec.get("stages"))
    for i, (m, runs) in enumerate(zip(ms, plans)):
        states = [run_state(cfg) for _, _, cfg in runs]
        overall = "done" if all(s == "done" for s in states) else "todo"
        stages = "  ".join(f"{exp.rsplit('/', 1)[-1]}:{s}" for (exp, _, _), s in zip(runs, states)) if chained else ""
        print(f"{i:3d} {overall}  {m.name}  -> {runs[-1][2].run.dir}" + (f"  [{stages}]" if stages else ""))
    if status:
        return 0
    todo = [i for i, runs in enumerate(plans) if any(run_state(cfg) != "done" for _, _, cfg in runs)]
    if not todo:
        print(f"sweep {spec['name']}: all {len(ms)} member(s) finished")
        return 0
    if args.local:
        return _local(spec, ms, plans, todo, args.dry_run)
    return _submit(spec, plans, todo, args.dry_run)


def _local(spec: dict, ms: list, plans: list, todo: list[int], dry_run: bool) -> int:
    from vau.signals import STOP
    from vau.sweep import finished
    from vau.train import train

    STOP.install()  # a stop between runs is kept for the next one, which then stops at once
    for i in todo:
        print(f"== sweep {spec['name']} member {i}: {ms[i].name}", flush=True)
        for experiment, _, cfg in plans[i]:
            if finished(cfg):
                continue
            if len(plans[i]) > 1:
                print(f"== {ms[i].name}: {experiment} -> {cfg.run.dir}", flush=True)
            if not dry_run:
                train(cfg)  # a stop (RunStopped) ends the sweep: this run and the later stages stay todo
    return 0


def _submit(spec: dict, plans: list, todo: list[int], dry_run: bool) -> int:
    from vau.sweep import finished, sbatch_command, write_run_list

    # One list line per run of the unfinished members; each member's unfinished lines in order.
    runs, lines = [], []
    for i in todo:
        mine = []
        for exp, overrides, cfg in plans[i]:
            if not finished(cfg):
                mine.append(len(runs))
            runs.append((exp, overrides))
        lines.append(mine)
    list_file = Path(plans[0][-1][2].run.dir).parent / "sweeps" / spec["name"] / "runs.txt"
    if not spec.get("stages"):  # one job array over the members
        cmd = sbatch_command(spec, list_file, [n for mine in lines for n in mine])
        print(shlex.join(cmd))
        if dry_run:
            return 0
        write_run_list(list_file, runs)
        job = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
        print(f"submitted job array {job} ({len(todo)} member(s)); runs listed in {list_file}")
        return 0
    # One chain per member: each unfinished stage waits for the previous one (afterok).
    for chain in lines:
        print(" -> ".join(shlex.join(sbatch_command(spec, list_file, [n])) for n in chain))
    if dry_run:
        return 0
    write_run_list(list_file, runs)
    for i, chain in zip(todo, lines):
        jobs: list[str] = []
        for n in chain:
            out = subprocess.run(sbatch_command(spec, list_file, [n], jobs[-1] if jobs else None), check=True,
                                 capture_output=True, text=True).stdout.strip()
            jobs.append(out.split(";")[0])
        print(f"submitted member {i}: jobs {' -> '.join(jobs)} (afterok)")
    print(f"runs listed in {list_file}")
    return 0
