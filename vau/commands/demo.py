"""`vau demo`: the AnomShield curriculum end to end on CPU, then `vau infer` + `vau eval` on held-out videos (README command 1)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HELP = ("AnomShield demo: synthetic data, tiny CLIP and LLM pretraining + stages 1->2->3 on CPU, then "
        "answers and accuracies on held-out videos")

STAGES = ("tiny/anomshield_vision", "tiny/anomshield_llm", "tiny/anomshield_stage1", "tiny/anomshield_stage2",
          "tiny/anomshield_stage3")
SAMPLINGS = ("uniform", "hard_prompt")
"""Frame selections the demo answers with (one table row each; ECVA Tab. VIII's "- hard prompt" is uniform)."""
TASKS = ("detection", "classification", "timestamp", "description")
"""What the demo asks the held-out videos (conf/infer/tiny.yaml's questions; cause/result need a judge to score well)."""
SUMMARY = (("detection", "accuracy", "Det. Acc"), ("classification", "accuracy", "Cls. Acc"),
           ("timestamp", "mIoU", "mIoU"), ("description", "ROUGE-L", "Desc. ROUGE-L"))
"""The printed table: (task, metric of results.json, column), all x100."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="data root for `vau synth` (default: $VAU_DATA or ./data)")
    p.add_argument("--videos", type=int, default=768, help="synthetic videos, a quarter held out (default 768)")
    p.add_argument("--eval-videos", type=int, default=64, help="held-out videos answered and scored (default 64)")
    p.add_argument("--samples", type=int, default=3, help="answers printed (default 3)")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every training stage")


def held_out(shard_dir: Path, videos: int) -> str:
    """A shard spec (``a::b``) of the first validation shards holding at least ``videos`` videos."""
    from vau.data.shards.shardlist import shard_sizes

    shards = sorted(str(p) for p in shard_dir.glob("videos-val-*.tar"))
    sizes = shard_sizes(shards) or [1] * len(shards)
    picked = [s for i, s in enumerate(shards) if sum(sizes[:i]) < videos]
    return "::".join(picked)


def run(args: argparse.Namespace) -> int:
    from vau.config import compose, compose_tool_args
    from vau.config.schema import default_data_root
    from vau.data.synth import generate
    from vau.eval.evaluate import evaluate
    from vau.eval.infer import run_infer
    from vau.families import eval_schema, infer_schema
    from vau.signals import STOP
    from vau.train import train

    STOP.install()  # a stop in any stage ends the demo (RunStopped), the later stages unstarted
    t0 = time.perf_counter()
    data = args.data if args.data is not None else default_data_root()
    synth = generate(data, videos=args.videos, images=64)  # "up to date" (no work) when the same data is there
    run_dir = None
    for name in STAGES:
        print(f"== vau train experiment={name}", flush=True)
        # A progress line every 50 steps (not every logged step): the demo's log stays readable.
        run_dir = train(compose([f"experiment={name}", f"data.root={data}", "trainer.progress_every_n_steps=50",
                                 *args.overrides]))
    assert run_dir is not None
    out = run_dir.parent / "tiny_anomshield_demo"
    shards = held_out(synth.shard_dir, args.eval_videos)
    folders = []
    for sampling in SAMPLINGS:
        print(f"\n== vau infer infer=tiny sampling={sampling} model={run_dir} ({args.eval_videos} held-out videos)",
              flush=True)
        folders.append(out / f"infer_{sampling}")
        run_infer(compose_tool_args(infer_schema, "infer", None, [
            "infer=tiny", f"model={run_dir}", f"shards={shards}", f"out={folders[-1]}", f"sampling={sampling}",
            f"tasks=[{','.join(TASKS)}]", "progress=false"]))
    print("== vau eval", flush=True)
    results = evaluate(compose_tool_args(eval_schema, "eval", None, [
        f"predictions=[{','.join(map(str, folders))}]", f"names=[{','.join(SAMPLINGS)}]", f"out={out / 'eval'}",
        "anomeval.enabled=false", "wandb=disabled"]))
    print("\n| frames | " + " | ".join(col for _, _, col in SUMMARY) + " |\n|---|" + "---|" * len(SUMMARY))
    for sampling in SAMPLINGS:
        tasks = results["models"][sampling]["tasks"]
        print(f"| {sampling} | " + " | ".join(f"{100 * tasks[t][m]:.1f}" if tasks.get(t, {}).get(m) is not None
                                             else "-" for t, m, _ in SUMMARY) + " |")
    rows = [json.loads(line) for line in (folders[0] / "predictions.jsonl").read_text().splitlines() if line.strip()]
    for r in [r for r in rows if r.get("task") in ("detection", "classification")][:args.samples]:
        print(f"\n[{r['id']}] Q: {r['prompt'].replace(chr(10), ' ')}\n  truth:  {r.get('reference')}\n"
              f"  model:  {r['answer']}")
    print(f"\nfull tables: {out / 'eval' / 'results.md'}\ndemo finished in {time.perf_counter() - t0:.0f} s")
    return 0
