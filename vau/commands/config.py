"""`vau config show|list`: print the resolved config, or the available experiments."""

from __future__ import annotations

import argparse
from vau.errors import ConfigError, UnknownNameError

HELP = "show the resolved config (`show [overrides]`), one value (`get KEY [overrides]`), or list experiments (`list`)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show", "get", "list"])
    p.add_argument("--config", help="a saved run config to start from")
    p.add_argument("overrides", nargs="*", help="[KEY for get] experiment=NAME, group=NAME or key=value")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose, conf_dir, list_experiments, to_yaml

    if args.action == "list":
        print("\n".join(list_experiments(conf_dir())))
        return 0
    if args.action == "get":
        # `vau config get run.dir experiment=...`: the first word is the key (launch scripts use it).
        if not args.overrides or "=" in args.overrides[0]:
            raise ConfigError("usage: vau config get KEY [overrides], e.g. vau config get run.dir experiment=tiny/lm")
        key, overrides = args.overrides[0], args.overrides[1:]
        from omegaconf import OmegaConf

        cfg = compose(overrides, config_file=args.config)
        value = OmegaConf.select(cfg, key, default=KeyError)
        if value is KeyError:
            raise UnknownNameError(f"no config key {key!r}")
        print(to_yaml(value).rstrip() if OmegaConf.is_config(value) else value)
        return 0
    print(to_yaml(compose(args.overrides, config_file=args.config)), end="")
    return 0
