"""Depth (and quotes) from book_changes: the changes replayed into books, compiled.

`book_changes` is self-contained (a clear, then a snapshot's levels, then each
level's size after every change), so top of book and the top N levels follow
from it alone, with no second reading of the capture and no second set of
rules. The derive takes depth from here; its quotes come from the kernel itself
(`kernel.quote`, as it applies each frame), and `quotes=True` here gives the same
rows from the changes alone. `BookReplay` keeps the books (`replay.datasets.ladders`,
as the kernel) across batches and, per batch, `_replay` writes a quote row wherever a frame
changed the best YES bid, the best YES ask (1 - the best NO bid), either size or
the book's validity, and a depth row per market at every interval boundary
crossed (the book as it stood just before the first change at or after it).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from replay.datasets import kernel, ladders, schema
from replay.datasets.arrays import bools_of, numbers, strings, values_of
from replay.datasets.jit import borrow, forget_if_changed
from replay.datasets.ladders import grown
from replay.datasets.rows import ChangeRows
from replay.datasets.schema import decimals
from replay.reading.capture import contiguous

__all__ = ["BookReplay", "units_of"]

_SCALE = 10_000
_DONE, _FULL, _FIT = 0, 1, 2  # why `_replay` returned: the end, an output full, a ladder to fit


def units_of(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The int64 units of a decimal128 column (0 where null): its low 64-bit words."""
    array = contiguous(array)
    if len(array) == 0:
        return np.zeros(0, np.int64)
    words = np.frombuffer(array.buffers()[1], np.int64)
    low = words[2 * array.offset : 2 * (array.offset + len(array)) : 2].copy()
    if array.null_count:
        low[~bools_of(array.is_valid())] = 0
    return low


_KIND_CODES = {"snapshot": kernel.C_SNAPSHOT, "delta": kernel.C_DELTA}  # else clear, 0
_SIDE_CODES = {"no": 1}  # else yes (or none), 0


def _lookup(column: pa.Array | pa.ChunkedArray, codes: dict[str, int]) -> np.ndarray:
    """int8 `codes[value]` for each row of a string column (0 for others and nulls); a
    dictionary-coded column (the kernel's batches) through its few values, not per row."""
    column = contiguous(column)
    if not pa.types.is_dictionary(column.type):
        out = np.zeros(len(column), np.int8)
        for value, code in codes.items():
            out[bools_of(pc.equal(column, strings([value])[0]))] = code
        return out
    table = np.array([codes.get(v, 0) for v in column.dictionary.to_pylist()] + [0], np.int8)
    indices = values_of(column.indices, if_null=len(table) - 1).astype(np.int64)
    return table[indices]


@njit(cache=True)
def _top(books, held, best, lay, m, s, prices, sizes, row, levels):
    k = 0
    p = best[m, s]
    while p >= 0 and k < levels:
        prices[row, k] = p if s == 0 else _SCALE - p
        sizes[row, k] = ladders.size_at(books, lay, m, s, p)
        k += 1
        p = ladders.below(held, lay, m, s, p)
    for j in range(k, levels):
        prices[row, j] = -1
        sizes[row, j] = 0


