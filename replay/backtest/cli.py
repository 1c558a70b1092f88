"""`kalshi-tape backtest STRATEGY ROOT`: run a strategy over a capture on Dask, shard by shard.

    kalshi-tape backtest examples/mid_bars.py:mid_bars examples/sample \\
        --reducer examples/mid_bars.py:combine --shard 15s --workers 2
    kalshi-tape backtest mypkg.strats:Momentum s3://bucket/capture \\
        --start 2026-11-01 --end 2026-12-01 --scheduler tcp://10.0.0.5:8786

The combined result is printed as JSON on stdout (or written with --output); a
summary of the shards and a progress bar go to stderr. A shard whose strategy raised
is reported with its time range and traceback, the others still run, and the
command exits 1. Bad arguments print one line and exit 2.

This module parses arguments and prints; the work is in `replay.backtest.runner`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from replay.backtest.runner import BacktestResult, run
from replay.backtest.shards import load_callable, parse_width
from schemas.errors import ConfigError
from schemas.storage import add_storage_arguments, storage_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "backtest",
        help="run a strategy over a capture, sharded by time on Dask workers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("strategy", metavar="STRATEGY",
                   help="module:name or path/to/file.py:name (a function or a class)")  # fmt: skip
    p.add_argument("root", metavar="ROOT", help="capture root: a directory or s3://bucket/prefix")
    p.add_argument("--start", metavar="TIME", help="start (ISO-8601, UTC if naive)")
    p.add_argument("--end", metavar="TIME", help="end, exclusive (default: the capture's end)")
    p.add_argument("--shard", default="1d", type=_width, metavar="WIDTH",
                   help="time shard width: 1d (UTC days, default), 6h, 30m...")  # fmt: skip
    p.add_argument("--market-groups", type=_count, metavar="N",
                   help="also split the markets into N groups (a shard per group "
                        "and time slice)")  # fmt: skip
    p.add_argument("--channel", action="append", metavar="CHANNEL",
                   help="read only this channel (repeatable; default: what the strategy "
                        "subscribes to)")  # fmt: skip
    p.add_argument("--reducer", metavar="module:name",
                   help="combines the shard results, given as a list in time order "
                        "(default: the list itself)")  # fmt: skip
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_workers, metavar="N",
                       help="worker processes of a local Dask cluster (default: one per "
                            "core); 0 runs the shards in this process")  # fmt: skip
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on an existing Dask cluster")  # fmt: skip
    p.add_argument("-o", "--output", metavar="PATH", help="write the result JSON here")
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
    strategy = load_callable(args.strategy, "STRATEGY")
    reducer = load_callable(args.reducer, "--reducer") if args.reducer else None
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise ConfigError("--output", f"directory {output.parent} does not exist")
    show = sys.stderr.isatty() if args.progress is None else args.progress
    result = run(
        strategy, args.root, args.start, args.end, args.shard,
        reducer=reducer, channels=args.channel, market_groups=args.market_groups,
        workers=args.workers, scheduler=args.scheduler, storage=storage_from_args(args),
        progress=show,
    )  # fmt: skip
    text = json.dumps(result.value, default=str, indent=2)
    if output is not None:
        output.write_text(text + "\n")
    else:
        print(text)
    _summary(result)
    return 0 if result.ok else 1


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
