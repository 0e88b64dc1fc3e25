"""The `vau` command line: a thin dispatcher over ``vau.commands.*``.

New sub-commands (shards, synth, infer, eval, sweep, export) register a module here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from vau.registry import Registry

COMMANDS: Registry[str] = Registry("command")
COMMANDS.register("train", "vau.commands.train")
COMMANDS.register("config", "vau.commands.config")
COMMANDS.register("synth", "vau.commands.synth")
COMMANDS.register("shards", "vau.commands.shards")
COMMANDS.register("export", "vau.commands.export")
COMMANDS.register("demo", "vau.commands.demo")
COMMANDS.register("sweep", "vau.commands.sweep")
COMMANDS.register("eval", "vau.commands.eval")
COMMANDS.register("infer", "vau.commands.infer")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per registered command."""
    parser = argparse.ArgumentParser(prog="vau", description="vau: video anomaly understanding training platform")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(COMMANDS.get(name))
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vau` console script; returns the exit code."""
    from vau import console
    from vau.errors import VauError, user_os_error
    from vau.signals import RunStopped

    console.setup()
    parser = build_parser()
    # argparse binds a positional list before an interleaved option (`show --config F k=v`
    # would reject `k=v`), so leftovers that are key=value overrides are appended here.
    args, extra = parser.parse_known_args(argv)
    bad = [x for x in extra if x.startswith("-") or "=" not in x or not hasattr(args, "overrides")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args._run(args) or 0)
    except RunStopped as e:
        # Not an error, but not finished either: the exit status says which signal stopped it.
        print(f"vau {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except VauError as e:
        # What the user fixes (config, missing files, bad data): one line, no traceback.
        _debug_traceback()
        print(f"vau {args.command}: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        err = user_os_error(e)
        if err is None:
            raise  # a bug: its traceback is what a report needs
        # Disk full, read-only or forbidden paths: the user fixes these, a traceback does not help.
        _debug_traceback()
        where = f": {err.filename}" if err.filename else ""
        print(f"vau {args.command}: {err.strerror or err}{where}", file=sys.stderr)
        return 2


def _debug_traceback() -> None:
    """With ``VAU_DEBUG=1`` a user error shows its traceback above its one line."""
    import os
    import traceback

    if os.environ.get("VAU_DEBUG", "") not in ("", "0"):
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
