"""The `kalshi-tape` command: one entry point whose subcommands each package owns.

`recorder.service.cli` registers `record`; `replay.cli` registers `serve`, `replay`,
`query`, `verify` and `inspect`. A subcommand's handler returns an exit status.
Every subcommand gets the logging flags (`kalshi_tape.logs`). Bad arguments print
that subcommand's usage and exit 2; a `ConfigError` prints its message (which
names the field and the fix) and exits 2; an `OperationalError` (a port in use,
storage out of reach, a damaged file, a refused permission, a query limit) prints
one line and exits with its own status (`schemas.errors.EXIT_CODES`). Nothing
prints a traceback for input the user got wrong or for a machine in the way.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from kalshi_tape import __version__
from kalshi_tape.logs import add_logging_arguments, configure_logging, json_logging_active
from schemas.errors import ConfigError, OperationalError
from schemas.lean import keep_pandas_out

__all__ = ["build_parser", "main"]

#: Modules that contribute subcommands through a `register(subparsers)` function.
_COMMAND_MODULES = ("recorder.service.cli", "replay.cli")
#: Commands that run the user's code, which may use pandas; the others keep it out.
_USER_CODE_COMMANDS = frozenset({"backtest"})


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
    for name, command in sub.choices.items():
        add_logging_arguments(command)
        command.set_defaults(command_parser=command, command_name=name)
    return parser


def _fail(args: argparse.Namespace, message: str, status: int) -> int:
    """One line on stderr (a JSON record when the log is JSON), and the exit status."""
    if json_logging_active():
        logging.getLogger("kalshi_tape").error(message, extra={"exit_code": status})
    else:
        print(f"kalshi-tape: error: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help(sys.stderr)
        return 2
    if extra:  # the subcommand's usage, not the top-level one
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    configure_logging(args.log_level, args.log_format)
    if args.command_name not in _USER_CODE_COMMANDS:
        keep_pandas_out()
    try:
        return int(handler(args) or 0)
    except ConfigError as exc:
        return _fail(args, str(exc), 2)
    except OperationalError as exc:
        return _fail(args, str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
