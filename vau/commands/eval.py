"""`vau eval [eval=NAME | --config FILE] [key=value ...]`: metrics of predictions files, one row per model."""

from __future__ import annotations

import argparse

HELP = ("score predictions.jsonl files (from `vau infer`): caption metrics, AnomEval, accuracy and "
        "temporal IoU; writes results.json, results.md and a wandb table. Files are given as an "
        "override list, e.g. `vau eval eval=ecva predictions=[runs/a/infer,runs/b/infer] "
        "names=[A,B] out=runs/eval` (a folder means its predictions.jsonl)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a YAML file with the eval settings (instead of eval=NAME)")
    p.add_argument("overrides", nargs="*",
                   help="key=value (OmegaConf dotlist; lists as predictions=[a,b]); eval=NAME picks conf/eval/NAME.yaml "
                        "(ecva, http for anomshield; default: the family's), e.g. anomeval.enabled=false")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose_tool_args
    from vau.eval.evaluate import evaluate, markdown_table
    from vau.families import eval_schema

    cfg = compose_tool_args(eval_schema, "eval", args.config, args.overrides)
    results = evaluate(cfg)
    print(markdown_table(results))
    for line in results.get("report", []):
        print(line)
    for path in results["files"]:
        print(f"wrote {path}")
    return 0
