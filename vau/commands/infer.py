"""`vau infer [--config NAME] key=value ...`: answers of an exported AnomShield model -> predictions.jsonl."""

from __future__ import annotations

import argparse

HELP = ("answer questions about test videos with an exported model (hard-prompt or uniform frames); "
        "writes <out>/predictions.jsonl, skips ids already there")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="ecva",
                   help="conf/infer/<name>.yaml or a YAML path (default: ecva, the ECVA task prompts)")
    p.add_argument("overrides", nargs="*",
                   help="key=value, e.g. model=runs/stage3 shards='data/ecva/test-*.tar' out=results/stage3")


def run(args: argparse.Namespace) -> int:
    import logging

    from vau.config import compose_tool
    from vau.config.eval import InferConfig
    from vau.eval.infer import run_infer

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = compose_tool(InferConfig, "infer", args.config, args.overrides)
    predictions = run_infer(cfg)
    if predictions is not None:  # rank 0 only under DDP
        print(predictions)
    return 0
