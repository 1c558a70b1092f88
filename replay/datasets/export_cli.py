"""`kalshi-tape export hftbacktest ROOT --market M -o FILE.npz`: a market for hftbacktest.

This module owns the `export` command (one format today, `hftbacktest`): it parses
the flags, checks the market, the range and the output, and prints a summary. The
mapping is `replay.datasets.hftbacktest` (docs/export.md section 3), the data
`replay.datasets.table` (derived on the fly when not built).
"""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from replay.cli_common import (
    ROOT_HELP,
    add_time_range,
    checked_output_path,
    checked_time_range,
    damaged_capture,
    open_output,
    require_capture_root,
    time_range,
    unknown_markets,
)
from schemas.errors import ConfigError, storage_error
from schemas.storage import (
    StorageError,
    StorageOptions,
    add_storage_arguments,
    storage_from_args,
)

if TYPE_CHECKING:  # numpy and the datasets load when the command runs, not at start-up
    from pathlib import Path

    import pyarrow as pa

    from replay.datasets.hftbacktest import HftExport
    from replay.reading.capture import Capture

__all__ = ["export_hftbacktest", "register"]

_DESCRIPTION = """\
Write one market of a capture in another tool's format. FORMAT hftbacktest writes
hftbacktest's event array (.npz): depth clear, snapshot and update events and trade
events, with exchange and receive timestamps. YES bids are bids, NO bids asks at
1 - price; trades are buys when the taker bought YES, sells when the taker bought NO.
The tick and lot size a backtest must use are chosen from the data (0.01, 0.001 or
0.0001 dollars; 1 or 0.01 contracts) unless given, checked against it, and printed.
Details: docs/export.md section 1.

examples:
  kalshi-tape export hftbacktest examples/sample --market KXNBAGAME-26MAR19-B1825 -o b1825.npz
  kalshi-tape export hftbacktest data --market KXHIGHNY-26NOV21-B45.5 \\
      --start 2026-11-21T14:00:00Z --end 2026-11-21T20:00:00Z -o high.npz
"""

_BOOK_CHANNEL = "orderbook_delta"
_TRADE_CHANNEL = "trade"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    h = sub.add_parser(
        "export",
        help="write one market of a capture in another tool's format (hftbacktest)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    h.add_argument("format", metavar="FORMAT", choices=("hftbacktest",),
                   help="the format to write: hftbacktest")  # fmt: skip
    h.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    h.add_argument("--market", required=True, metavar="TICKER", help="the market to export")
    add_time_range(h)
    h.add_argument("-o", "--output", required=True, metavar="FILE.npz",
                   help="the file to write (numpy .npz, the events under `data`)")  # fmt: skip
    h.add_argument("--force", action="store_true", help="replace an existing output file")
    h.add_argument("--tick-size", metavar="DOLLARS",
                   help="price tick (default: the coarsest of 0.01, 0.001, 0.0001 that "
                        "divides every price)")  # fmt: skip
    h.add_argument("--lot-size", metavar="CONTRACTS",
                   help="size lot (default: 1, or 0.01 when a size is fractional)")  # fmt: skip
    add_storage_arguments(h)
    h.set_defaults(handler=_export_hftbacktest)


def _decimal(text: str | None, flag: str) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0:
        raise ConfigError(flag, f"{text!r} is not a positive number", "like 0.01")
    return value


def export_hftbacktest(
    root: str | Path | Capture,
    market: str,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    tick_size: Decimal | str | None = None,
    lot_size: Decimal | str | None = None,
    storage: StorageOptions | None = None,
) -> HftExport:
    """One market of a capture as hftbacktest events (the command's work, without files).

    `root` is a capture root (a directory or an object-store URI) or its `Capture`.

    When the range starts inside a book (`start_ns`), the book changes before it are
    read too, and the book they add up to opens the export (see `to_events`).

    Raises:
        ValueError: no event in the range, or a tick or lot size that does not fit.
    """
    import numpy as np

    from replay.datasets import table
    from replay.datasets.hftbacktest import to_events

    # The book changes from the capture's start: those before `start_ns` give the
    # opening book. They are split by position (the first row received at or after
    # the start), so capture order is kept even across a wall-clock step.
    only = [market]
    book = table(root, "book_changes", end=end_ns, markets=only, storage=storage)
    prior: pa.Table | None = None
    if start_ns is not None:
        recv = book["recv_ns"].to_numpy()
        at = np.flatnonzero(recv >= start_ns)
        cut = int(at[0]) if len(at) else book.num_rows
        prior, book = book.slice(0, cut), book.slice(cut)
    trades = table(root, "trades", start=start_ns, end=end_ns, markets=only, storage=storage)
    return to_events(
        book,
        trades,
        market=market,
        tick_size=tick_size,
        lot_size=lot_size,
        prior=prior,
        start_ns=start_ns,
    )


def _export_hftbacktest(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from replay.reading.capture import Capture

    base = require_capture_root(args.root)
    output = checked_output_path(args.output, base, force=args.force)
    assert output is not None
    tick = _decimal(args.tick_size, "--tick-size")
    lot = _decimal(args.lot_size, "--lot-size")
    storage = storage_from_args(args)
    try:
        capture = Capture(args.root, storage=storage)
        held = capture.markets(_BOOK_CHANNEL) | capture.markets(_TRADE_CHANNEL)
        problem = unknown_markets([args.market], held, f"{_BOOK_CHANNEL} or {_TRADE_CHANNEL}")
        if problem is not None:
            raise ConfigError("--market", problem)
        start, end = time_range(args)
        start_ns, end_ns = checked_time_range(start, end, capture.time_range())
        export = export_hftbacktest(
            capture,
            args.market,
            start_ns=start_ns,
            end_ns=end_ns,
            tick_size=tick,
            lot_size=lot,
            storage=storage,
        )
    except (ConfigError, StorageError):  # said already; the object store is not a damaged file
        raise
    except PermissionError as exc:
        raise storage_error(exc, f"cannot read the capture {args.root}") from None
    except (pa.ArrowException, OSError) as exc:  # a truncated or foreign capture file
        raise damaged_capture(args.root, exc) from None
    except ValueError as exc:
        text = str(exc)
        if text.startswith("no "):
            raise ConfigError("--market", text, "widen --start / --end") from None
        raise ConfigError(
            "--tick-size" if text.startswith("tick") else "--lot-size", text
        ) from None
    with open_output(output) as handle:
        export.write(handle)
    print(_summary(export, output))
    return 0


def _summary(export: HftExport, output: object) -> str:
    def how(inferred: bool) -> str:
        return "from the data" if inferred else "as given"

    lines = [
        f"export: {len(export.events):,} events of {export.market} to {output}: "
        f"{export.depth_events:,} depth, {export.clear_events:,} clear, "
        f"{export.trade_events:,} trade",
        f"tick_size {export.tick_size} ({how(export.tick_inferred)}), "
        f"lot_size {export.lot_size} ({how(export.lot_inferred)}): give hftbacktest "
        f"BacktestAsset().tick_size({export.tick_size}).lot_size({export.lot_size})",
    ]
    if export.skipped:
        lines.append(
            f"{export.skipped:,} book rows left out (between a break and its resync, "
            "or before the first snapshot)"
        )
    return "\n".join(lines)
