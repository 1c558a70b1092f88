"""Bulk decode: a window of captured frames into the typed columns the kernel reads.

`decode_window` hands a window's raw bytes (the Arrow binary buffer itself) to
`replay.datasets.scan`, a compiled JSON scanner, which picks out in one pass what
routing, books and trades need, numbers as exact integers in the wire's units
(`stream.fixed`). Measured against DuckDB's `from_json`, pyarrow's JSON reader and
msgspec in docs/performance.md section 6.1. A frame the scanner is not sure of is
marked inexact and goes to the engine, which decides it as it always does. DuckDB
stays for the bars (`connect`: a private one-thread connection).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replay.datasets import kernel, scan
from replay.datasets.arrays import binary_buffers, bools_of, numbers, strings, with_nulls
from replay.datasets.names import NameTable
from replay.datasets.schema import PRICE, SIZE, codes, decimals
from replay.reading.capture import contiguous

__all__ = ["Decoded", "Scratch", "connect", "decode_window", "trade_columns"]

_DUCKDB_MEMORY = "64MB"


def connect() -> Any:
    """A private one-thread DuckDB connection for the bars, its memory bounded (it spills
    to the system's temporary directory beyond `_DUCKDB_MEMORY`)."""
    import tempfile

    import duckdb  # only the bars need it

    spill = os.path.join(tempfile.gettempdir(), "kalshi-tape-duckdb")
    config = {"threads": 1, "memory_limit": _DUCKDB_MEMORY, "temp_directory": spill}
    return duckdb.connect(config=config)


@dataclass(slots=True)
class Decoded:
    """One window's frames as columns (numpy for the kernel, Arrow for the outputs)."""

    rk: np.ndarray  # kernel.K_*: the frame's type as far as the scan tells (0: other)
    sid: np.ndarray  # -1 where none
    seq: np.ndarray  # 0 where null
    seq_valid: np.ndarray
    side: np.ndarray  # 0 yes, 1 no, -1 other
    price: np.ndarray
    dsize: np.ndarray
    exact: np.ndarray  # the kernel may take the row (whole units, a clean frame)
    ts_ms: np.ndarray  # the msg's ts_ms (valid where ts_ms_ok)
    ts_ms_ok: np.ndarray
    levels: tuple[np.ndarray, ...]  # ys, ye, y_price, y_size, ns, ne, n_price, n_size
    raw: pa.Array
    data: np.ndarray  # the raw bytes (the spans below point into it)
    offsets: np.ndarray  # each frame's bytes: data[offsets[i] : offsets[i + 1]]
    market_spans: tuple[np.ndarray, np.ndarray]
    market_codes: tuple[np.ndarray, np.ndarray]  # codes in the mirror's names, hashes
    trade: np.ndarray  # per row, the trade fields `scan.scan` found

    def type_of(self, pos: int) -> str | None:
        """The frame's `type` (read by Python for a frame the scan left to the engine)."""
        if self.rk[pos]:
            return scan.TYPES[int(self.rk[pos]) - 1]
        try:
            value = json.loads(self.raw[pos].as_py())
        except ValueError:
            return None
        return value.get("type") if isinstance(value, dict) else None


class Scratch:
    """The scanner's output arrays, kept from one window to the next.

    Fresh arrays each window cost their page faults again (a window's are ~30 MiB);
    the scanner writes every element of a row it scans, so they need no clearing.
    Nothing built from them outlives the window: rows are copied out (`Outputs`) before
    the next window is decoded.
    """

    _TYPES = (np.int8, np.int64, np.int64, np.bool_, np.int64, np.int64, np.int8, np.int64,
              np.int64, np.bool_, np.int64, np.bool_, np.bool_)  # fmt: skip

    def __init__(self) -> None:
        self.rows = self.room = -1
        self.columns: list[np.ndarray] = []
        self.trade = self.lv = self.lv_p = self.lv_s = np.zeros(0, np.int64)
        self.mcode, self.mhash = np.zeros(0, np.int32), np.zeros(0, np.uint64)
        self.stack = np.zeros(64, np.int8)
        self.order = scan.orders()  # the fast paths' msg keys, last seen

    def arrays(
        self, n: int, data_bytes: int
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The arrays for a window of n rows and data_bytes bytes of frames, as views
        (the market codes and hashes: `codes(n)`)."""
        if n > self.rows:
            self.rows = max(n, 1024)
            self.columns = [np.empty(self.rows, t) for t in self._TYPES]
            self.trade = np.empty((self.rows, 20), np.int64)
            self.lv = np.empty((self.rows, 5), np.int64)
            self.mcode = np.empty(self.rows, np.int32)
            self.mhash = np.empty(self.rows, np.uint64)
        room = max(1024, data_bytes // 24)  # a level takes at least 24 bytes of JSON
        if room > self.room:
            self.room = room
            self.lv_p, self.lv_s = np.empty(room, np.int64), np.empty(room, np.int64)
        return ([c[:n] for c in self.columns], self.trade[:n], self.lv[:n], self.lv_p,
                self.lv_s)  # fmt: skip

    def codes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The market codes and hashes of the window `arrays(n)` was asked for."""
        return self.mcode[:n], self.mhash[:n]


def _strings(data: np.ndarray, m0: np.ndarray, m1: np.ndarray) -> pa.Array:
    """The byte spans [m0, m1) of `data` as an Arrow string array (null where m1 < m0:
    the frame has no such field)."""
    valid = m1 >= m0
    lengths = np.where(valid, m1 - m0, 0)
    offsets = np.zeros(len(m0) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]) + 8, np.uint8)  # `gather` may write 7 bytes past the end
    kernel.gather(data, m0, lengths, offsets, out)
    column = pa.Array.from_buffers(pa.string(), len(m0), [None, pa.py_buffer(offsets),
                                                           pa.py_buffer(out)])  # fmt: skip
    return with_nulls(column, valid)


