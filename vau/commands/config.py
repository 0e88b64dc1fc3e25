"""`vau config show|list`: print the resolved config, or the available experiments."""

from __future__ import annotations

import argparse

HELP = "show the resolved config (`show [overrides]`) or list experiments (`list`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show", "list"])
    p.add_argument("--config", help="a saved run config to start from")
    p.add_argument("overrides", nargs="*", help="experiment=NAME, group=NAME or key=value")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose, conf_dir, list_experiments, to_yaml

    if args.action == "list":
        print("\n".join(list_experiments(conf_dir())))
        return 0
    print(to_yaml(compose(args.overrides, config_file=args.config)), end="")
    return 0
