"""The `kalshi-tape` command: one entry point whose subcommands each package owns.

`recorder.service.cli` registers `record`; `replay.cli` registers `serve`, `replay`,
`query`, `verify` and `inspect`. A subcommand's handler returns an exit status.
Every subcommand gets the logging flags (`kalshi_tape.logs`). Bad arguments print
that subcommand's usage and exit 2; a `ConfigError` prints its message (which
names the field and the fix) and exits 2; an `OperationalError` (a port in use,
storage out of reach, a damaged file, a refused permission, a query limit) prints
one line and exits with its own status (`schemas.errors.EXIT_CODES`). Nothing
prints a traceback for input the user got wrong or for a machine in the way.

The contract is docs/cli.md sections 1 and 2 (one vocabulary, how a command fails) and
docs/operations.md section 6 (exit statuses), tested as a table in
tests/cli/test_contract.py: no flag is matched by a
prefix of its name (`allow_abbrev=False`); Ctrl+C stops a command with status 130 and
SIGTERM with 143, one line each (`record` and `serve` take either signal as their
normal stop and exit 0); a reader that goes away (`| head`) ends the command quietly
with status 0.

Every process builds the whole parser, so building it loads only the standard library
and light project modules (argument types, the defaults `--help` shows): a handler
imports what its command's work needs (pyarrow, DuckDB, numba, the WebSocket and crypto
libraries, pydantic) when it runs. `--help` and a usage error stay a fraction of a
second (tests/cli/test_startup.py).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

from kalshi_tape import __version__
from kalshi_tape.logs import add_logging_arguments, configure_logging, json_logging_active
from schemas.errors import ConfigError, OperationalError
from schemas.lean import keep_pandas_out

__all__ = ["build_parser", "main"]

#: Modules that contribute subcommands through a `register(subparsers)` function (light:
#: a command's heavy imports are in its handler).
_COMMAND_MODULES = ("recorder.service.cli", "replay.cli")
#: Commands that run the user's code, which may use pandas; the others keep it out.
_USER_CODE_COMMANDS = frozenset({"backtest"})
#: Exit statuses of a command stopped by a signal (128 + the signal's number).
_INTERRUPTED, _TERMINATED = 130, 143


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line: what was wrong, and where help is
    (argparse prints the whole usage block first; the line the user needs is its last).
    Subcommand parsers are of this class too (`add_subparsers` uses the parent's)."""

    def error(self, message: str) -> NoReturn:
        hint = _nearest_flag(self, message)
        self.exit(2, f"{self.prog}: error: {message}{hint} (see {self.prog} --help)\n")


def _nearest_flag(parser: argparse.ArgumentParser, message: str) -> str:
    """A hint (`; did you mean --channel?`) for an unknown flag close to a real one."""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return ""
    word = message.removeprefix(prefix).split()[0].partition("=")[0]
    if not word.startswith("-"):
        return ""
    shown = [
        option
        for action in parser._actions  # argparse has no public list of a parser's flags
        if action.help is not argparse.SUPPRESS
        for option in action.option_strings
    ]
    names = {option.lstrip("-"): option for option in shown}
    near = difflib.get_close_matches(word.lstrip("-"), list(names), n=1, cutoff=0.8)
    return f"; did you mean {names[near[0]]}?" if near else ""


class _Signals:
    """Whether the interrupt being handled came as SIGTERM (exit 143) or Ctrl+C (130)."""

    terminated = False


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kalshi-tape",
        description="Record, replay and query the Kalshi WebSocket API.",
        epilog="Run `kalshi-tape COMMAND --help` for a command's flags. The vocabulary "
        "and exit statuses: docs/cli.md sections 1 and 2.",
        allow_abbrev=False,
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
        _no_abbreviations(command)  # `--market` must never be taken for `--market-groups`
        add_logging_arguments(command)
        command.set_defaults(command_parser=command, command_name=name)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """A flag is matched by its whole name only, in this parser and those below it."""
    parser.allow_abbrev = False
    for action in parser._actions:  # argparse lists a parser's subparsers nowhere else
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


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
        with _sigterm_as_interrupt():
            return int(handler(args) or 0)
    except ConfigError as exc:
        return _fail(args, str(exc), 2)
    except OperationalError as exc:
        return _fail(args, str(exc), exc.exit_code)
    except BrokenPipeError:
        _stdout_gone()
        return 0
    except KeyboardInterrupt:
        if _Signals.terminated:
            return _fail(args, "terminated (SIGTERM)", _TERMINATED)
        return _fail(args, "interrupted (Ctrl+C)", _INTERRUPTED)


def _stdout_gone() -> None:
    """The reader of stdout went away (`| head`): not an error. Point stdout at
    /dev/null so that the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout replaced by a test or an embedding program
        pass


def _sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM does what Ctrl+C does at this moment (`asyncio.run` cancels its task, the
    interpreter raises KeyboardInterrupt), so that work unwinds and a half-written
    output is removed instead of the process dying mid-write; `main` then exits 143."""
    _Signals.terminated = True
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM unwinds it as Ctrl+C does (see `_sigterm`).
    Commands that stop on SIGTERM by design (`record`, `serve`) install their own
    handler inside this one."""
    _Signals.terminated = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
