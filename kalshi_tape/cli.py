"""The `kalshi-tape` command: one entry point whose subcommands each package owns.

`recorder.cli` registers `record`; `replay.cli` registers `serve`, `replay`,
`query`, `verify` and `inspect`. A subcommand's handler returns an exit status.
Bad arguments print usage and exit 2; a `ConfigError` prints its message (which
names the field and the fix) and exits 2; a `StorageError` (object storage that
cannot be reached or refuses the credentials) prints one line and exits 69
(EX_UNAVAILABLE); nothing prints a traceback for input the user got wrong.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kalshi_tape import __version__
from schemas.errors import ConfigError
from schemas.storage import StorageError

__all__ = ["build_parser", "main"]

#: Modules that contribute subcommands through a `register(subparsers)` function.
_COMMAND_MODULES = ("recorder.cli", "replay.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kalshi-tape",
        description="Record, replay and query the Kalshi WebSocket API.",
    )
    parser.add_argument("--version", action="version", version=f"kalshi-tape {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"kalshi-tape: error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"kalshi-tape: error: {exc}", file=sys.stderr)
        return StorageError.exit_status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
