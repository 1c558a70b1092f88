"""The `query`, `verify` and `inspect` subcommands.

    kalshi-tape query ROOT "SELECT ..." [--format table|csv|json|parquet] [--output PATH]
                      [--timeout 5m] [--memory-limit 25%]
    kalshi-tape verify ROOT [--json] [--strict]
    kalshi-tape inspect ROOT [--json]

Argument and SQL errors raise `ConfigError`, which the entry prints (naming the
field and the fix, and DuckDB's own hint such as `Did you mean "trades"?`) with
exit status 2 and no traceback; a query stopped at its time or memory limit exits
7. `verify` exits 1 when the capture is corrupt (and, with --strict, when it has
warnings), 2 when the directory is not a capture root, else 0.

This module parses arguments and prints; the work is in `replay.sql.connection`,
`replay.sql.output`, `replay.sql.verify` and `replay.sql.summary`, imported when a command
runs: every `kalshi-tape` process registers these subcommands, and `record` (which
runs for weeks) should not carry DuckDB (about 24 MiB) it never uses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from replay.cli_common import checked_output_path, require_capture_root
from replay.reading.layout import locate_root
from replay.sql.output import FORMATS, write_result
from schemas.errors import ConfigError
from schemas.storage import add_storage_arguments, storage_from_args
from schemas.units import parse_duration_s, parse_size_bytes

if TYPE_CHECKING:
    import duckdb

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `query`, `verify` and `inspect` to the `kalshi-tape` subcommands."""
    query = sub.add_parser(
        "query",
        help="run read-only SQL over a capture",
        description="Run one read-only SQL query over a capture. Views: frames, trades, "
        "tickers, book_deltas, book_snapshots, book_snapshot_levels, lifecycle, fills, "
        "user_orders, positions, order_groups, communications, index_values, "
        "multivariate_lookups, events, control, connections, gaps.",
    )
    query.add_argument("root", metavar="ROOT", help="capture root directory")
    query.add_argument("sql", metavar="SQL", help="one SELECT statement")
    query.add_argument("--format", choices=FORMATS, default="table", help="output format")
    query.add_argument("--output", "-o", metavar="PATH", help="write to this file, not stdout")
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

    verify = sub.add_parser("verify", help="check a capture's integrity")
    verify.add_argument("root", metavar="ROOT", help="capture root directory")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    add_storage_arguments(verify)
    verify.set_defaults(handler=_verify)

    inspect = sub.add_parser("inspect", help="summarise a capture")
    inspect.add_argument("root", metavar="ROOT", help="capture root directory")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_storage_arguments(inspect)
    inspect.set_defaults(handler=_inspect)


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


def _output_path(args: argparse.Namespace, root: Path | None) -> Path | None:
    return checked_output_path(args.output, root, force=args.force)


def _query(args: argparse.Namespace) -> int:
    import duckdb

    from replay.sql.connection import DEFAULT_TIMEOUT_S, connect, run_query

    location = locate_root(args.root, storage_from_args(args))
    root = location.uri
    if args.max_rows < 1:
        raise ConfigError("--max-rows", f"must be at least 1, got {args.max_rows}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads", f"must be at least 1, got {args.threads}")
    output = _output_path(args, Path(location.path) if location.is_local else None)
    if args.format == "table" and output is not None:
        raise ConfigError("--output", "table output goes to the terminal", "add --format csv")
    con = connect(location, threads=args.threads, memory_limit_bytes=args.memory_limit)
    try:
        timeout_s = DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout or None
        reader = run_query(con, args.sql, timeout_s=timeout_s)
        write_result(reader, args.format, output, max_rows=args.max_rows)
    except duckdb.PermissionException as exc:
        raise ConfigError(
            "SQL", _first_line(exc), f"queries may read only files under {root}"
        ) from None
    except duckdb.Error as exc:
        raise ConfigError("SQL", _first_line(exc)) from None
    except BrokenPipeError:
        # The reader went away (`| head`): not an error. Point stdout at /dev/null so
        # the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        con.close()
    return 0


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


def _verify(args: argparse.Namespace) -> int:
    import duckdb

    from replay.sql.verify import render_verify_report, verify_capture

    require_capture_root(args.root)
    try:
        report = verify_capture(args.root, storage=storage_from_args(args))
    except duckdb.Error as exc:
        raise _unreadable(exc, args.root) from None
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(render_verify_report(report))
    if report.corrupt or (args.strict and report.warnings()):
        return 1
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import duckdb

    from replay.sql.summary import render_summary, summarize_capture

    try:
        summary = summarize_capture(args.root, storage=storage_from_args(args))
    except duckdb.Error as exc:
        raise _unreadable(exc, args.root) from None
    if args.json:
        print(json.dumps(summary.to_json(), indent=2, default=str))
    else:
        print(render_summary(summary))
    sys.stdout.flush()
    return 0
