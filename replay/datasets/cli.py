"""`kalshi-tape derive ROOT`: write research datasets as Hive-partitioned Parquet.

This module parses the flags and prints a summary; the work is in
`replay.datasets.api.derive`, imported when the command runs (`--help` and a bad flag
load no pyarrow, numpy or numba). `register(sub)` adds the `derive` command; other
dataset commands register beside it from modules of their own (`export_cli`), each
listed in `replay.cli`.
"""

from __future__ import annotations

import argparse
import sys

from replay.cli_common import (
    ROOT_HELP,
    add_time_range,
    checked_time_range,
    require_capture_root,
    time_range,
)
from schemas.errors import ConfigError
from schemas.storage import add_storage_arguments, storage_from_args

__all__ = ["register"]

_DESCRIPTION = """\
Derive research datasets from a capture, by the engine's own book rules, and write
them as Parquet under DIR/<dataset>/date=YYYY-MM-DD/ (default DIR: ROOT/_datasets).
Prices and sizes are exact decimals. A second run derives only the days whose
capture files changed, or that an older kalshi-tape built (DIR/_manifest.json records
what each day was built from and by which rules); --force derives them all again.

datasets: book_changes, quotes, trades, depth:N@INTERVAL (e.g. depth:10@1s),
bars:INTERVAL (1s, 1m, 1h, 1d...)

examples:
  kalshi-tape derive examples/sample
  kalshi-tape derive data --datasets quotes,bars:1m,depth:10@1s --start 2026-11-21
  kalshi-tape derive s3://bucket/capture --to s3://bucket/datasets --workers 4
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("derive", help="write research datasets (quotes, trades, bars...)",
                       description=_DESCRIPTION, allow_abbrev=False,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    p.add_argument(
        "--datasets",
        default="quotes,trades,bars:1m,book_changes",
        metavar="LIST",
        help="comma-separated datasets (default: %(default)s)",
    )
    add_time_range(p)
    p.add_argument("--market", action="append", metavar="TICKER",
                   help="only this market (repeatable)")  # fmt: skip
    p.add_argument("--to", metavar="DIR", help="where to write (default: ROOT/_datasets)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="spread the days over a local Dask cluster of N processes",
    )
    where.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="spread the days over an existing Dask cluster",
    )
    p.add_argument("--force", action="store_true",
                   help="derive every day of the range again, fresh or not")  # fmt: skip
    add_storage_arguments(p)
    p.set_defaults(handler=_derive)


def _derive(args: argparse.Namespace) -> int:
    from replay.datasets.api import derive
    from replay.datasets.spec import parse_specs
    from replay.reading.capture import Capture

    require_capture_root(args.root)
    parse_specs(args.datasets)  # a bad name is refused before anything is read
    if args.workers is not None and args.workers < 0:
        raise ConfigError("--workers", f"{args.workers} is not a worker count", "give 1 or more")
    storage = storage_from_args(args)
    capture = Capture(args.root, storage=storage)
    start, end = checked_time_range(*time_range(args), capture.time_range())
    report = derive(capture, to=args.to, datasets=args.datasets, start=start, end=end,
                    markets=args.market, workers=args.workers or None,
                    scheduler=args.scheduler, storage=storage, force=args.force)  # fmt: skip
    if not report.built and not report.fresh:
        print(f"no captured data in {args.root} yet: nothing to derive", file=sys.stderr)
        return 0
    for name in sorted(set(report.built) | set(report.fresh)):
        built, fresh = report.built.get(name, []), report.fresh.get(name, [])
        print(
            f"{name:16s} {len(built)} day(s) built, {report.rows.get(name, 0):,} rows; "
            f"{len(fresh)} day(s) already fresh",
            file=sys.stderr,
        )
    print(f"datasets in {report.to} ({report.seconds:.1f} s)", file=sys.stderr)
    return 0
