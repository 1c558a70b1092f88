"""One market's book changes and trades as hftbacktest's event array.

This module owns the mapping from the research datasets (`book_changes`, `trades`,
`replay.datasets.schema`) to the feed format of hftbacktest, a numpy structured array
of its event dtype saved as `.npz` under the name `data` (docs/export.md sections 2 to 6),
and the choice of tick and lot size. It is a pure function of Arrow tables: it reads
no capture, and it does not import hftbacktest (the dtype and flags are restated
here), so an export needs no extra; running hftbacktest over it needs
`kalshi-tape[hft]`.

The mapping (docs/protocol.md section 8.1: both ladders are bids):

* a YES bid at p is a bid (BUY side) at p; a NO bid at p is an ask (SELL side) at
  1 - p, with that bid's size: the YES ask;
* a "clear" row is DEPTH_CLEAR_EVENT with no side flag, which empties both sides;
  a "snapshot" row is DEPTH_SNAPSHOT_EVENT, a "delta" row DEPTH_EVENT, each with
  the level's size after the change (hftbacktest levels are absolute; 0 removes);
* a trade is TRADE_EVENT at the YES price, BUY_EVENT when the taker bought YES,
  SELL_EVENT when the taker bought NO (sold YES), with its count;
* local_ts is our receive time, exch_ts the exchange's time where the message
  carries one (else the receive time); see `to_events` for how both are made
  monotone and exch_ts <= local_ts, as hftbacktest requires;
* book rows between a break and the next snapshot (valid false), and rows before
  the market's first snapshot, are left out: hftbacktest's book stays empty there,
  as ours is invalid. Every trade is kept;
* a window that starts inside a book opens with that book (`prior`), as a clear and
  snapshot levels at the window's start: hftbacktest starts from an empty book.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replay.reading.atomic import atomic_file

__all__ = [
    "BUY_EVENT",
    "DEPTH_CLEAR_EVENT",
    "DEPTH_EVENT",
    "DEPTH_SNAPSHOT_EVENT",
    "EVENT_DTYPE",
    "EXCH_EVENT",
    "LOCAL_EVENT",
    "LOT_SIZES",
    "SELL_EVENT",
    "TICK_SIZES",
    "TRADE_EVENT",
    "HftExport",
    "save_npz",
    "to_events",
]

# hftbacktest's feed format (hftbacktest.types, 2.x): one aligned record per event.
EVENT_DTYPE: Final = np.dtype(
    [
        ("ev", "u8"),
        ("exch_ts", "i8"),
        ("local_ts", "i8"),
        ("px", "f8"),
        ("qty", "f8"),
        ("order_id", "u8"),
        ("ival", "i8"),
        ("fval", "f8"),
    ],
    align=True,
)
# Event kinds (the low byte of `ev`) and flags.
DEPTH_EVENT: Final = 1
TRADE_EVENT: Final = 2
DEPTH_CLEAR_EVENT: Final = 3
DEPTH_SNAPSHOT_EVENT: Final = 4
EXCH_EVENT: Final = 1 << 31  # processed by the simulated exchange at exch_ts
LOCAL_EVENT: Final = 1 << 30  # processed by the local (strategy) side at local_ts
BUY_EVENT: Final = 1 << 29  # depth: the bid side; trade: the taker bought
SELL_EVENT: Final = 1 << 28  # depth: the ask side; trade: the taker sold

_PRICE_SCALE: Final = 10_000  # price units per dollar (decimal128(12, 4))
_SIZE_SCALE: Final = 100  # size units per contract (decimal128(18, 2))
#: Tick sizes tried, coarsest first: the first that divides every price is the default.
TICK_SIZES: Final = (Decimal("0.01"), Decimal("0.001"), Decimal("0.0001"))
#: Lot sizes tried, coarsest first: whole contracts, else the wire's 0.01.
LOT_SIZES: Final = (Decimal("1"), Decimal("0.01"))


@dataclass(frozen=True)
class HftExport:
    """An export: the events and what a backtest over them must be told.

    Attributes:
        events: hftbacktest's event array (`EVENT_DTYPE`), in feed order.
        market: the market ticker.
        tick_size, lot_size: for `BacktestAsset().tick_size(...).lot_size(...)`.
        tick_inferred, lot_inferred: True when chosen from the data, False when given.
        depth_events, trade_events, clear_events: counts by kind (depth includes
            snapshot levels).
        skipped: book rows left out (valid false, or before the first snapshot).
        clamped: events whose exchange time was after their receive time (or
            before an earlier event's) and was moved (see `to_events`).
    """

    events: np.ndarray
    market: str
    tick_size: Decimal
    lot_size: Decimal
    tick_inferred: bool
    lot_inferred: bool
    depth_events: int
    trade_events: int
    clear_events: int
    skipped: int
    clamped: int

    def save(self, path: str | Path) -> Path:
        """Write the export to `path` as `.npz`, whole or not at all (see `write`)."""
        return save_npz(path, self.events, **self._extra())

    def write(self, handle: IO[bytes]) -> None:
        """Write the export as a compressed `.npz` into an open binary file: the events
        under `data` (what hftbacktest's loaders read), and beside them `tick_size`,
        `lot_size` (floats) and `market` (text), which hftbacktest ignores."""
        _savez(handle, self.events, self._extra())

    def _extra(self) -> dict[str, object]:
        return {
            "tick_size": float(self.tick_size),
            "lot_size": float(self.lot_size),
            "market": self.market,
        }


def to_events(
    book_changes: pa.Table,
    trades: pa.Table | None = None,
    *,
    market: str | None = None,
    tick_size: Decimal | str | None = None,
    lot_size: Decimal | str | None = None,
    prior: pa.Table | None = None,
    start_ns: int | None = None,
) -> HftExport:
    """hftbacktest's event array for one market's book changes and trades.

    Args:
        book_changes: rows of the `book_changes` dataset, in capture order.
        trades: rows of the `trades` dataset, in capture order (None: no trades).
        market: keep only this market's rows; required when the tables hold more.
        tick_size, lot_size: override the sizes chosen from the data (the coarsest
            of `TICK_SIZES` dividing every price, of `LOT_SIZES` dividing every
            size). A given size must divide every price (size) exactly: hftbacktest
            rounds prices to ticks and drops a level smaller than half a lot.
        prior, start_ns: for a window that starts inside a book: the book changes
            before `book_changes` (from the market's last clear before it, or from
            further back), and the window's start. The book they add up to opens the
            export, as a clear and snapshot levels at `start_ns` (hftbacktest starts
            from an empty book); if the book was invalid then (a break not yet
            resynced) or never built, the export starts at the next snapshot.

    Returns:
        The events, in one order that both of hftbacktest's processors accept:
        the two tables are merged by receive time (a trade before a book change
        received at the same time, as hftbacktest's converters do), each table
        keeping its own order. local_ts is the receive time, made non-decreasing
        (a wall-clock step back takes the previous value). exch_ts is the
        exchange time (else the receive time), capped at local_ts and made
        non-decreasing the same way, so the exchange side applies the events in
        the same order as the local side: hftbacktest levels are absolute, and
        two changes of one level applied out of order would leave the wrong size.
        Every event carries both EXCH_EVENT and LOCAL_EVENT.

    Raises:
        ValueError: more than one market and no `market`; no event at all; a
            tick or lot size that does not divide the data.
    """
    book_changes = _one_market(book_changes, market, "book_changes")
    if trades is not None:
        trades = _one_market(trades, market, "trades")
    markets = set(pc.unique(book_changes["market"]).to_pylist())
    if trades is not None:
        markets |= set(pc.unique(trades["market"]).to_pylist())
    markets.discard(None)
    if len(markets) > 1:
        raise ValueError(f"the tables hold {len(markets)} markets; say which one to export")
    name = market if market is not None else (next(iter(markets)) if markets else "")

    if prior is not None and start_ns is not None:
        prior = _one_market(prior, market, "prior")
        opening = _opening_book(prior, start_ns, book_changes.schema)
        book_changes = pa.concat_tables([opening, book_changes])
    book, skipped = _book_events(book_changes)
    trade = _trade_events(trades) if trades is not None else _empty_part()
    if len(book.ev) + len(trade.ev) == 0:
        raise ValueError(f"no book change or trade of {name or 'any market'} to export")

    price_units = np.concatenate([book.price_units, trade.price_units])
    size_units = np.concatenate([book.size_units, trade.size_units])
    tick, tick_inferred = _choose(tick_size, price_units, TICK_SIZES, _PRICE_SCALE, "tick")
    lot, lot_inferred = _choose(lot_size, size_units, LOT_SIZES, _SIZE_SCALE, "lot")

    # Merge: trades first in the concatenation, so a stable sort puts a trade before a
    # book change with the same key; each part's key is non-decreasing, so each keeps
    # its own order.
    local_key = np.concatenate([_running_max(trade.recv_ns), _running_max(book.recv_ns)])
    order = np.argsort(local_key, kind="stable")
    events = np.zeros(len(order), dtype=EVENT_DTYPE)
    local = local_key[order]
    exch_raw = np.concatenate([trade.exch_ns, book.exch_ns])[order]
    exch = _running_max(np.minimum(exch_raw, local))
    events["ev"] = np.concatenate([trade.ev, book.ev])[order] | EXCH_EVENT | LOCAL_EVENT
    events["exch_ts"] = exch
    events["local_ts"] = local
    events["px"] = np.concatenate([trade.px, book.px])[order]
    events["qty"] = np.concatenate([trade.qty, book.qty])[order]
    kinds = events["ev"] & 0xFF
    return HftExport(
        events=events,
        market=name,
        tick_size=tick,
        lot_size=lot,
        tick_inferred=tick_inferred,
        lot_inferred=lot_inferred,
        depth_events=int(
            np.count_nonzero((kinds == DEPTH_EVENT) | (kinds == DEPTH_SNAPSHOT_EVENT))
        ),
        trade_events=int(np.count_nonzero(kinds == TRADE_EVENT)),
        clear_events=int(np.count_nonzero(kinds == DEPTH_CLEAR_EVENT)),
        skipped=skipped,
        clamped=int(np.count_nonzero(exch != exch_raw)),
    )


def save_npz(path: str | Path, events: np.ndarray, **extra: object) -> Path:
    """Write `events` as `data` in a compressed `.npz` (what hftbacktest's loaders read),
    with `extra` arrays beside it. The name is kept as given (numpy's own `savez` would
    add `.npz`), and the file appears whole or not at all."""
    target = Path(path)
    with atomic_file(target) as f:
        _savez(f, events, extra)
    return target


def _savez(handle: IO[bytes], events: np.ndarray, extra: dict[str, object]) -> None:
    if events.dtype != EVENT_DTYPE:
        raise ValueError(f"expected hftbacktest's event dtype, got {events.dtype}")
    np.savez_compressed(handle, data=events, **{k: np.asarray(v) for k, v in extra.items()})


# -- the parts ---------------------------------------------------------------------------


@dataclass
class _Part:
    ev: np.ndarray  # uint64 kind | side flags
    recv_ns: np.ndarray
    exch_ns: np.ndarray
    px: np.ndarray
    qty: np.ndarray
    price_units: np.ndarray  # the prices and sizes that the tick and lot must divide
    size_units: np.ndarray


def _empty_part() -> _Part:
    i8 = np.zeros(0, np.int64)
    return _Part(np.zeros(0, np.uint64), i8, i8, np.zeros(0), np.zeros(0), i8, i8)


def _one_market(table: pa.Table, market: str | None, name: str) -> pa.Table:
    if market is not None:
        return table.filter(pc.equal(table["market"], market))
    held = pc.unique(table["market"].drop_null()).to_pylist()
    if len(held) > 1:
        raise ValueError(f"{name} holds {len(held)} markets; say which one to export")
    return table


def _np(column: pa.ChunkedArray | pa.Array, fill: object = 0) -> np.ndarray:
    return pc.fill_null(column, fill).to_numpy(zero_copy_only=False)


def _units(column: pa.ChunkedArray, scale: int) -> np.ndarray:
    """Exact decimals as int64 units (0 where null)."""
    factor = pa.scalar(Decimal(scale), pa.decimal128(len(str(scale)), 0))
    return _np(pc.cast(pc.multiply(column, factor), pa.int64()))


def _exchange_or_recv(table: pa.Table) -> np.ndarray:
    return _np(pc.coalesce(table["exchange_ns"], table["recv_ns"]))


def _opening_book(prior: pa.Table, start_ns: int, schema: pa.Schema) -> pa.Table:
    """The book `prior` adds up to, as a clear and snapshot rows at `start_ns` (no rows
    when the book is unknown: never built, or cleared by a break and not rebuilt)."""
    is_clear = _np(pc.equal(prior["kind"], "clear"), False).astype(bool)
    clears = np.flatnonzero(is_clear)
    if not len(clears) or not prior["valid"][int(clears[-1])].as_py():
        return schema.empty_table()
    last = prior.slice(int(clears[-1]) + 1)
    is_yes = _np(pc.equal(last["side"], "yes"), False).astype(bool)
    price = _units(last["price"], _PRICE_SCALE)
    size = _units(last["size"], _SIZE_SCALE)
    # The last change of each level holds its size: the first in reverse order.
    key = np.where(is_yes, _PRICE_SCALE + 1, 0) + price
    _, first_reversed = np.unique(key[::-1], return_index=True)
    at = len(key) - 1 - first_reversed
    at = at[size[at] > 0]
    at = at[np.lexsort((-price[at], ~is_yes[at]))]  # YES ladder then NO, best first
    market = prior["market"][int(clears[-1])].as_py()
    rows = [{"recv_ns": start_ns, "market": market, "kind": "clear", "valid": True,
             "is_snapshot": True}]  # fmt: skip
    for i in at.tolist():
        level = Decimal(int(size[i])) / _SIZE_SCALE
        rows.append(
            {
                "recv_ns": start_ns,
                "market": market,
                "kind": "snapshot",
                "side": "yes" if is_yes[i] else "no",
                "price": Decimal(int(price[i])) / _PRICE_SCALE,
                "size": level,
                "delta": level,
                "is_snapshot": True,
                "valid": True,
            }
        )
    return pa.Table.from_pylist(rows, schema=schema)


def _book_events(table: pa.Table) -> tuple[_Part, int]:
    n = table.num_rows
    kind = table["kind"]
    is_clear = _np(pc.equal(kind, "clear"), False).astype(bool)
    is_snapshot = _np(pc.equal(kind, "snapshot"), False).astype(bool)
    is_delta = _np(pc.equal(kind, "delta"), False).astype(bool)
    valid = _np(table["valid"], False).astype(bool)
    is_yes = _np(pc.equal(table["side"], "yes"), False).astype(bool)
    is_no = _np(pc.equal(table["side"], "no"), False).astype(bool)

    # The book is known from a clear that starts a snapshot (valid) or a snapshot level,
    # until a clear at a break (not valid). Before the first of these it is unknown.
    marker = np.full(n, -1, np.int8)
    marker[is_snapshot & valid] = 0
    marker[is_clear] = np.where(valid[is_clear], 0, 1)
    last = np.maximum.accumulate(np.where(marker >= 0, np.arange(n), -1)) if n else marker
    broken = np.where(last >= 0, marker[np.maximum(last, 0)], 1) == 1
    level = (is_snapshot | is_delta) & (is_yes | is_no)
    keep = is_clear | (level & valid & ~broken)
    skipped = int(np.count_nonzero(~keep))

    price = _units(table["price"], _PRICE_SCALE)[keep]
    size = _units(table["size"], _SIZE_SCALE)[keep]
    clear, snap, yes = is_clear[keep], is_snapshot[keep], is_yes[keep]
    ev = np.where(clear, DEPTH_CLEAR_EVENT, np.where(snap, DEPTH_SNAPSHOT_EVENT, DEPTH_EVENT))
    ev = ev.astype(np.uint64) | np.where(clear, 0, np.where(yes, BUY_EVENT, SELL_EVENT)).astype(
        np.uint64
    )
    # A NO bid at p is a YES ask at 1 - p.
    yes_scale = np.where(yes, price, _PRICE_SCALE - price)
    px = np.where(clear, 0.0, yes_scale / _PRICE_SCALE)
    qty = np.where(clear, 0.0, size / _SIZE_SCALE)
    part = _Part(
        ev=ev,
        recv_ns=_np(table["recv_ns"])[keep].astype(np.int64),
        exch_ns=_exchange_or_recv(table)[keep].astype(np.int64),
        px=px,
        qty=qty,
        price_units=yes_scale[~clear],
        size_units=size[~clear],
    )
    return part, skipped


def _trade_events(table: pa.Table) -> _Part:
    taker = table["taker_side"]
    buy = _np(pc.equal(taker, "yes"), False).astype(bool)
    sell = _np(pc.equal(taker, "no"), False).astype(bool)
    flags = np.where(buy, BUY_EVENT, np.where(sell, SELL_EVENT, 0)).astype(np.uint64)
    price = _units(table["yes_price"], _PRICE_SCALE)
    count = _units(table["count"], _SIZE_SCALE)
    return _Part(
        ev=flags | np.uint64(TRADE_EVENT),
        recv_ns=_np(table["recv_ns"]).astype(np.int64),
        exch_ns=_exchange_or_recv(table).astype(np.int64),
        px=price / _PRICE_SCALE,
        qty=count / _SIZE_SCALE,
        price_units=price,
        size_units=count,
    )


def _running_max(values: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(values) if len(values) else values


def _choose(
    given: Decimal | str | None,
    units: np.ndarray,
    candidates: tuple[Decimal, ...],
    scale: int,
    what: str,
) -> tuple[Decimal, bool]:
    """The given size (checked against the data) or the coarsest candidate that fits."""
    if given is None:
        for size in candidates:
            step = int(size * scale)
            if not np.any(units % step):
                return size, True
        return candidates[-1], True  # unreachable: the finest is the data's own unit
    try:
        size = Decimal(str(given))
    except ArithmeticError:
        raise ValueError(f"{what} size {given!r} is not a number") from None
    if not size.is_finite() or size <= 0:
        raise ValueError(f"{what} size must be above 0, not {given}")
    step_exact = size * scale
    if step_exact != step_exact.to_integral_value():
        finest = candidates[-1]
        raise ValueError(f"{what} size {size} is finer than the data's unit {finest}")
    step = int(step_exact)
    bad = units[units % step != 0]
    if len(bad):
        example = Decimal(int(bad[0])) / scale
        noun = "price" if what == "tick" else "size"
        raise ValueError(
            f"{what} size {size} does not divide {len(bad)} {noun}(s) of the data, "
            f"e.g. {example}; the data needs {what} size "
            f"{_choose(None, units, candidates, scale, what)[0]}"
        )
    return size, False
