"""`kalshi-tape backtest STRATEGY ROOT`: run a strategy over a capture on Dask, shard by shard.

This module parses the flags and prints; the work is in `replay.backtest.runner`,
imported when the command runs (`--slice` is checked by `replay.backtest.width`). The
flags are checked before any worker starts (ROOT, the time range, the channels, the
output file), each refused in one line naming the flag (exit 2); the result file is
written whole or not at all (`replay.cli_common.open_output`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from replay.backtest.width import parse_width
from replay.cli_common import (
    ROOT_HELP,
    add_time_range,
    check_channels,
    checked_output_path,
    checked_time_range,
    open_output,
    require_capture_root,
    time_range,
)
from schemas.errors import ConfigError, storage_error
from schemas.storage import StorageError, add_storage_arguments, storage_from_args

if TYPE_CHECKING:  # the runner and the reader (pyarrow) load when the command runs
    from replay.backtest.runner import BacktestResult

__all__ = ["register"]

_DESCRIPTION = """\
Run a strategy over a capture, cut into shards by time (and optionally by market
group), on Dask worker processes. Each shard replays its slice exactly as a full
replay would have delivered it (books seeded from the latest checkpoint before it).

The combined result is printed as JSON on stdout (or written with -o); a summary of
the shards goes to stderr. A shard whose strategy raised is reported with its time
range and traceback, the others still run, and the command exits 1.

examples:
  kalshi-tape backtest examples/mid_bars.py:mid_bars examples/sample \\
      --reducer examples/mid_bars.py:combine --slice 15s --workers 2
  kalshi-tape backtest mypkg.strats:Momentum s3://bucket/capture \\
      --start 2026-11-01 --end 2026-12-01 --scheduler tcp://10.0.0.5:8786
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "backtest",
        help="run a strategy over a capture, sharded by time on Dask workers",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("strategy", metavar="STRATEGY",
                   help="module:name or path/to/file.py:name (a function or a class)")  # fmt: skip
    p.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    add_time_range(p)
    p.add_argument("--slice", dest="width", default="1d", type=_width, metavar="WIDTH",
                   help="time slice of a shard: 1d (UTC days, default), 6h, 30m...")  # fmt: skip
    # `--shard WIDTH` was this flag's name; `--shard` is K/N of the markets in `record`.
    p.add_argument("--shard", dest="width", type=_width, help=argparse.SUPPRESS)
    p.add_argument("--market-groups", type=_count, metavar="N",
                   help="also split the markets into N groups (a shard per group "
                        "and time slice)")  # fmt: skip
    p.add_argument("--channel", action="append", metavar="CHANNEL",
                   help="read only this channel (repeatable; default: what the strategy "
                        "subscribes to)")  # fmt: skip
    p.add_argument("--snapshots", action="store_true",
                   help="begin each shard's raw book frames with a snapshot of each book "
                        "at its start (book consumers always get the book)")  # fmt: skip
    p.add_argument("--reducer", metavar="module:name",
                   help="combines the shard results, given as a list in time order "
                        "(default: the list itself)")  # fmt: skip
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_workers, metavar="N",
                       help="worker processes of a local Dask cluster (default: one per "
                            "core); 0 runs the shards in this process")  # fmt: skip
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on an existing Dask cluster")  # fmt: skip
    p.add_argument("-o", "--output", metavar="FILE", help="write the result JSON to FILE")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar over shards on stderr (default: on a terminal)")  # fmt: skip
    add_storage_arguments(p)
    p.set_defaults(handler=_backtest)


def _width(text: str) -> str:
    try:
        parse_width(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None
    return text


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _workers(text: str) -> int:
    return _count(text) if text.strip() != "0" else 0


def _backtest(args: argparse.Namespace) -> int:
    from replay.backtest.runner import run
    from replay.reading.capture import Capture

    local = require_capture_root(args.root)
    output = checked_output_path(args.output, local, force=args.force)
    strategy = _load(args.strategy, "STRATEGY")
    reducer = _load(args.reducer, "--reducer") if args.reducer else None
    try:
        capture = Capture(args.root, storage=storage_from_args(args))
    except StorageError:
        raise
    except PermissionError as exc:
        raise storage_error(exc, f"cannot read the capture {args.root}") from None
    start, end = checked_time_range(*time_range(args), capture.time_range())
    if args.channel:
        check_channels(args.channel, capture.data_channels)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    result = run(
        strategy, capture, start, end, args.width,
        reducer=reducer, channels=args.channel, market_groups=args.market_groups,
        workers=args.workers, scheduler=args.scheduler, progress=show,
        snapshots=args.snapshots,
    )  # fmt: skip
    text = json.dumps(result.value, default=str, indent=2) + "\n"
    if output is not None:
        with open_output(output) as handle:
            handle.write(text.encode())
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    _summary(result)
    return 0 if result.ok else 1


def _load(spec: str, flag: str) -> Any:
    """`load_callable`, its error with the fix when it has none."""
    from replay.backtest.shards import load_callable

    try:
        return load_callable(spec, flag)
    except ConfigError as exc:
        fix = exc.fix or "give module:name or path/to/file.py:name"
        raise ConfigError(exc.field, exc.problem, fix) from None


def _summary(result: BacktestResult) -> None:
    shards = result.shards
    records = sum(s.records for s in shards)
    busy = sum(s.seconds for s in shards)
    workers = len({s.worker for s in shards if s.worker})
    out: list[str] = [
        f"backtest: {len(shards)} shards ({len(result.failed)} failed), {records:,} records "
        f"replayed, {busy:.1f} s of shard time on {workers} worker process(es)"
    ]
    for failed in result.failed:
        out.append(f"shard {failed.shard.label} failed:")
        out += ["  " + line for line in (failed.error or "").rstrip().splitlines()]
    print("\n".join(out), file=sys.stderr)
