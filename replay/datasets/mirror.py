"""The kernel's mirror of the engine's book state, and the rows it turns deliveries into.

`Mirror` holds the arrays `replay.datasets.kernel.run` reads and writes: which wire
slot each (connection, sid) is, each wire's last seq and role (book, trade, or
engine-only), which wire delivers each market's book, and the books themselves
(`replay.datasets.ladders.Books`). `refresh` rebuilds the routing from the engine after
it handled a row; `write_back` hands the kernel's progress back to the engine's wires;
`delivered` turns one `BookSnapshot` the engine delivered into rows (see
`replay.datasets.driver`). `Outputs` holds the row buffers both write into.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from replay.datasets import kernel, ladders, names
from replay.datasets.decode import Decoded
from replay.datasets.rows import Outputs
from stream.book import BookSnapshot
from stream.core import EngineCore
from stream.decode import DECODE_ERRORS, decode_book_exact, decode_frame, delta_units
from stream.fixed import PRICE_SCALE

__all__ = ["Mirror", "Outputs", "SubunitValue"]

_BOOK, _TRADE = "orderbook_delta", "trade"
#: Output arrays for `kernel.quote` when it only remembers a top (emit=False).
_NO_OUTPUT = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 5), np.int64),
              np.zeros(1, np.int64))  # fmt: skip


class SubunitValue(ValueError):
    """A price or size finer than the units (1e-4 dollars, 1e-2 contracts), or a price
    outside 0..1 dollar: the datasets' decimal columns cannot hold it exactly."""


