"""`vau config show|list`: print the resolved config, or the available experiments."""

from __future__ import annotations

import argparse
from vau.errors import ConfigError, UnknownNameError

HELP = ("show the resolved config (`show [overrides]`), one value (`get KEY [overrides]`), list experiments "
        "(`list`), or the keys two runs differ in (`diff RUN_A RUN_B`: run dirs or config files)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show", "get", "list", "diff"])
    p.add_argument("--config", help="a saved run config to start from")
    p.add_argument("overrides", nargs="*", help="[KEY for get] experiment=NAME, group=NAME or key=value")


def run(args: argparse.Namespace) -> int:
    from vau.config import compose, conf_dir, list_experiments, to_yaml

    if args.action == "diff":
        return _diff(args.overrides)
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


def _run_config(source: str) -> dict:
    """The config.yaml of a run dir (or an export), or a config file itself, as plain data."""
    from pathlib import Path

    import yaml

    from vau.errors import NotFoundError

    path = Path(source)
    for candidate in (path / "config.yaml", path / "export" / "config.yaml", path):
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text()) or {}
    raise NotFoundError(f"{source}: no config.yaml (expected a run dir, an export or a config file)")


def _diff(sources: list[str]) -> int:
    """Prints ``key: A -> B`` for each differing key of two runs' configs; exit 1 when any differ."""
    from vau.config import config_diff

    if len(sources) != 2 or any("=" in s for s in sources):
        raise ConfigError("usage: vau config diff RUN_A RUN_B (run dirs or config.yaml files)")
    diff = config_diff(_run_config(sources[0]), _run_config(sources[1]))
    for key, a, b in diff:
        print(f"{key}: {a!r} -> {b!r}")
    if not diff:
        print(f"{sources[0]} and {sources[1]}: same config")
    return 1 if diff else 0
