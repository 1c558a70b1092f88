"""Row buffers and their conversion to Arrow: the kernel's integers become exact decimals.

`Outputs` holds the numpy buffers the kernel and the driver write book_changes and
trade rows into (one window at a time), and `flush` turns them into Arrow record
batches of `replay.datasets.schema`: units become `decimal128` by writing the
integers straight into the decimal's 128-bit little-endian buffer (a price of
5600 units is 0.5600 at scale 4), never through float or Python objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from replay.datasets import schema
from replay.datasets.arrays import numbers, strings
from replay.datasets.schema import codes, decimals
from replay.reading.capture import contiguous, int64_view

__all__ = ["BAR_TRADES", "BookNames", "Build", "ChangeRows", "Outputs", "batch_of"]

_KINDS = strings([schema.KIND_CLEAR, schema.KIND_SNAPSHOT, schema.KIND_DELTA])
_SIDES = strings(["yes", "no"])
#: The batches' schemas: the datasets' with their repeating strings coded (schema.CODED).
_BOOK_CHANGES = schema.coded(schema.BOOK_CHANGES).append(pa.field("_frame", pa.int64()))
_QUOTES = schema.coded(schema.QUOTES)
_TRADES = schema.coded(schema.TRADES)
_CAP = 1 << 16
#: The trades' columns the bars read (all a trade batch holds when trades are not asked for).
BAR_TRADES = ["recv_ns", "market", "yes_price", "count"]


class BookNames:
    """Which market each of the kernel's books is a book of. With one feed a market has
    one book and its code is the market's own; with redundant feeds each feed's book of
    a market is a book of its own (`replay.datasets.mirror`), and rows name the market."""

    def __init__(self) -> None:
        self.name_of = np.zeros(0, np.int32)  # book code -> market code
        self.identity = True  # every book's code is its market's

    def of(self, books: np.ndarray) -> np.ndarray:
        """The market codes of book codes."""
        return books if self.identity else self.name_of[books]

    def market_of(self, book: int) -> int:
        return book if self.identity else int(self.name_of[book])


@dataclass(frozen=True, slots=True)
class ChangeRows:
    """Level changes as the kernel wrote them, before they become a book_changes batch:
    what depth is made from when book_changes themselves are not asked for (no decimals,
    no strings). `mkt` are codes into `names`; clears have side, price and size 0."""

    names: list[str]
    mkt: np.ndarray
    kind: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    valid: np.ndarray
    frame: np.ndarray  # the frame's number in the pass (book_changes' `_frame`)
    recv: np.ndarray

    def of(self, markets: frozenset[str]) -> ChangeRows:
        """The rows of these markets."""
        wanted = np.array([name in markets for name in self.names] + [False], np.bool_)
        keep = wanted[self.mkt]
        return ChangeRows(self.names, *(a[keep] for a in (
            self.mkt, self.kind, self.side, self.price, self.size, self.valid, self.frame,
            self.recv)))  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Window:
    """The window `Outputs`' rows are of (their `row` numbers index it)."""

    run_id: str
    table: pa.Table
    decoded: Any  # its `decode.Decoded`
    frame_base: int  # the number in the pass of its first frame
    mkt: np.ndarray  # each row's market code into `Outputs.names`


@dataclass(frozen=True, slots=True)
class Build:
    """What a pass builds from the kernel's rows (the datasets asked for decide)."""

    changes: bool = True  # book_changes batches (else the level changes are counted away)
    quotes: bool = True  # quote batches (else the kernel's quote rows are dropped)
    change_rows: bool = False  # level changes as `ChangeRows` ("book_rows"), not batches
    trades: bool = True  # whole trade batches (else the bars' columns: `BAR_TRADES`)