@njit(cache=True)
def _replay(
    i, n, mkt, kind, side, price, size, valid, frame, recv,
    books, held, best, lay, mvalid, seen, last_recv, qstate,
    o_row, o_q, o_n, interval, next_ts, levels, d_ts, d_mkt, d_valid, d_recv,
    d_bp, d_bs, d_ap, d_as, d_n,
):  # fmt: skip
    # the arrays passed to the book functions, without reference counting
    books, held, best, lay = borrow(books), borrow(held), borrow(best), borrow(lay)
    d_bp, d_bs, d_ap, d_as = borrow(d_bp), borrow(d_bs), borrow(d_ap), borrow(d_as)
    qcap = o_row.shape[0]
    dcap = d_ts.shape[0]
    nm = seen.shape[0]
    while i < n:
        t = recv[i]
        if interval > 0:  # next_ts[0]: the first interval end, set by the caller
            while t >= next_ts[0]:
                count = 0
                for m in range(nm):
                    count += seen[m]
                if d_n + count > dcap:
                    return i, o_n, d_n, _FULL
                for m in range(nm):
                    if seen[m]:
                        d_ts[d_n] = next_ts[0]
                        d_mkt[d_n] = m
                        d_valid[d_n] = mvalid[m]
                        d_recv[d_n] = last_recv[m]
                        _top(books, held, best, lay, m, 0, d_bp, d_bs, d_n, levels)
                        _top(books, held, best, lay, m, 1, d_ap, d_as, d_n, levels)
                        d_n += 1
                next_ts[0] += interval
        if o_n >= qcap:
            return i, o_n, d_n, _FULL
        m = mkt[i]
        seen[m] = True
        last_recv[m] = t
        if kind[i] == kernel.C_CLEAR:
            ladders.clear(books, held, best, lay, m)
        else:
            if not ladders.fits(lay, m, price[i]):
                return i, o_n, d_n, _FIT  # the caller fits the ladder and calls again
            ladders.set_level(books, held, best, lay, m, side[i], price[i], size[i])
        mvalid[m] = valid[i]
        if i + 1 < n and frame[i + 1] == frame[i] and mkt[i + 1] == m:
            i += 1
            continue
        b = best[m, 0]
        a = best[m, 1]
        bid = b
        bsz = ladders.size_at(books, lay, m, 0, b) if b >= 0 else 0
        ask = _SCALE - a if a >= 0 else -1
        asz = ladders.size_at(books, lay, m, 1, a) if a >= 0 else 0
        v = 1 if valid[i] else 0
        if (qstate[m, 0] != 1 or qstate[m, 1] != bid or qstate[m, 2] != bsz
                or qstate[m, 3] != ask or qstate[m, 4] != asz or qstate[m, 5] != v):  # fmt: skip
            qstate[m, 0] = 1
            qstate[m, 1] = bid
            qstate[m, 2] = bsz
            qstate[m, 3] = ask
            qstate[m, 4] = asz
            qstate[m, 5] = v
            o_row[o_n] = i
            o_q[o_n, 0] = bid
            o_q[o_n, 1] = bsz
            o_q[o_n, 2] = ask
            o_q[o_n, 3] = asz
            o_q[o_n, 4] = v
            o_n += 1
        i += 1
    return i, o_n, d_n, _DONE


