"""`vau eval [eval=NAME | --config FILE] [key=value ...]`: metrics of predictions files, one row per model."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("score predictions.jsonl files (from `vau infer`): caption metrics, AnomEval, accuracy and "
        "temporal IoU; writes results.json, results.md and a wandb table. Files are given as an "
        "override list, e.g. `vau eval eval=ecva predictions=[runs/a/infer,runs/b/infer] "
        "names=[A,B] out=runs/eval` (a folder means its predictions.jsonl)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a YAML file with the eval settings (instead of eval=NAME)")
    p.add_argument("overrides", nargs="*",
                   help="key=value (OmegaConf dotlist; lists as predictions=[a,b]); eval=NAME picks conf/eval/NAME.yaml "
                        "(ecva, http; default: the schema defaults), e.g. anomeval.enabled=false")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose_tool_args
    from vau.config.eval import EvalConfig
    from vau.eval.evaluate import (
        ANOMEVAL_ITEMS,
        RESULTS_JSON,
        RESULTS_MD,
        evaluate,
        markdown_table,
    )

    cfg = compose_tool_args(EvalConfig, "eval", args.config, args.overrides)
    results = evaluate(cfg)
    print(markdown_table(results))
    out = Path(cfg.out)
    if cfg.anomeval.enabled:
        print(f"judge: {results['judge_calls']} call(s), {results['judge_cache_hits']} cached answer(s)")
    for name in (RESULTS_JSON, RESULTS_MD, *([ANOMEVAL_ITEMS] if cfg.anomeval.enabled else [])):
        print(f"wrote {out / name}")
    return 0
