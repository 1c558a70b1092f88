"""The `report` subcommand: one self-contained HTML page about a capture.

    kalshi-tape report ROOT [-o report.html] [--force] [--start TIME] [--end TIME]
                       [--market TICKER ...] [--threads N]

It follows the reading commands' rules (`replay.cli_common`): ROOT must be a capture
root; the output is never inside it, never replaces a file without `--force`, and
appears only when complete; `--start` / `--end` must select part of the capture;
markets asked for must have book or trade data in the range. Those errors print one
line and exit 2; a damaged capture file exits 5 naming it. On success it prints where
the page is and how to open it. The work is `replay.report.gather` and
`replay.report.page`, imported when the command runs (not when `record` starts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from replay.cli_common import (
    ROOT_HELP,
    add_time_range,
    checked_output_path,
    checked_time_range,
    damaged_capture,
    interrupt_on_signal,
    open_output,
    require_capture_root,
    time_range,
)
from schemas.errors import ConfigError
from schemas.storage import add_storage_arguments, storage_from_args

__all__ = ["register"]

DEFAULT_OUTPUT = "report.html"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `report` to the `kalshi-tape` subcommands."""
    p = sub.add_parser(
        "report",
        help="write an HTML report of a capture (opens offline)",
        description="Write one HTML file that shows a capture: its runs and verify verdict, "
        "a timeline of every connection (close codes, reconnect delays, overlaps, planned "
        "rotations), frames per second per channel with disconnects, gaps and resyncs "
        "marked, receive latency against the exchange's timestamps, the seq gaps and how "
        "each recovered, best bid / ask / mid and trades per market (from the quotes and "
        "trades datasets), and storage per channel and date. The file needs no network "
        "and no server: open it in any browser.",
        epilog="examples:\n  kalshi-tape report data -o report.html\n"
        "  kalshi-tape report data --start 2026-11-21T09:00Z --end 2026-11-21T10:00Z "
        "--market KXHIGHNY-26NOV21-B45.5 -o hour.html --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    p.add_argument("-o", "--output", metavar="PATH", default=None,
                   help=f"the HTML file to write (default: {DEFAULT_OUTPUT} here)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    add_time_range(p)
    p.add_argument("--market", action="append", metavar="TICKER",
                   help="a market for the per-market chart (repeat for more; default: the "
                        "25 most active)")  # fmt: skip
    p.add_argument("--threads", type=int, metavar="N", help="DuckDB threads (default: cores)")
    add_storage_arguments(p)
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    import duckdb

    from replay.reading.capture import Capture
    from replay.report.gather import gather_report
    from replay.report.page import render_report
    from replay.sql.connection import interrupt_open_connections

    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads", f"must be at least 1, got {args.threads}")
    local_root = require_capture_root(args.root)
    storage = storage_from_args(args)
    output = checked_output_path(args.output or DEFAULT_OUTPUT, local_root, force=args.force)
    assert output is not None
    capture = Capture(args.root, storage=storage)
    start, end = checked_time_range(*time_range(args), capture.time_range())
    # Ctrl+C interrupts the queries at once (their connections live inside the gather).
    with interrupt_on_signal(interrupt_open_connections) as watch:
        try:
            data = gather_report(capture.location or capture.root, start_ns=start,
                                 end_ns=end, markets=args.market, threads=args.threads,
                                 storage=storage)  # fmt: skip
        except (duckdb.Error, RuntimeError) as exc:
            watch.reraise_if_interrupted(wait_s=0.2)
            if not isinstance(exc, duckdb.Error):
                raise
            raise damaged_capture(args.root, exc) from None
    text = render_report(data).encode()
    with open_output(output) as handle:
        handle.write(text)
    print(
        f"wrote {output} ({len(text) / 1e6:.1f} MB): {len(data.connections)} connections, "
        f"{data.gaps_total} seq gaps, {len(data.markets.get('chosen', []))} markets, "
        f"verify {data.verify['verdict']}. Open it in a browser (no network needed): "
        f"{Path(output).as_uri()}",
        file=sys.stderr,
    )
    return 0
