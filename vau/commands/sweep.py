"""`vau sweep SWEEP.yaml [--dry-run] [--local] [overrides]`: a grid of runs as one job array."""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path

HELP = "run a sweep file: one SLURM job array (or --local, one member after another); finished members are skipped"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="sweep file (e.g. conf/sweep/ecva_table8.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print the members and the sbatch command; submit nothing")
    p.add_argument("--local", action="store_true", help="run the members here, one after another (no SLURM)")
    p.add_argument("overrides", nargs="*", help="key=value applied to every member (after the sweep's own)")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose
    from vau.sweep import finished, load_sweep, members, sbatch_command, write_member_list

    spec = load_sweep(args.sweep)
    ms = members(spec)
    for m in ms:
        m.overrides += args.overrides
    cfgs = [compose([f"experiment={spec['experiment']}", *m.overrides]) for m in ms]  # validates every member
    todo = [i for i, cfg in enumerate(cfgs) if not finished(cfg)]
    for i, (m, cfg) in enumerate(zip(ms, cfgs)):
        print(f"{i:3d} {'todo' if i in todo else 'done'}  {m.name}  -> {cfg.run.dir}")
    if not todo:
        print(f"sweep {spec['name']}: all {len(ms)} member(s) finished")
        return 0
    if args.local:
        from vau.signals import STOP
        from vau.train import train

        STOP.install()  # a stop between members is kept for the next one, which then stops at once

        for i in todo:
            print(f"== sweep {spec['name']} member {i}: {ms[i].name}", flush=True)
            if not args.dry_run:
                train(cfgs[i])  # a stop (RunStopped) ends the sweep: the member stays todo
        return 0
    list_file = Path(cfgs[0].run.dir).parent / "sweeps" / spec["name"] / "members.txt"
    cmd = sbatch_command(spec, list_file, todo)
    print(shlex.join(cmd))
    if args.dry_run:
        return 0
    write_member_list(list_file, spec, ms)
    job = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    print(f"submitted job array {job} ({len(todo)} member(s)); members listed in {list_file}")
    return 0
