"""The `query`, `verify` and `inspect` subcommands.

    kalshi-tape query ROOT "SELECT ..." [--format table|csv|jsonl|parquet] [-o FILE]
                      [--timeout 5m] [--memory-limit 25%]
    kalshi-tape verify ROOT [--format text|json] [--strict]
    kalshi-tape inspect ROOT [--format text|json]

Argument and SQL errors raise `ConfigError`, which the entry prints (naming the
field and the fix, and DuckDB's own hint such as `Did you mean "trades"?`) with
exit status 2 and no traceback; a query stopped at its time or memory limit exits
7. `verify` exits 1 when the capture is corrupt (and, with --strict, when it has
warnings), 2 when the directory is not a capture root, else 0. Ctrl+C or SIGTERM
interrupt a running query through DuckDB's own `interrupt()` at once (exit 130/143).

This module parses arguments and prints; the work is in `replay.sql.connection`,
`replay.sql.output`, `replay.sql.verify` and `replay.sql.summary`, imported when a command
runs: every `kalshi-tape` process registers these subcommands, and `record` (which
runs for weeks) should not carry DuckDB (about 24 MiB) it never uses, nor `--help`
pyarrow (the format names are `replay.sql.formats`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from replay.cli_common import (
    ROOT_HELP,
    checked_output_path,
    interrupt_on_signal,
    open_output,
    require_capture_root,
)
from replay.sql.formats import FORMAT_ALIASES, FORMATS
from schemas.errors import ConfigError, storage_error
from schemas.storage import add_storage_arguments, storage_from_args
from schemas.units import parse_duration_s, parse_size_bytes

if TYPE_CHECKING:
    import duckdb

__all__ = ["register"]

T = TypeVar("T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `query`, `verify` and `inspect` to the `kalshi-tape` subcommands."""
    query = sub.add_parser(
        "query",
        help="run read-only SQL over a capture",
        description="Run one read-only SQL query over a capture. Views: frames, trades, "
        "tickers, book_deltas, book_snapshots, book_snapshot_levels, lifecycle, fills, "
        "user_orders, positions, order_groups, communications, index_values, "
        "multivariate_lookups, events, control, connections, gaps.",
        epilog='example: kalshi-tape query examples/sample "SELECT market_ticker, count(*) '
        'FROM trades GROUP BY 1" --format csv -o trades.csv',
    )
    query.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    query.add_argument("sql", metavar="SQL", help="one SELECT statement")
    query.add_argument("--format", type=_format, default="table", metavar="FORMAT",
                       help="table (aligned text, the default), csv, jsonl (one JSON object "
                            "per row) or parquet (needs -o)")  # fmt: skip
    query.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    query.add_argument("--force", action="store_true", help="replace an existing --output file")
    query.add_argument(
        "--max-rows", type=int, default=100, metavar="N", help="rows shown by --format table"
    )
    query.add_argument("--threads", type=int, metavar="N", help="DuckDB threads (default: cores)")
    query.add_argument("--timeout", type=_duration, default=None, metavar="TIME",
                       help="stop the query after this long (e.g. 30s, 10m; 0: no limit; "
                            "default 5m)")  # fmt: skip
    query.add_argument("--memory-limit", type=_size, default=None, metavar="SIZE",
                       help="most memory the query may use (e.g. 2GB, 50%%; default 25%% of "
                            "this machine's memory)")  # fmt: skip
    add_storage_arguments(query)
    query.set_defaults(handler=_query)

    verify = sub.add_parser(
        "verify",
        help="check a capture's integrity",
        description="Check every file of a capture: unreadable files (and what to do with "
        "them), idx holes and duplicates, runs that did not stop cleanly. Exits 1 when the "
        "capture is corrupt (with --strict, also on warnings), 0 when it is sound.",
    )
    verify.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    _add_report_format(verify, "the report")
    verify.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    add_storage_arguments(verify)
    verify.set_defaults(handler=_verify)

    inspect = sub.add_parser(
        "inspect",
        help="summarise a capture",
        description="Summarise a capture: its runs, time range, frames per channel, "
        "markets, bytes on disk and compression. Files that cannot be read are left out "
        "and counted (`kalshi-tape verify` says why).",
    )
    inspect.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    _add_report_format(inspect, "the summary")
    add_storage_arguments(inspect)
    inspect.set_defaults(handler=_inspect)