# Arrow scalars made from arrays, not from Python values (arrays.py says why).
_IN = strings(["in"])[0]
_TEXT = numbers(np.ones(1, np.int8))[0]
_YES, _NO = numbers(np.array([True, False]))


def _equal(column: pa.ChunkedArray, value: pa.Scalar, if_null: pa.Scalar) -> np.ndarray:
    """`column == value` as a numpy bool array, `if_null` where the column is null."""
    return bools_of(pc.fill_null(pc.equal(contiguous(column), value), if_null))


def decode_window(window: pa.Table, table: NameTable, scratch: Scratch | None = None) -> Decoded:
    """Decode a window (columns `dir`, `opcode`, `raw`, ...) into `Decoded` columns,
    in `scratch`'s arrays if given (they are overwritten by the next window's decode);
    market codes from `table` (UNKNOWN for names it does not hold yet)."""
    raw = contiguous(window.column("raw"))
    offsets, data = binary_buffers(raw)
    scratch = scratch or Scratch()
    out, trade, lv, lv_p, lv_s = scratch.arrays(len(raw), len(data))
    mcode, mhash = scratch.codes(len(raw))
    scan.scan(data, offsets, *out, scratch.stack, trade, lv, lv_p, lv_s, mcode, mhash,
              table.slots, table.names, table.starts, scratch.order)  # fmt: skip
    rk, sid, seq, seq_ok, m0, m1, side, price, dsize, num_ok, ts, ts_ok, ok = out
    inbound = _equal(window.column("dir"), _IN, _NO)
    rk[~inbound] = 0
    text = _equal(window.column("opcode"), _TEXT, _YES)  # no opcode: a text frame
    exact = ok & inbound & text & seq_ok & (sid >= 0) & (m1 >= m0)
    is_delta, is_trade, is_snap = (
        rk == kernel.K_DELTA,
        rk == kernel.K_TRADE,
        rk == kernel.K_SNAPSHOT,
    )
    levels = (lv[:, 0], lv[:, 1], lv_p, lv_s, lv[:, 2], lv[:, 3], lv_p, lv_s)
    snap_ok = lv[:, 4] == 1
    exact &= np.where(is_delta, num_ok & (side >= 0) & (side <= 1),
                      np.where(is_snap, snap_ok, is_trade))  # fmt: skip
    return Decoded(rk, sid, seq, seq_ok, side, price, dsize, exact, ts, ts_ok, levels,
                   raw, data, offsets, (m0, m1), (mcode, mhash), trade)  # fmt: skip


_SIDES = strings(["yes", "no"])


def trade_columns(decoded: Decoded, rows: np.ndarray, *, whole: bool = True
                  ) -> dict[str, pa.Array]:  # fmt: skip
    """The trade fields of rows `rows` as the trades dataset's typed columns but the
    market (the caller has it as codes); without `whole`, only the YES price and count
    (what the bars read). The fields come from one compiled pass (`kernel.trade_fields`);
    the taker side is one of two codes unless a frame spells it other than "yes" or "no"
    (in any case), and then the lower-cased strings."""
    n = len(rows)
    yes, no, count, exchange = (np.empty(n, np.int64) for _ in range(4))
    yes_ok, no_ok, count_ok, exchange_ok = (np.empty(n, np.bool_) for _ in range(4))
    side = np.empty(n, np.int8)
    kernel.trade_fields(decoded.trade, rows, decoded.ts_ms, decoded.ts_ms_ok,
                        decoded.data, yes, yes_ok, no, no_ok, count, count_ok, exchange,
                        exchange_ok, side)  # fmt: skip
    if not whole:
        return {"yes_price": decimals(yes, PRICE, yes_ok),
                "count": decimals(count, SIZE, count_ok)}  # fmt: skip
    tr = decoded.trade
    if (side == -2).any():  # another spelling: the strings, lower-cased
        spans = tr[rows, 2:6]
        has_side = spans[:, 1] >= spans[:, 0]
        t0 = np.where(has_side, spans[:, 0], spans[:, 2])
        t1 = np.where(has_side, spans[:, 1], spans[:, 3])
        taker = pc.utf8_lower(_strings(decoded.data, t0, t1)).dictionary_encode()
    else:
        taker = codes(side == 1, _SIDES, side >= 0)
    return {
        "trade_id": _strings(decoded.data, tr[rows, 0], tr[rows, 1]),
        "yes_price": decimals(yes, PRICE, yes_ok),
        "no_price": decimals(no, PRICE, no_ok),
        "count": decimals(count, SIZE, count_ok),
        "taker_side": taker,
        "exchange_ns": numbers(exchange, exchange_ok),  # ts_ms, else ts
        "yes_price_f": numbers(yes / 1e4, yes_ok),
        "count_f": numbers(count / 1e2, count_ok),
    }