class Outputs:
    """book_changes and trade row buffers for the window being derived."""

    def __init__(self, emit: Callable[[Any, str], None], build: Build = Build(),
                 books: BookNames | None = None) -> None:  # fmt: skip
        self._emit = emit
        self.build = build
        self.books = BookNames() if books is None else books  # `mkt`, `q_mkt`: book codes
        self.row = np.zeros(_CAP, np.int64)
        self.mkt = np.zeros(_CAP, np.int32)
        self.kind = np.zeros(_CAP, np.int8)
        self.side = np.zeros(_CAP, np.int8)
        self.price = np.zeros(_CAP, np.int64)
        self.size = np.zeros(_CAP, np.int64)
        self.delta = np.zeros(_CAP, np.int64)
        self.valid = np.zeros(_CAP, np.bool_)
        self.t_row = np.zeros(_CAP // 4, np.int64)
        self.t_valid = np.ones(_CAP // 4, np.bool_)
        self.q_row = np.zeros(_CAP // 2, np.int64)
        self.q_mkt = np.zeros(_CAP // 2, np.int32)
        self.q_val = np.zeros((_CAP // 2, 5), np.int64)
        self.q_n = np.zeros(1, np.int64)
        self.n = 0
        self.t_n = 0
        self.names: list[str] = []
        self._ctx: _Window | None = None

    def begin(self, run_id: str, table: pa.Table, decoded: Any, frame_base: int,
              names: list[str], mkt: np.ndarray) -> None:  # fmt: skip
        """The window the next rows are of; `mkt`: its rows' market codes into `names`
        (the trades' market; book rows name their book)."""
        self.flush()
        self._ctx = _Window(run_id, table, decoded, frame_base, mkt)
        self.names = names

    def reserve(self, rows: int) -> None:
        if self.n + rows > len(self.row):
            self.flush()
            if rows > len(self.row):
                for name in ("row", "mkt", "kind", "side", "price", "size", "delta", "valid"):
                    setattr(self, name, np.zeros(rows, getattr(self, name).dtype))
        if self.t_n + 1 > len(self.t_row) or self.q_n[0] + rows > len(self.q_row):
            self.flush()

    def emit(self, row: int, m: int, kind: int, side: int, price: int, size: int,
             delta: int, valid: bool) -> None:  # fmt: skip
        i = self.n
        self.row[i], self.mkt[i], self.kind[i], self.side[i] = row, m, kind, side
        self.price[i], self.size[i], self.delta[i], self.valid[i] = price, size, delta, valid
        self.n = i + 1

    def emit_levels(self, row: int, m: int, kind: int, side: int, prices: np.ndarray,
                    sizes: np.ndarray) -> None:  # fmt: skip
        """`emit` for a ladder's levels at once (size and delta both the level's size)."""
        i, j = self.n, self.n + len(prices)
        self.row[i:j], self.mkt[i:j], self.kind[i:j], self.side[i:j] = row, m, kind, side
        self.price[i:j], self.size[i:j], self.delta[i:j] = prices, sizes, sizes
        self.valid[i:j] = True
        self.n = j

    def trade_frame(self, frame: Any, run_id: str, conn: int, valid: bool) -> None:
        """A trade the engine delivered (from any row, held ones included): one row,
        parsed from its own bytes, after the rows already buffered."""
        if self.t_n:
            self._emit(self._trade_batch(), "trades")
            self.t_valid[: self.t_n] = True
            self.t_n = 0
        self._emit(trade_batch(frame, run_id, conn, valid), "trades")

    def trade(self, row: int, valid: bool) -> None:
        self.t_row[self.t_n] = row
        self.t_valid[self.t_n] = valid
        self.t_n += 1

    def end(self) -> None:
        """The window is done: its rows go out, and nothing holds it any more (its frames'
        buffer can take another window's)."""
        self.flush()
        self._ctx = None

    def flush(self) -> None:
        if self._ctx is None:
            if self.n or self.t_n or self.q_n[0]:
                raise RuntimeError("rows emitted outside a window")
            return
        if self.n:
            if self.build.change_rows:
                self._emit(self._change_rows(), "book_rows")
            elif self.build.changes:
                self._emit(self._book_batch(), "book_changes")
            self.n = 0
        if self.t_n:
            self._emit(self._trade_batch(), "trades")
            self.t_valid[: self.t_n] = True
            self.t_n = 0
        if self.q_n[0]:
            if self.build.quotes:
                self._emit(self._quote_batch(), "quotes")
            self.q_n[0] = 0

    def _context(self, rows: np.ndarray) -> dict[str, pa.Array]:
        assert self._ctx is not None
        run_id, table, decoded = self._ctx.run_id, self._ctx.table, self._ctx.decoded
        idx = numbers(rows)
        seq_ok = np.asarray(decoded.seq_valid)[rows]
        sid = decoded.sid[rows]
        return {
            "recv_ns": contiguous(table.column("recv_ns").take(idx)),
            "exchange_ns": numbers(decoded.ts_ms[rows] * 1_000_000, decoded.ts_ms_ok[rows]),
            "run_id": codes(np.zeros(len(rows), np.int32), strings([run_id])),
            "conn": contiguous(table.column("conn").take(idx)).cast(pa.int32()),
            "sid": numbers(sid, sid >= 0, pa.int32()),
            "seq": numbers(decoded.seq[rows], seq_ok, pa.int64()),
        }

    def _book_batch(self) -> pa.RecordBatch:
        n = self.n
        rows = self.row[:n].copy()
        cols = self._context(rows)
        kind = self.kind[:n]
        level = kind != 0
        cols["market"] = codes(self.books.of(self.mkt[:n]), strings(self.names))
        cols["kind"] = codes(kind, _KINDS)
        cols["side"] = codes(np.where(level, self.side[:n], 0), _SIDES, level)
        cols["price"] = decimals(self.price[:n], schema.PRICE, level)
        cols["size"] = decimals(self.size[:n], schema.SIZE, level)
        cols["delta"] = decimals(self.delta[:n], schema.SIZE, level)
        # a snapshot's rows (its clear included); a clear at a break is not one
        cols["is_snapshot"] = numbers((kind == 1) | ((kind == 0) & self.valid[:n]))
        cols["valid"] = numbers(self.valid[:n].copy())
        assert self._ctx is not None
        frame = numbers(rows + self._ctx.frame_base)
        arrays = [cols[f.name] for f in schema.BOOK_CHANGES] + [frame]
        return pa.RecordBatch.from_arrays(arrays, schema=_BOOK_CHANGES)

    def _change_rows(self) -> ChangeRows:
        assert self._ctx is not None
        n = self.n
        rows = self.row[:n].copy()
        level = self.kind[:n] != 0
        frames = rows + self._ctx.frame_base
        return ChangeRows(self.names, self.books.of(self.mkt[:n]).copy(), self.kind[:n].copy(),
                          np.where(level, self.side[:n], 0).astype(np.int8),
                          np.where(level, self.price[:n], 0), np.where(level, self.size[:n], 0),
                          self.valid[:n].copy(), frames, self._recv(rows))  # fmt: skip

    def _recv(self, rows: np.ndarray) -> np.ndarray:
        """The window's `recv_ns` at `rows`."""
        assert self._ctx is not None
        recv: np.ndarray = int64_view(self._ctx.table.column("recv_ns"))[rows]
        return recv

    def _quote_batch(self) -> pa.RecordBatch:
        n = int(self.q_n[0])
        rows = self.q_row[:n].copy()
        cols = self._context(rows)
        cols["market"] = codes(self.books.of(self.q_mkt[:n]), strings(self.names))
        cols |= schema.quote_columns(self.q_val[:n])
        arrays = [cols[f.name] for f in schema.QUOTES]
        return pa.RecordBatch.from_arrays(arrays, schema=_QUOTES)

    def _trade_batch(self) -> pa.RecordBatch:
        from replay.datasets.decode import trade_columns

        assert self._ctx is not None
        rows = self.t_row[: self.t_n].copy()
        # the kernel takes trades with a market only: each row has its code
        market = codes(self._ctx.mkt[rows], strings(self.names))
        if not self.build.trades:
            cols = {"recv_ns": numbers(self._recv(rows)), "market": market,
                    **trade_columns(self._ctx.decoded, rows, whole=False)}  # fmt: skip
            return pa.RecordBatch.from_arrays([cols[n] for n in BAR_TRADES], names=BAR_TRADES)
        cols = self._context(rows)
        cols.update(trade_columns(self._ctx.decoded, rows))  # its exchange_ns: ts_ms, else ts
        cols["market"] = market
        cols["valid"] = numbers(self.t_valid[: self.t_n].copy())
        arrays = [cols[f.name] for f in schema.TRADES]
        return pa.RecordBatch.from_arrays(arrays, schema=_TRADES)


def _scaled(value: Any, digits: int) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(str(value)).scaleb(digits)
    except ArithmeticError:
        return None
    return number if number == number.to_integral_value() else None


def trade_batch(frame: Any, run_id: str, conn: int, valid: bool) -> pa.RecordBatch:
    """One trades row from a delivered `stream.events.Frame` (exact, by `stream.fixed`'s
    rules: current dollar strings, or legacy cents and counts)."""
    msg = json.loads(bytes(frame.raw)).get("msg") or {}
    current = "yes_price_dollars" in msg
    yes = _scaled(msg.get("yes_price_dollars") if current else msg.get("yes_price"),
                  4 if current else 2)  # fmt: skip
    no = _scaled(msg.get("no_price_dollars") if current else msg.get("no_price"),
                 4 if current else 2)  # fmt: skip
    count = _scaled(msg.get("count_fp", msg.get("count")), 2)
    ts_ms, ts = msg.get("ts_ms"), msg.get("ts")
    exchange = ts_ms * 1_000_000 if isinstance(ts_ms, int) else (
        ts * 1_000_000_000 if isinstance(ts, int) else None)  # fmt: skip
    side = next((s for s in (msg.get("taker_side"), msg.get("taker_outcome_side"))
                 if isinstance(s, str)), None)  # fmt: skip
    row = {
        "recv_ns": frame.recv_ns, "exchange_ns": exchange, "run_id": run_id, "conn": conn,
        "sid": frame.sid, "seq": frame.seq, "trade_id": msg.get("trade_id"),
        "market": frame.market_ticker,
        "yes_price": None if yes is None else yes.scaleb(-4),
        "no_price": None if no is None else no.scaleb(-4),
        "count": None if count is None else count.scaleb(-2),
        "taker_side": None if side is None else side.lower(), "valid": valid,
        "yes_price_f": None if yes is None else float(yes) / 1e4,
        "count_f": None if count is None else float(count) / 1e2,
    }  # fmt: skip
    return batch_of([row], schema.TRADES)


def batch_of(rows: list[dict[str, Any]], arrow: pa.Schema) -> pa.RecordBatch:
    """Python rows as a batch of `arrow`: integers, floats, booleans, strings and exact
    decimals, None as null (through `arrays`, so that pyarrow converts nothing)."""
    columns = []
    for field in arrow:
        values = [row.get(field.name) for row in rows]
        valid = np.array([v is not None for v in values], np.bool_)
        kind = field.type
        if pa.types.is_string(kind):
            columns.append(strings(values))
        elif pa.types.is_decimal(kind):
            units = [0 if v is None else int(v.scaleb(kind.scale)) for v in values]
            columns.append(decimals(np.array(units, np.int64), kind, valid))
        elif pa.types.is_boolean(kind):
            columns.append(numbers(np.array([bool(v) for v in values], np.bool_), valid))
        else:
            filled = [0 if v is None else v for v in values]
            columns.append(numbers(np.array(filled), valid, kind))
    return pa.RecordBatch.from_arrays(columns, schema=arrow)
