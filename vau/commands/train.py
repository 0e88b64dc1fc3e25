"""`vau train [--config FILE] [experiment=NAME] [key=value ...]`"""

from __future__ import annotations

import argparse

HELP = "train a model (a conf/ experiment or a saved config.yaml, plus key=value overrides)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a saved run config (e.g. runs/NAME/config.yaml) to re-run")
    p.add_argument("overrides", nargs="*", help="experiment=NAME, group=NAME (trainer=ddp) or key=value")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose
    from vau.train import train

    cfg = compose(args.overrides, config_file=args.config)
    run_dir = train(cfg)
    print(f"run dir: {run_dir}")
    return 0
