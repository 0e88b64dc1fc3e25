"""`vau infer [infer=NAME | --config FILE] key=value ...`: an exported model's predictions -> predictions.jsonl."""

from __future__ import annotations

import argparse

HELP = ("predictions of an exported model of any family (AnomShield: answers about test videos with hard-prompt "
        "or uniform frames); writes <out>/predictions.jsonl, skips ids already there")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a YAML file with the infer settings (instead of infer=NAME)")
    p.add_argument("overrides", nargs="*",
                   help="key=value; infer=NAME picks conf/infer/NAME.yaml (default: the family's, ecva for anomshield), "
                        "e.g. infer=tiny model=runs/stage3 shards='data/ecva/test-*.tar' out=results/stage3")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose_tool_args
    from vau.eval.infer import run_infer
    from vau.families import infer_schema

    cfg = compose_tool_args(infer_schema, "infer", args.config, args.overrides)
    predictions = run_infer(cfg)
    if predictions is not None:  # rank 0 only under DDP
        print(predictions)
    return 0