class Mirror:
    """See the module docstring."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.conn_code: dict[int, int] = {}
        self.wire_of = np.full((4, 16), -1, np.int32)
        self.slot_of: dict[int, int] = {}
        self.wires: list[Any] = []
        self.wire_last = np.full(16, kernel.NONE, np.int64)
        self.loaded = self.wire_last.copy()
        self.wire_role = np.zeros(16, np.int8)
        self.wire_lastrow = np.full(16, -1, np.int64)
        first = core.first_last
        self.first_last = kernel.NONE if first is None else np.int64(first)
        self.market_code: dict[str, int] = {}
        self.names: list[str] = []
        self.table = names.NameTable()  # the same names, for lookups from frame bytes
        self.market_wire = np.full(0, -1, np.int32)
        self.books = ladders.Books()
        self.qstate = np.zeros((0, 6), np.int64)  # the last quote per market (kernel.quote)
        self.stamp = np.zeros((2, kernel.PRICES), np.int64)
        self.stamp_no = np.zeros(1, np.int64)
        self.live: list[tuple[int, Any]] = []

    # ------------------------------------------------------------------ codes

    def conn_codes(self, conns: np.ndarray) -> np.ndarray:
        if len(conns) and conns[0] == conns[-1] and (conns == conns[0]).all():
            return np.full(len(conns), self._conn(int(conns[0])), np.int32)  # the usual window
        uniq = np.unique(conns)
        codes = np.array([self._conn(int(c)) for c in uniq], np.int32)
        return codes[np.searchsorted(uniq, conns)]

    def _conn(self, conn: int) -> int:
        code = self.conn_code.get(conn)
        if code is None:
            code = self.conn_code[conn] = len(self.conn_code)
            if code >= self.wire_of.shape[0]:
                grown = np.full((code * 2, self.wire_of.shape[1]), -1, np.int32)
                grown[: self.wire_of.shape[0]] = self.wire_of
                self.wire_of = grown
        return code

    def market_codes(self, decoded: Decoded) -> np.ndarray:
        """The market code of each frame of a window (-1: none, or a name that is not
        UTF-8, which the engine decides), registering the names the scan did not know."""
        data, (m0, m1), (codes, hashes) = decoded.data, decoded.market_spans, decoded.market_codes
        rows = np.flatnonzero(codes == names.UNKNOWN)
        while len(rows):
            _, first = np.unique(hashes[rows], return_index=True)  # a row a new name
            added = 0
            for r in rows[np.sort(first)]:  # numbered in the order they came
                try:
                    name = data[m0[r] : m1[r]].tobytes().decode()
                except UnicodeDecodeError:
                    continue
                if name not in self.market_code:
                    self.market(name)
                    added += 1
            if not added:  # only names that are not UTF-8 are left
                codes[rows] = names.NONE
                break
            again, _ = self.table.codes(data, m0[rows], m1[rows])
            codes[rows] = again
            rows = rows[again == names.UNKNOWN]
        return codes

    def market(self, name: str) -> int:
        code = self.market_code.get(name)
        if code is None:
            code = self.market_code[name] = len(self.names)
            self.names.append(name)
            self.table.add(name.encode())
            self.books.add(code + 1)
            if code >= self.market_wire.shape[0]:
                size = max(8, code * 2)
                mw = np.full(size, -1, np.int32)
                mw[: self.market_wire.shape[0]] = self.market_wire
                qstate = np.zeros((size, 6), np.int64)
                qstate[: self.qstate.shape[0]] = self.qstate
                self.market_wire, self.qstate = mw, qstate
        return code

    def _slot(self, wire: Any) -> int:
        slot = self.slot_of.get(id(wire))
        if slot is None:
            slot = self.slot_of[id(wire)] = len(self.wires)
            self.wires.append(wire)  # kept alive: an id is never reused
            if slot >= self.wire_last.shape[0]:
                grow = slot * 2
                self.wire_last = np.resize(self.wire_last, grow)
                self.loaded = np.resize(self.loaded, grow)
                self.wire_role = np.resize(self.wire_role, grow)
                self.wire_lastrow = np.resize(self.wire_lastrow, grow)
        return slot

    # ------------------------------------------------------------------ engine <-> kernel

    def refresh(self) -> None:
        """Rebuild the routing from the engine's connections and wire subscriptions."""
        core = self.core
        self.wire_of.fill(-1)
        self.live = []
        for conn in core.conns.values():
            c = self._conn(conn.conn)
            fast = conn.group.active is conn and not core.overlap
            for sid, wire in conn.sids.items():
                slot = self._slot(wire)
                if sid >= self.wire_of.shape[1]:
                    grown = np.full((self.wire_of.shape[0], sid * 2), -1, np.int32)
                    grown[:, : self.wire_of.shape[1]] = self.wire_of
                    self.wire_of = grown
                if sid >= 0:
                    self.wire_of[c, sid] = slot
                last = kernel.NONE if wire.last_seq is None else wire.last_seq
                self.wire_last[slot] = self.loaded[slot] = last
                self.wire_lastrow[slot] = -1
                role = kernel.W_SLOW
                if fast and wire.targets and not wire.use_yes_price:
                    if wire.channel == _BOOK and wire.is_book and not wire.awaiting_snapshot:
                        role = kernel.W_BOOK
                    elif wire.channel == _TRADE and wire.sequenced:
                        role = kernel.W_TRADE
                self.wire_role[slot] = role
                self.live.append((slot, wire))

    def write_back(self, table: pa.Table) -> None:
        """Give the engine's wires what the kernel did: last seq, last trade frame."""
        for slot, wire in self.live:
            last = int(self.wire_last[slot])
            if last != self.loaded[slot]:
                wire.last_seq = last
                self.loaded[slot] = last
            row = int(self.wire_lastrow[slot])
            if row >= 0:
                wire.last_raw = table.column("raw")[row].as_py()
                if wire.high_seq is None or last > wire.high_seq:
                    wire.high_seq = last
                self.wire_lastrow[slot] = -1

    def wire_slot(self, conn: int, sid: int | None) -> int:
        state = self.core.conns.get(conn)
        wire = None if state is None or sid is None else state.sids.get(sid)
        return -1 if wire is None else self._slot(wire)

    # ------------------------------------------------------------------ deliveries

    def delivered(self, snap: BookSnapshot, pos: int, decoded: Decoded, row_mkt: int,
                  raw: Any, out: Outputs) -> None:  # fmt: skip
        """One book the engine delivered while handling row `pos`: rows for it."""
        m = self.market(snap.market)
        out.reserve(1)  # a clear, or a delta (a load reserves its own levels)
        if not snap.valid:
            self._clear(m)
            self.market_wire[m] = -1
            out.emit(pos, m, kernel.C_CLEAR, -1, 0, 0, 0, False)
            self._quote(m, False, pos, out)
            return
        w = self.wire_slot(snap.conn, snap.sid)
        typ = decoded.type_of(pos)
        same_row = row_mkt == m and int(decoded.sid[pos]) == snap.sid
        if typ == "orderbook_delta" and same_row and self.market_wire[m] == w >= 0:
            is_yes, price, delta = self._delta_units(pos, decoded, raw)
            wire = self.wires[w]
            if wire.use_yes_price and not is_yes:
                price = PRICE_SCALE - price
            s = 0 if is_yes else 1
            _check(price, delta, snap.market)
            self.books.fit(m, (price,))
            changed, after = ladders.apply_delta(*self.books.arrays(), m, s, price, delta)
            if changed:
                out.emit(pos, m, kernel.C_DELTA, s, price, int(after), delta, True)
                self._quote(m, True, pos, out)
            return
        self.load(m, snap, pos, out)
        self.market_wire[m] = w
        self._quote(m, True, pos, out)

    def load(self, m: int, snap: BookSnapshot, pos: int, out: Outputs) -> None:
        """Replace market m's book with a delivered one: a clear, then its levels."""
        out.reserve(1 + len(snap.yes_units) + len(snap.no_units))
        sides = self._replace(m, snap)
        out.emit(pos, m, kernel.C_CLEAR, -1, 0, 0, 0, True)
        for s, prices, sizes in sides:
            out.emit_levels(pos, m, kernel.C_SNAPSHOT, s, prices, sizes)

    def _replace(self, m: int, snap: BookSnapshot) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Market m's book becomes `snap`'s (checked, the ladder fitted, cleared, loaded a
        side at a time: a call into numba costs more than a level); returns each side
        that holds levels as (side, prices, sizes)."""
        sides = []
        for s, ladder in ((0, snap.yes_units), (1, snap.no_units)):
            for price, size in ladder.items():
                _check(price, size, snap.market)
            if ladder:
                sides.append((s, np.fromiter(ladder, np.int64, len(ladder)),
                              np.fromiter(ladder.values(), np.int64, len(ladder))))  # fmt: skip
        self.books.fit(m, [p for _, prices, _ in sides for p in prices.tolist()])
        self._clear(m)
        for s, prices, sizes in sides:
            ladders.load_levels(*self.books.arrays(), m, s, prices, sizes)
        return sides

    def load_engine_books(self, runs: list[str], stride: int) -> list[dict[str, Any]]:
        """After a checkpoint restore: the kernel's books become the engine's; returns
        them as book_changes rows (a clear and the levels, kind "snapshot") so that
        the passes over book_changes start from the same books."""
        rows: list[dict[str, Any]] = []
        recv_ns = self.core.now[0]
        for conn in self.core.conns.values():
            for wire in conn.sids.values():
                for market, book in wire.books.items():
                    m = self.market(market)
                    snap = book.snapshot()
                    sides = self._replace(m, snap)
                    # stamped with the book's last change (as the rows of one pass are),
                    # not with the checkpoint's time
                    base = {"recv_ns": snap.recv_ns or recv_ns, "exchange_ns": None,
                            "run_id": runs[conn.conn // stride],
                            "conn": conn.conn % stride, "sid": wire.sid, "seq": book.seq,
                            "market": market, "is_snapshot": True, "valid": snap.valid,
                            "_frame": -1 - len(rows)}  # fmt: skip
                    frame = base["_frame"]
                    rows.append(base | {"kind": "clear", "side": None, "price": None,
                                        "size": None, "delta": None})  # fmt: skip
                    for s, prices, sizes in sides:
                        for price, size in zip(prices.tolist(), sizes.tolist(), strict=True):
                            rows.append(base | {
                                "_frame": frame, "kind": "snapshot",
                                "side": "yes" if s == 0 else "no",
                                "price": Decimal(price).scaleb(-4),
                                "size": Decimal(size).scaleb(-2),
                                "delta": Decimal(size).scaleb(-2)})  # fmt: skip
                    self.market_wire[m] = self._slot(wire)
                    kernel.quote(self.books.sizes, self.books.best, self.books.lay, self.qstate,
                                 m, True, -1, *_NO_OUTPUT, False)  # fmt: skip
        return rows

    def _quote(self, m: int, valid: bool, pos: int, out: Outputs) -> None:
        kernel.quote(self.books.sizes, self.books.best, self.books.lay, self.qstate, m, valid,
                     pos, out.q_row, out.q_mkt, out.q_val, out.q_n, True)  # fmt: skip

    def _clear(self, m: int) -> None:
        ladders.clear(*self.books.arrays(), m)

    @staticmethod
    def _delta_units(pos: int, decoded: Decoded, raw: Any) -> tuple[bool, Any, Any]:
        if decoded.exact[pos]:
            return bool(decoded.side[pos] == 0), int(decoded.price[pos]), int(decoded.dsize[pos])
        data = bytes(raw)
        try:
            frame = decode_frame(data)
        except DECODE_ERRORS:
            frame = decode_book_exact(data)
        return delta_units(frame.msg)


def _check(price: Any, size: Any, market: str) -> None:
    if type(price) is not int or type(size) is not int or not 0 <= price <= PRICE_SCALE:
        value = Decimal(price) / PRICE_SCALE
        raise SubunitValue(
            f"{market}: a level at {value} dollars (size {size} hundredths) is finer than the "
            "datasets' units or outside 0..1 dollar; derive cannot write it exactly "
            "(ReplaySession reads it exactly)"
        )
