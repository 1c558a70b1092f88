"""The schemas of the research datasets: one Arrow schema per dataset, and their names.

This module owns what a derived dataset looks like on disk and in memory, so that
the kernel, the writers, the readers and the exporters agree on one definition.
Prices are exact dollars (`decimal128(12, 4)`: the wire's four places), sizes
exact contracts (`decimal128(18, 2)`: the `_fp` fields' two places), never
float. Times are int64 nanoseconds since the epoch (`recv_ns`, our receive
clock; `exchange_ns`, the exchange's own `ts_ms` * 1e6 where the message carries
one). Every dataset has `valid`: false wherever the market's book sat between a
break (gap, reset, disconnect) and its resync. On disk each dataset is Hive
partitioned by `date` (UTC day of `recv_ns`, `YYYY-MM-DD`), which is not a
column of the files themselves.

Dataset names: "book_changes", "quotes", "trades", "depth:N@INTERVAL" (e.g.
"depth:10@1s") and "bars:INTERVAL" (e.g. "bars:1m"); `folder_name` gives each its
folder and SQL view name ("depth_10_1s", "bars_1m").
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa

from replay.datasets.arrays import numbers, with_nulls

__all__ = [
    "BARS",
    "BOOK_CHANGES",
    "CODE",
    "CODED",
    "DEPTH_BASE",
    "KIND_CLEAR",
    "KIND_DELTA",
    "KIND_SNAPSHOT",
    "PRICE",
    "QUOTES",
    "SIZE",
    "TRADES",
    "decimals",
    "depth_schema",
]

PRICE: Final = pa.decimal128(12, 4)  # dollars, exact
SIZE: Final = pa.decimal128(18, 2)  # contracts, exact
MID: Final = pa.decimal128(13, 5)  # (bid + ask) / 2: one more place, still exact
NOTIONAL: Final = pa.decimal128(24, 6)  # price * size sums (bars' dollar volume)

KIND_CLEAR: Final = "clear"  # the market's book emptied (snapshot start, or a break)
KIND_SNAPSHOT: Final = "snapshot"  # one level of a snapshot (or of a switch's new book)
KIND_DELTA: Final = "delta"  # one level change

#: Every level change of every book, in capture order (run_id, idx), then level order
#: within a snapshot (the YES ladder as the frame lists it, then the NO ladder).
#: A "clear" row has null side, price, size and delta; its `valid` is false at a
#: break and true at a snapshot's start. `is_snapshot` is true on a snapshot's rows
#: (its clear and its levels), false on deltas and on the clear of a break. `seq` is
#: the frame's; a make-before-break switch (the new connection's book replaces the
#: old one's) is written as a clear and the new book's levels with kind "snapshot".
BOOK_CHANGES: Final = pa.schema(
    [
        ("recv_ns", pa.int64()),
        ("exchange_ns", pa.int64()),  # null: deltas without ts_ms, and all snapshots
        ("run_id", pa.string()),
        ("conn", pa.int32()),
        ("sid", pa.int32()),
        ("seq", pa.int64()),
        ("market", pa.string()),
        ("kind", pa.string()),
        ("side", pa.string()),  # "yes" / "no" (which bid ladder); null on clear
        ("price", PRICE),  # the ladder's own price (NO bids in NO-leg prices)
        ("size", SIZE),  # resting size after the change (0: the level is gone)
        ("delta", SIZE),  # the change (a snapshot level: its size)
        ("is_snapshot", pa.bool_()),
        ("valid", pa.bool_()),
    ]
)

#: A row at every change of the best YES bid, the best YES ask (1 - best NO bid) or
#: their sizes, and at every change of validity. Nulls where a side is empty.
QUOTES: Final = pa.schema(
    [
        ("recv_ns", pa.int64()),
        ("exchange_ns", pa.int64()),
        ("run_id", pa.string()),
        ("conn", pa.int32()),
        ("market", pa.string()),
        ("bid", PRICE),
        ("bid_size", SIZE),
        ("ask", PRICE),
        ("ask_size", SIZE),
        ("mid", MID),
        ("spread", PRICE),
        ("valid", pa.bool_()),
    ]
)

#: Every public trade the engine delivers (duplicates dropped, a make-before-break
#: overlap de-duplicated), in capture order. `valid` is false on the first trade after a
#: sequence break of its subscription (trades may be missing just before it).
#: `taker_side` is "yes"/"no" (the wire's `taker_side`, or `taker_outcome_side`).
TRADES: Final = pa.schema(
    [
        ("recv_ns", pa.int64()),
        ("exchange_ns", pa.int64()),  # ts_ms * 1e6, else ts * 1e9
        ("run_id", pa.string()),
        ("conn", pa.int32()),
        ("sid", pa.int32()),
        ("seq", pa.int64()),
        ("trade_id", pa.string()),
        ("market", pa.string()),
        ("yes_price", PRICE),
        ("no_price", PRICE),
        ("count", SIZE),
        ("taker_side", pa.string()),
        ("valid", pa.bool_()),
        ("yes_price_f", pa.float64()),  # float conveniences beside the exact columns
        ("count_f", pa.float64()),
    ]
)

#: The columns of "depth:N@I" before its levels: one row per market per interval end
#: (`ts_ns`, the interval's end; the book as of the last change before it), for every
#: market that has had a book, in name order. Then, for i in 1..N, bid_i, bid_size_i (YES bids, best
#: first) and ask_i, ask_size_i (YES asks = 1 - NO bids, best first); nulls past the
#: book's depth.
DEPTH_BASE: Final = pa.schema(
    [
        ("ts_ns", pa.int64()),
        ("recv_ns", pa.int64()),  # the last change at or before ts_ns
        ("market", pa.string()),
        ("valid", pa.bool_()),
    ]
)


def depth_schema(levels: int) -> pa.Schema:
    """The schema of "depth:`levels`@...": `DEPTH_BASE` then the levels."""
    fields = list(DEPTH_BASE)
    for i in range(1, levels + 1):
        fields += [(f"bid_{i}", PRICE), (f"bid_size_{i}", SIZE)]
    for i in range(1, levels + 1):
        fields += [(f"ask_{i}", PRICE), (f"ask_size_{i}", SIZE)]
    return pa.schema(fields)


#: OHLCV per market per interval (`ts_ns`: the interval's start), from trades (YES
#: prices), with VWAP, trade count and the closing quote (the last quote at or before
#: the interval's end; `valid` is that quote's). Only intervals with at least one trade
#: have a row.
BARS: Final = pa.schema(
    [
        ("ts_ns", pa.int64()),
        ("market", pa.string()),
        ("open", PRICE),
        ("high", PRICE),
        ("low", PRICE),
        ("close", PRICE),
        ("volume", SIZE),
        ("vwap", MID),
        ("trades", pa.int64()),
        ("bid", PRICE),
        ("ask", PRICE),
        ("mid", MID),
        ("valid", pa.bool_()),
    ]
)


#: String columns that repeat a few values (a run, a market, a kind, a side): rows are
#: built with them dictionary-coded (`coded`: codes into the names the kernel already
#: holds, no string copied per row) and written so, as Parquet dictionary pages; every
#: reader sees strings (the files keep no Arrow schema: Parquet's own types say it all),
#: and so does the API (the sinks turn them back into strings for tables in memory).
CODED: Final = ("run_id", "market", "kind", "side", "taker_side")
CODE: Final = pa.dictionary(pa.int32(), pa.string())  # a coded column's type


def coded(arrow: pa.Schema) -> pa.Schema:
    """`arrow` with its `CODED` string columns dictionary-coded (int32 codes)."""
    return pa.schema([f.with_type(CODE) if f.name in CODED and f.type == pa.string() else f
                      for f in arrow])  # fmt: skip


def codes(indices: np.ndarray, values: pa.Array, valid: np.ndarray | None = None) -> pa.Array:
    """A dictionary-coded column: `values[indices]` (null where not `valid`). The codes
    are copied: `indices` may be a buffer the caller reuses."""
    return pa.DictionaryArray.from_arrays(numbers(np.array(indices, np.int32), valid), values)


def decimals(units: np.ndarray, dtype: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """int64 units as a decimal128 array of `dtype` (its scale is the units' scale)."""
    units = np.ascontiguousarray(units, np.int64)
    wide = np.empty((len(units), 2), np.int64)
    wide[:, 0] = units
    wide[:, 1] = units >> 63
    out = pa.Array.from_buffers(dtype, len(units), [None, pa.py_buffer(wide)])
    return out if valid is None else with_nulls(out, valid)


def quote_columns(q: np.ndarray) -> dict[str, pa.Array]:
    """The quotes' own columns from the kernel's integer rows `q` (bid, bid size, ask,
    ask size in units, -1 for none; valid as 1): the one place a quote becomes decimals,
    for the quotes of the driver and of the book pass alike."""
    bid, bsz, ask, asz = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    has_b, has_a = bid >= 0, ask >= 0
    both = has_b & has_a
    return {
        "bid": decimals(bid, PRICE, has_b),
        "bid_size": decimals(bsz, SIZE, has_b),
        "ask": decimals(ask, PRICE, has_a),
        "ask_size": decimals(asz, SIZE, has_a),
        "mid": decimals((bid + ask) * 5, MID, both),  # (bid + ask) / 2 at one more place
        "spread": decimals(ask - bid, PRICE, both),
        "valid": numbers(q[:, 4] == 1),
    }
