"""`vau train [--config FILE] [experiment=NAME] [key=value ...]`"""

from __future__ import annotations

import argparse
import sys

HELP = "train a model (a conf/ experiment or a saved config.yaml, plus key=value overrides)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a saved run config (e.g. runs/NAME/config.yaml) to re-run")
    p.add_argument("overrides", nargs="*", help="experiment=NAME, group=NAME (trainer=ddp) or key=value")


def run(args: argparse.Namespace) -> int:
    from vau.signals import STOP, RunStopped

    STOP.install()  # before the heavy imports: a signal during start-up is recorded, not fatal
    from vau.config import compose, conf_dir, list_experiments
    from vau.errors import ConfigError
    from vau.train import train

    if args.config is None and not any(o.startswith("experiment=") for o in args.overrides):
        raise ConfigError("name what to train: experiment=NAME (one of: "
                          f"{', '.join(list_experiments(conf_dir()))}) or --config runs/NAME/config.yaml")
    cfg = compose(args.overrides, config_file=args.config)
    try:
        run_dir = train(cfg)
    except RunStopped as e:
        print(f"vau train: {e}; run dir: {cfg.run.dir}", file=sys.stderr)
        return e.exit_code
    print(f"run dir: {run_dir}")
    return 0