class BookReplay:
    """Quotes and depth rows from book_changes batches, in order, across batches."""

    def __init__(self, quotes: bool, levels: int = 0, interval_ns: int = 0,
                 from_ns: int | None = None) -> None:  # fmt: skip
        """`from_ns`: no depth row is wanted before it (a range's start: the books
        restored at its seek carry their last changes' times, which may be long before)."""
        self.quotes, self.levels, self.interval = quotes, levels, interval_ns
        self.from_ns = from_ns
        self.codes: dict[str, int] = {}
        self.names: list[str] = []
        self.books = ladders.Books()
        self.mvalid = np.zeros(0, np.bool_)
        self.seen = np.zeros(0, np.bool_)
        self.last_recv = np.zeros(0, np.int64)
        self.qstate = np.zeros((0, 6), np.int64)
        self.next_ts = np.zeros(1, np.int64)
        self._lut = np.zeros(0, np.int32)  # the kernel's market codes -> this replay's

    def _grow(self, size: int) -> None:
        old = len(self.seen)
        if size <= old:
            return
        size = max(size, 2 * old, 8)
        self.books.add(size)
        self.mvalid, self.seen = grown(self.mvalid, size, 0), grown(self.seen, size, 0)
        self.last_recv, self.qstate = grown(self.last_recv, size, 0), grown(self.qstate, size, 0)

    def _local(self, names: list[str]) -> np.ndarray:
        """This replay's codes of `names` (a market it has not seen gets the next one)."""
        for name in names:
            if name not in self.codes:
                self.codes[name] = len(self.names)
                self.names.append(name)
        self._grow(len(self.names))
        return np.array([self.codes[name] for name in names], np.int32)

    def _codes(self, market: pa.Array) -> np.ndarray:
        enc = market.dictionary_encode()
        return self._local(enc.dictionary.to_pylist())[values_of(enc.indices).astype(np.int64)]

    def _translated(self, names: list[str], mkt: np.ndarray) -> np.ndarray:
        """The kernel's market codes (into `names`, which only grows) as this replay's."""
        if len(self._lut) < len(names):
            self._lut = np.concatenate([self._lut, self._local(names[len(self._lut) :])])
        codes: np.ndarray = self._lut[mkt]
        return codes

    def feed(
        self, batch: pa.RecordBatch | ChangeRows
    ) -> tuple[list[pa.RecordBatch], list[pa.RecordBatch]]:
        """(quote batches, depth batches) for one book_changes batch (with `_frame`), or
        for the kernel's `ChangeRows` (depth only: quotes need the batch's columns)."""
        if isinstance(batch, ChangeRows):
            assert not self.quotes, "quotes are made from book_changes batches"
            rows = batch
            n = len(rows.mkt)
            if n == 0:
                return [], []
            mkt = self._translated(rows.names, rows.mkt)
            kind, side, price, size = rows.kind, rows.side, rows.price, rows.size
            valid, frame, recv = rows.valid, rows.frame, rows.recv
        else:
            n = batch.num_rows
            if n == 0:
                return [], []
            mkt = self._codes(batch.column("market"))
            kind = _lookup(batch.column("kind"), _KIND_CODES)
            side = _lookup(batch.column("side"), _SIDE_CODES)
            price = units_of(batch.column("price"))
            size = units_of(batch.column("size"))
            valid = bools_of(batch.column("valid"))
            frame = values_of(batch.column("_frame"))
            recv = values_of(batch.column("recv_ns"))
        if self.interval and self.next_ts[0] == 0:  # the first interval end
            first = (int(recv[0]) // self.interval + 1) * self.interval
            if self.from_ns is not None:
                first = max(first, -(-self.from_ns // self.interval) * self.interval)
            self.next_ts[0] = first
        cap = max(4096, n)
        o_row = np.zeros(cap, np.int64)
        o_q = np.zeros((cap, 5), np.int64)
        lv = max(self.levels, 1)
        dcap = max(4096, 4 * len(self.names))
        quotes, depth = [], []
        i = 0
        while i < n:
            d = [
                np.zeros(dcap, np.int64),
                np.zeros(dcap, np.int32),
                np.zeros(dcap, np.bool_),
                np.zeros(dcap, np.int64),
            ] + [np.zeros((dcap, lv), np.int64) for _ in range(4)]
            i, o_n, d_n, status = _replay(
                i, n, mkt, kind, side, price, size, valid, frame, recv,
                *self.books.arrays(), self.mvalid, self.seen, self.last_recv, self.qstate,
                o_row, o_q, 0, self.interval, self.next_ts, lv, *d, 0,
            )  # fmt: skip
            if self.quotes and o_n:
                assert isinstance(batch, pa.RecordBatch)
                quotes.append(self._quotes(batch, o_row[:o_n], o_q[:o_n]))
            if self.interval and d_n:
                depth.append(self._depth(d, d_n))
            if status == _FIT:
                self.books.fit(int(mkt[i]), (int(price[i]),))
        return quotes, depth

    def _quotes(self, batch: pa.RecordBatch, rows: np.ndarray, q: np.ndarray) -> pa.RecordBatch:
        idx = numbers(rows)
        cols = {name: batch.column(name).take(idx) for name in
                ("recv_ns", "exchange_ns", "run_id", "conn", "market")}  # fmt: skip
        cols |= schema.quote_columns(q)  # run_id and market as the batch holds them
        return pa.RecordBatch.from_arrays([cols[f.name] for f in schema.QUOTES],
                                          names=schema.QUOTES.names)  # fmt: skip

    def _depth(self, d: list[np.ndarray], n: int) -> pa.RecordBatch:
        """The rows of a depth buffer, each interval's markets in name order (the kernel
        writes them in the order the markets first came, which depends on where the
        reading began)."""
        names = strings(self.names)
        rank = np.empty(len(self.names), np.int64)
        rank[np.argsort(np.array(self.names, dtype=object))] = np.arange(len(self.names))
        order = np.lexsort((rank[d[1][:n]], d[0][:n]))
        d = [a[:n][order] for a in d]
        cols: list[pa.Array] = [
            numbers(d[0][:n]), numbers(d[3][:n]), schema.codes(d[1][:n], names),
            numbers(d[2][:n]),
        ]  # fmt: skip
        levels = self.levels
        for prices, sizes in ((d[4], d[5]), (d[6], d[7])):
            for k in range(levels):
                ok = prices[:n, k] >= 0
                cols += [decimals(prices[:n, k], schema.PRICE, ok),
                         decimals(sizes[:n, k], schema.SIZE, ok)]  # fmt: skip
        interleaved = cols[:4]
        bids, asks = cols[4 : 4 + 2 * levels], cols[4 + 2 * levels :]
        interleaved += bids + asks
        return pa.RecordBatch.from_arrays(
            interleaved, schema=schema.coded(schema.depth_schema(levels))
        )


forget_if_changed(
    __name__, _replay, ("replay.datasets.ladders", "replay.datasets.kernel", "replay.datasets.jit")
)
