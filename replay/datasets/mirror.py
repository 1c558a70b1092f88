"""The kernel's mirror of the engine's book state, and the rows it turns deliveries into.

`Mirror` holds the arrays `replay.datasets.kernel.run` reads and writes: which wire
slot each (connection, sid) is, each wire's last seq and role (book, trade, or
engine-only), which wire delivers each market's book, and the books themselves
(`replay.datasets.ladders.Books`). `refresh` rebuilds the routing from the engine after
it handled a row; `write_back` hands the kernel's progress back to the engine's wires;
`delivered` turns one `BookSnapshot` the engine delivered into rows (see
`replay.datasets.driver`). `Outputs` holds the row buffers both write into.

With redundant feeds each feed's book of a market is a book of the kernel's own
(`book`); the engine says which one is delivered (its owner feed's), `keep_delivered`
drops the rows of the others, and `follow` keeps them current from what the engine
does with their frames, so that a move to another feed finds that feed's book there.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from replay.datasets import kernel, ladders, names
from replay.datasets.arrays import values_of
from replay.datasets.decode import Decoded
from replay.datasets.ladders import grown
from replay.datasets.rows import BookNames, Outputs
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
        # The kernel's books: one per market, and with redundant feeds one per market per
        # feed (`book`); `market_wire`, `qstate` and the ladders are per book.
        self.book_names = BookNames()
        self.book_code = np.full((1, 0), -1, np.int32)  # (feed, market) -> book
        self.n_books = 0
        self.market_wire = np.full(0, -1, np.int32)  # book -> the wire it follows
        self.books = ladders.Books()
        self.qstate = np.zeros((0, 6), np.int64)  # the last quote per book (kernel.quote)
        self.delivered_book = np.full(0, -1, np.int32)  # market -> book delivered, -1 none
        self.shown = np.full(0, -1, np.int32)  # market -> book holding its last quote
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
                self.wire_of = grown(self.wire_of, code * 2, -1)
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
        """The market's code (registered on first sight, with feed 0's book)."""
        code = self.market_code.get(name)
        if code is None:
            code = self.market_code[name] = len(self.names)
            self.names.append(name)
            self.table.add(name.encode())
            if code >= self.delivered_book.shape[0]:
                size = max(8, code * 2)
                self.delivered_book = grown(self.delivered_book, size, -1)
                self.shown = grown(self.shown, size, -1)
                self.book_code = grown(self.book_code, size, -1, axis=1)
            self.book(code, 0)
        return code

    def book(self, market: int, feed: int) -> int:
        """The code of feed `feed`'s book of a market (made on first use). With one feed
        a market's book code is the market's code."""
        if feed >= self.book_code.shape[0]:
            self.book_code = grown(self.book_code, feed + 1, -1)
        code = int(self.book_code[feed, market])
        if code >= 0:
            return code
        code = self.n_books
        self.n_books += 1
        self.book_code[feed, market] = code
        names = self.book_names
        if code >= names.name_of.shape[0]:
            size = max(8, code * 2)
            names.name_of = grown(names.name_of, size, 0)
            self.market_wire = grown(self.market_wire, size, -1)
            self.qstate = grown(self.qstate, size, 0)
        names.name_of[code] = market
        names.identity = names.identity and code == market
        self.books.add(code + 1)
        return code

    def book_codes(self, mkt: np.ndarray, table: pa.Table) -> np.ndarray:
        """Each row's book: its market's (`market_codes`) book of the row's feed."""
        feeds = table.column("feed")
        feed = None if feeds.null_count == len(feeds) else values_of(feeds, if_null=0)
        if feed is None or not feed.any():
            if self.book_names.identity:
                return mkt
            return np.where(mkt >= 0, self.book_code[0, np.maximum(mkt, 0)], -1)
        has = mkt >= 0
        if not has.any():
            return mkt
        feed, at = feed.astype(np.intp), np.maximum(mkt, 0)
        top = int(feed.max())
        if top >= self.book_code.shape[0]:
            self.book_code = grown(self.book_code, top + 1, -1)
        missing = has & (self.book_code[feed, at] < 0)
        for f, m in sorted(set(zip(feed[missing].tolist(), mkt[missing].tolist(), strict=True))):
            self.book(m, f)
        return np.where(has, self.book_code[feed, at], -1).astype(np.int32)

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
        # a make-before-break overlap leaves the kernel (`stream.switching` decides every
        # frame); redundant feeds do not: each feed's book is one of the kernel's
        overlap = core.overlap and (not core.arbitrating or any(
            g.standby is not None or g.retiring for g in core.groups.values()))  # fmt: skip
        for conn in core.conns.values():
            c = self._conn(conn.conn)
            fast = conn.group.active is conn and not overlap
            for sid, wire in conn.sids.items():
                slot = self._slot(wire)
                if sid >= self.wire_of.shape[1]:
                    self.wire_of = grown(self.wire_of, sid * 2, -1, axis=1)
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

    def delivered(self, snap: BookSnapshot, pos: int, decoded: Decoded, conn: int,
                  row_book: int, raw: Any, out: Outputs) -> None:  # fmt: skip
        """One book the engine delivered while handling row `pos` (of connection `conn`
        and book `row_book`): rows for it."""
        n = self.market(snap.market)
        m = self.book(n, self._feed(snap.conn))
        out.reserve(1)  # a clear, or a delta (a load reserves its own levels)
        if not snap.valid:  # no feed holds a valid book of the market
            if self.delivered_book[n] >= 0:
                m = int(self.delivered_book[n])
            self._clear(m)
            self.market_wire[m] = -1
            self.delivered_book[n] = -1
            self.shown[n] = m
            out.emit(pos, m, kernel.C_CLEAR, -1, 0, 0, 0, False)
            self._quote(m, False, pos, out)
            return
        w = self.wire_slot(snap.conn, snap.sid)
        typ = decoded.type_of(pos)
        same_row = row_book == m and int(decoded.sid[pos]) == snap.sid
        if typ == "orderbook_delta" and same_row and self.market_wire[m] == w >= 0:
            is_yes, price, delta = self._delta_units(pos, decoded, raw)
            changed, after, s = self._apply(m, w, is_yes, price, delta, snap.market)
            if changed:
                out.emit(pos, m, kernel.C_DELTA, s, price, int(after), delta, True)
                self._quote(m, True, pos, out)
            return
        if self.market_wire[m] == w >= 0 and not self._on_wire(pos, decoded, conn, w):
            # handed over from another feed: the kernel followed this book (the engine's
            # copy lacks the deltas the kernel took)
            self._emit_book(m, pos, out)
        else:
            self.load(m, snap, pos, out)
        self.market_wire[m] = w
        self._deliver(n, m)
        self._quote(m, True, pos, out)

    def _deliver(self, n: int, m: int) -> None:
        """Market n's book is delivered from book m from now on: its quotes go on from the
        last one shown."""
        shown = int(self.shown[n])
        if shown >= 0 and shown != m:
            self.qstate[m] = self.qstate[shown]
        elif shown < 0:
            self.qstate[m] = 0  # nothing shown yet: the first quote is new
        self.delivered_book[n] = self.shown[n] = m

    def _feed(self, conn: int) -> int:
        state = self.core.conns.get(conn)
        return 0 if state is None else state.group.feed or 0

    def _on_wire(self, pos: int, decoded: Decoded, conn: int, w: int) -> bool:
        """Whether row `pos` (of connection `conn`) is a frame of wire slot w."""
        wire = self.wires[w]
        return bool(int(decoded.sid[pos]) == wire.sid and conn == wire.conn)

    def _apply(self, m: int, w: int, is_yes: bool, price: Any, delta: Any,
               market: str) -> tuple[bool, int, int]:  # fmt: skip
        """Apply a delta of wire slot w to book m (the kernel's arithmetic); returns
        (changed, the level's size after, side)."""
        if self.wires[w].use_yes_price and not is_yes:
            price = PRICE_SCALE - price
        s = 0 if is_yes else 1
        _check(price, delta, market)
        self.books.fit(m, (price,))
        changed, after = ladders.apply_delta(*self.books.arrays(), m, s, price, delta)
        return bool(changed), int(after), s

    def _emit_book(self, m: int, pos: int, out: Outputs) -> None:
        """Rows for book m as the kernel holds it: a clear, then its levels."""
        sides = [(s, *self._levels(m, s)) for s in (0, 1)]
        out.reserve(1 + sum(len(prices) for _, prices, _ in sides))
        out.emit(pos, m, kernel.C_CLEAR, -1, 0, 0, 0, True)
        for s, prices, sizes in sides:
            if len(prices):
                out.emit_levels(pos, m, kernel.C_SNAPSHOT, s, prices, sizes)

    def _levels(self, m: int, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Book m's side s as (prices, sizes) in units, best first."""
        base, step, _, slots, _ = (int(v) for v in self.books.lay[m])
        ladder = self.books.sizes[base + s * slots : base + (s + 1) * slots]
        held = np.flatnonzero(ladder)[::-1]
        return held * step, ladder[held].copy()

    # ------------------------------------------------------------------ redundant feeds

    def before(self, conn: int, sid: int) -> tuple[int, Any]:
        """Before the engine handles a row of (conn, sid): its wire slot and last seq."""
        w = self.wire_slot(conn, sid if sid >= 0 else None)
        return w, (None if w < 0 else self.wires[w].last_seq)

    def follow(self, pos: int, decoded: Decoded, conn: int, book: int,
               before: tuple[int, Any], raw: Any) -> None:  # fmt: skip
        """After the engine handled row `pos` (of connection `conn` and book `book`; its
        wire slot and last seq `before` it) in a capture of redundant feeds. The engine
        delivers only the books of their market's owner feed; the other feeds' books
        follow their wires here, as the engine's own copies do, so that the kernel can
        take those feeds' frames and a hand-over (`delivered`) finds the book current.
        A book is followed from a snapshot or delta the engine applied to it on a wire
        that holds it; the kernel takes a wire's frames only while the engine's roles
        say it may (`refresh`), so a book its wire dropped is never taken on, and comes
        back only by another frame of that wire, which passes here."""
        w, last = before
        k = decoded.rk[pos]
        if w < 0 or book < 0 or (k != kernel.K_DELTA and k != kernel.K_SNAPSHOT):
            return
        n = self.book_names.market_of(book)
        if self.delivered_book[n] == book:
            return  # `delivered` did its rows
        wire, market = self.wires[w], self.names[n]
        state = self.core.conns.get(wire.conn)
        subscribed = (state is not None and state.group.active is state
                      and state.sids.get(wire.sid) is wire)  # fmt: skip
        held = wire.books.get(market) if subscribed and not wire.awaiting_snapshot else None
        seq = int(decoded.seq[pos])
        if held is None:
            if self.market_wire[book] == w:
                self.market_wire[book] = -1
        elif self.market_wire[book] != w:  # every frame of w for it went to the engine
            self._replace(book, held.snapshot())
            self.market_wire[book] = w
        elif wire.last_seq == seq != last:  # applied in sequence
            if k == kernel.K_DELTA:
                is_yes, price, delta = self._delta_units(pos, decoded, raw)
                self._apply(book, w, is_yes, price, delta, market)
            else:  # a snapshot: the engine's book is the frame's
                self._replace(book, held.snapshot())

    def keep_delivered(self, out: Outputs, o0: int, q0: int) -> None:
        """Of the book and quote rows the kernel wrote from `o0` and `q0` on, keep those of
        delivered books (the kernel keeps every feed's books alike)."""
        of = self.book_names.of
        if out.n > o0:
            mk = out.mkt[o0 : out.n]
            keep = self.delivered_book[of(mk)] == mk
            if not keep.all():
                out.n = o0 + _compact(keep, o0, out.row, out.mkt, out.kind, out.side,
                                      out.price, out.size, out.delta, out.valid)  # fmt: skip
        q_n = int(out.q_n[0])
        if q_n > q0:
            mk = out.q_mkt[q0:q_n]
            keep = self.delivered_book[of(mk)] == mk
            if not keep.all():
                out.q_n[0] = q0 + _compact(keep, q0, out.q_row, out.q_mkt, out.q_val)

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
            if ladder:
                sides.append((s, *_levels(ladder, snap.market)))
        if sides:
            self.books.fit(m, np.concatenate([prices for _, prices, _ in sides]))
        self._clear(m)
        for s, prices, sizes in sides:
            ladders.load_levels(*self.books.arrays(), m, s, prices, sizes)
        return sides

    def load_engine_books(self, runs: list[str], stride: int,
                          owners: dict[str, int]) -> list[dict[str, Any]]:  # fmt: skip
        """After a checkpoint restore: the kernel's books become the engine's; returns
        the delivered ones as book_changes rows (a clear and the levels, kind
        "snapshot") so that the passes over book_changes start from the same books.
        With redundant feeds each feed's book is loaded and the one delivered is the
        owner's (`owners`: the arbiter's, market -> group), or the first loaded."""
        rows: list[dict[str, Any]] = []
        recv_ns = self.core.now[0]
        for conn in self.core.conns.values():
            for wire in conn.sids.values():
                for market, book in wire.books.items():
                    n = self.market(market)
                    m = self.book(n, conn.group.feed or 0)
                    snap = book.snapshot()
                    sides = self._replace(m, snap)
                    self.market_wire[m] = self._slot(wire)
                    if not self._restored_delivers(market, n, conn.group.id, owners):
                        continue  # another feed's book is delivered
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
                    self._deliver(n, m)
                    kernel.quote(self.books.sizes, self.books.best, self.books.lay, self.qstate,
                                 m, True, -1, *_NO_OUTPUT, False)  # fmt: skip
        return rows

    def _restored_delivers(self, market: str, n: int, group: int, owners: dict[str, int]) -> bool:
        """Whether `group`'s restored book of `market` (code n) is the one delivered: its
        owner's with redundant feeds, else the first loaded; with one feed, always."""
        if not self.core.arbitrating:
            return True
        owner = owners.get(market)
        return owner == group if owner is not None else self.shown[n] < 0

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


def _compact(keep: np.ndarray, start: int, *arrays: np.ndarray) -> int:
    """Keep the rows of `arrays` from `start` on where `keep`; returns how many."""
    kept = int(keep.sum())
    for a in arrays:
        a[start : start + kept] = a[start : start + len(keep)][keep]
    return kept


def _levels(ladder: Any, market: str) -> tuple[np.ndarray, np.ndarray]:
    """A ladder's prices and sizes in units as arrays, every one checked (`_check`): the
    types of all at once, then the prices' range on the array."""
    if set(map(type, ladder)) == {int} and set(map(type, ladder.values())) == {int}:
        prices = np.fromiter(ladder, np.int64, len(ladder))  # would truncate a Decimal
        if prices.min() >= 0 and prices.max() <= PRICE_SCALE:
            return prices, np.fromiter(ladder.values(), np.int64, len(ladder))
    for price, size in ladder.items():
        _check(price, size, market)  # raises for the first level that is not whole units
    raise AssertionError("unreachable: a level failed the check above")


def _check(price: Any, size: Any, market: str) -> None:
    if type(price) is not int or type(size) is not int or not 0 <= price <= PRICE_SCALE:
        value = Decimal(price) / PRICE_SCALE
        raise SubunitValue(
            f"{market}: a level at {value} dollars (size {size} hundredths) is finer than the "
            "datasets' units or outside 0..1 dollar; derive cannot write it exactly "
            "(ReplaySession reads it exactly)"
        )
