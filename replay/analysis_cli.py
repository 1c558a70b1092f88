"""The `query`, `verify` and `inspect` subcommands.

    kalshi-tape query ROOT "SELECT ..." [--format table|csv|json|parquet] [--output PATH]
    kalshi-tape verify ROOT [--json] [--strict]
    kalshi-tape inspect ROOT [--json]

Argument and SQL errors raise `ConfigError`, which the entry prints (naming the
field and the fix) with exit status 2 and no traceback. `verify` exits 1 when the
capture is corrupt (and, with --strict, when it has warnings), else 0.

This module parses arguments and prints; the work is in `replay.sql`,
`replay.sql_output`, `replay.verify` and `replay.summary`, imported when a command
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

from replay.layout import locate_root
from replay.sql_output import FORMATS, write_result
from schemas.errors import ConfigError
from schemas.storage import add_storage_arguments, storage_from_args

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


def _output_path(args: argparse.Namespace, root: Path | None) -> Path | None:
    if args.output is None:
        return None
    out = Path(args.output).expanduser().absolute()
    parent = out.parent.resolve()
    target = parent / out.name
    if root is not None and target.is_relative_to(root):
        raise ConfigError(
            "--output",
            f"{out} is inside the capture root",
            "write results elsewhere; files under the root would be read as capture data",
        )
    if not parent.is_dir():
        raise ConfigError("--output", f"directory {parent} does not exist")
    if target.exists() and not args.force:
        raise ConfigError("--output", f"{target} already exists", "add --force to replace it")
    return target


def _query(args: argparse.Namespace) -> int:
    import duckdb

    from replay.sql import connect, run_query

    location = locate_root(args.root, storage_from_args(args))
    root = location.uri
    if args.max_rows < 1:
        raise ConfigError("--max-rows", f"must be at least 1, got {args.max_rows}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads", f"must be at least 1, got {args.threads}")
    output = _output_path(args, Path(location.path) if location.is_local else None)
    if args.format == "table" and output is not None:
        raise ConfigError("--output", "table output goes to the terminal", "add --format csv")
    con = connect(location, threads=args.threads)
    try:
        reader = run_query(con, args.sql)
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
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _unreadable(exc: duckdb.Error, root: str) -> ConfigError:
    return ConfigError(
        "ROOT",
        f"cannot read the capture: {_first_line(exc)}",
        f"run `kalshi-tape verify {root}` to find damaged files",
    )


def _verify(args: argparse.Namespace) -> int:
    import duckdb

    from replay.verify import render_verify_report, verify_capture

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

    from replay.summary import render_summary, summarize_capture

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
