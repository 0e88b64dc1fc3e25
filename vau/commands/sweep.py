"""`vau sweep [status|eval] SWEEP.yaml [--dry-run] [--local] [overrides]`: a grid of runs (or of stage
chains) as SLURM jobs, or here one after another; `status` lists each member's stages; `eval`
answers the test set with each member's last export (and the eval-only members') and writes
one results table with a row per member."""

from __future__ import annotations

import argparse
import shlex
import subprocess
from pathlib import Path

HELP = ("run a sweep file: SLURM jobs (one array; a chain of stages per member linked by afterok) or --local, "
        "one run after another; finished runs are skipped. `vau sweep status FILE` shows each member's stages; "
        "`vau sweep eval FILE` writes the results table across members")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", help="sweep file (e.g. conf/sweep/ecva_table8.yaml), or `status` / `eval` followed by the file")
    p.add_argument("--dry-run", action="store_true", help="print the members and the sbatch commands; submit nothing")
    p.add_argument("--local", action="store_true", help="run the members here, one after another (no SLURM)")
    p.add_argument("--shards", help="`eval`: the test shards (default: the sweep's evaluate.shards)")
    p.add_argument("--infer", action="append", default=[], metavar="KEY=VALUE",
                   help="`eval`: an override of every member's vau infer (after evaluate.infer); repeatable")
    p.add_argument("--eval", action="append", default=[], metavar="KEY=VALUE",
                   help="`eval`: an override of the vau eval (after evaluate.eval); repeatable")
    p.add_argument("overrides", nargs="*", help="key=value applied to every member (after the sweep's own)")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose
    from vau.errors import ConfigError
    from vau.sweep import chain_runs, load_sweep, members, run_state

    mode = args.sweep if args.sweep in ("status", "eval") else None
    status = mode is not None
    if status:
        if not args.overrides:
            raise ConfigError(f"usage: vau sweep {mode} SWEEP.yaml [overrides]")
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
    if spec.get("evaluate") and status:
        from vau.sweep import eval_rows, sweep_dir

        for row in eval_rows(spec, ms, plans):
            state = _answers_state(sweep_dir(spec, plans) / "infer" / row.label)
            print(f"    eval {row.label} (export of {row.of}): answers {state}"
                  + ("" if row.ready else ", export not there yet"))
    if mode == "eval":
        return _evaluate(spec, ms, plans, args)
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


def _answers_state(out: Path) -> str:
    """``done`` (infer.json written), ``started`` (answers, no infer.json) or ``todo``."""
    if (out / "infer.json").is_file():
        return "done"
    return "started" if (out / "parts").is_dir() or (out / "predictions.jsonl").is_file() else "todo"


def _evaluate(spec: dict, ms: list, plans: list, args: argparse.Namespace) -> int:
    """Answers of every finished member (`vau infer`, resumable) -> one `vau eval`, a row per member."""
    from vau.config import compose_tool_args
    from vau.errors import ConfigError
    from vau.eval.evaluate import evaluate, markdown_table
    from vau.eval.infer import run_infer
    from vau.families import eval_schema, infer_schema
    from vau.sweep import eval_rows, sweep_dir

    ev = spec.get("evaluate") or {}
    shards = args.shards or ev.get("shards")
    if not shards:
        raise ConfigError(f"sweep {spec['name']}: no test shards (give evaluate.shards in the sweep file or --shards)")
    root = sweep_dir(spec, plans)
    rows = eval_rows(spec, ms, plans)
    ready = [r for r in rows if r.ready]
    for r in rows:
        if not r.ready:
            print(f"sweep {spec['name']}: {r.label} left out: {r.model} does not exist yet (member {r.of} unfinished)")
    if not ready:
        raise ConfigError(f"sweep {spec['name']}: no member has finished its last stage; nothing to evaluate")
    for r in ready:
        out = root / "infer" / r.label
        if _answers_state(out) == "done":
            print(f"== {r.label}: answers already in {out}")
            continue
        print(f"== {r.label}: vau infer model={r.model} -> {out}", flush=True)
        run_infer(compose_tool_args(infer_schema, "infer", None,
                                    [f"model={r.model}", f"shards={shards}", f"out={out}", *r.infer, *args.infer]))
    predictions = ",".join(str(root / "infer" / r.label) for r in ready)
    cfg = compose_tool_args(eval_schema, "eval", None,
                            [f"predictions=[{predictions}]", f"names=[{','.join(r.label for r in ready)}]",
                             f"out={root / 'eval'}", *(ev.get("eval") or []), *args.eval])
    results = evaluate(cfg)
    print(markdown_table(results))
    for path in results["files"]:
        print(f"wrote {path}")
    return 0