def _add_report_format(parser: argparse.ArgumentParser, what: str) -> None:
    """`--format text|json` (one JSON document); `--json`, its older spelling, unlisted."""
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help=f"print {what} as text (default) or as one JSON document")  # fmt: skip
    parser.add_argument("--json", dest="format", action="store_const", const="json",
                        help=argparse.SUPPRESS)  # fmt: skip


def _format(text: str) -> str:
    name = FORMAT_ALIASES.get(text, text)
    if name not in FORMATS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(FORMATS)})"
        )
    return name


def _duration(text: str) -> float:
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    try:
        return parse_size_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _query(args: argparse.Namespace) -> int:
    import duckdb

    from replay.reading.layout import locate_root
    from replay.sql.connection import DEFAULT_TIMEOUT_S, connect, run_query

    require_capture_root(args.root)
    location = locate_root(args.root, storage_from_args(args))
    root = location.uri
    if args.max_rows < 1:
        raise ConfigError("--max-rows", f"must be at least 1, got {args.max_rows}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads", f"must be at least 1, got {args.threads}",
                          "or leave it out for one per core")  # fmt: skip
    if args.format == "table" and args.output is not None:
        raise ConfigError("--output", "table output goes to the terminal", "add --format csv")
    if args.format == "parquet" and args.output is None:
        raise ConfigError("--output", "parquet output needs a file", "add -o result.parquet")
    local = Path(location.path) if location.is_local else None
    output = checked_output_path(args.output, local, force=args.force)
    con = connect(location, threads=args.threads, memory_limit_bytes=args.memory_limit)
    timeout_s = DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout or None
    sink: Any = open_output(output) if output is not None else nullcontext(None)
    try:
        with interrupt_on_signal(con.interrupt) as watch, sink as handle:
            try:
                reader = run_query(con, args.sql, timeout_s=timeout_s)
                _write(reader, args, handle)
            except (duckdb.Error, RuntimeError):  # "Query interrupted": Ctrl+C or SIGTERM?
                watch.reraise_if_interrupted()
                raise
    except duckdb.PermissionException as exc:
        raise ConfigError(
            "SQL", _first_line(exc), f"queries may read only files under {root}"
        ) from None
    except duckdb.Error as exc:
        raise ConfigError("SQL", _first_line(exc), _SQL_FIX) from None
    finally:
        con.close()
    return 0


def _write(reader: Any, args: argparse.Namespace, handle: IO[bytes] | None) -> None:
    from replay.sql.output import write_result

    try:
        write_result(reader, args.format, None, max_rows=args.max_rows, sink=handle)
    except BrokenPipeError:
        raise
    except OSError as exc:  # the result's file or stdout: the disk's problem
        raise storage_error(exc, f"--output: cannot write {args.output or 'stdout'}") from None


_SQL_FIX = "fix the statement; `kalshi-tape query --help` lists the views"


def _first_line(exc: Exception) -> str:
    """DuckDB's message on one line, its hints kept (`Did you mean "trades"?`), without
    the echo of the statement and its caret."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith("LINE ") and set(line) != {"^"}]
    return " ".join(kept) if kept else type(exc).__name__


def _unreadable(exc: duckdb.Error, root: str) -> ConfigError:
    return ConfigError(
        "ROOT",
        f"cannot read the capture: {_first_line(exc)}",
        f"run `kalshi-tape verify {root}` to find damaged files",
    )


def _over_capture(args: argparse.Namespace, build: Callable[..., T]) -> T:
    """`build(root, storage=...)` over the capture ROOT names, as verify and inspect run:
    the root checked first; Ctrl+C interrupts every connection the build opened (they
    are its own), and the watch tells that stop from an unreadable file."""
    import duckdb

    from replay.sql.connection import interrupt_open_connections

    require_capture_root(args.root)
    with interrupt_on_signal(interrupt_open_connections) as watch:
        try:
            return build(args.root, storage=storage_from_args(args))
        except (duckdb.Error, RuntimeError) as exc:
            watch.reraise_if_interrupted(wait_s=0.2)
            if not isinstance(exc, duckdb.Error):
                raise
            raise _unreadable(exc, args.root) from None


def _verify(args: argparse.Namespace) -> int:
    from replay.sql.verify import render_verify_report, verify_capture

    report = _over_capture(args, verify_capture)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(render_verify_report(report))
    if report.corrupt or (args.strict and report.warnings()):
        return 1
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from replay.sql.summary import render_summary, summarize_capture

    summary = _over_capture(args, summarize_capture)
    if args.format == "json":
        print(json.dumps(summary.to_json(), indent=2, default=str))
    else:
        print(render_summary(summary))
    sys.stdout.flush()
    return 0
