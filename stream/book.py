"""Order books: YES and NO bid ladders per market, and the immutable snapshots consumers get.

Book semantics (docs/protocol.md section 8.1): the book is bids only, one ladder per side,
price -> resting quantity as exact Decimals. A snapshot replaces a book; a delta
adds to one level, and a level at or below zero disappears. Asks are implied:
YES ask = 1 - best NO bid (with that bid's size), NO ask = 1 - best YES bid. With
`use_yes_price` the server quotes NO levels on the YES scale; they are converted to
NO-leg prices on the way in, so a book is always stored one way.

Cost model (docs/performance.md section 4.4): a delta is a dict update, O(1); the best bid
is kept incrementally and recomputed (one `max`) only after the best level itself
empties; nothing is sorted until a consumer asks for sorted depth. Snapshots are
copy-on-write: handing one out costs nothing, and the next change copies only the
side it touches, so an immutable view per update stays cheap.

This module knows nothing of frames, sequence numbers or subscriptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import NamedTuple

__all__ = ["BookSnapshot", "Level", "OrderBook"]

ONE = Decimal(1)


class Level(NamedTuple):
    """One price level of a ladder."""

    price: Decimal
    size: Decimal


def _sorted_desc(side: Mapping[Decimal, Decimal]) -> tuple[Level, ...]:
    return tuple(Level(p, side[p]) for p in sorted(side, reverse=True))


class BookSnapshot:
    """An immutable view of one market's book at one moment.

    Attributes:
        market: market ticker.
        valid: False when the book was cleared (a gap, a reset, a disconnect) and
            has not been rebuilt yet; the ladders are then empty and `reason` says why.
        seq, clock: the sequence number and exchange clock of the last change applied.
        recv_ns: wall-clock receive time of the frame that made this state.
        conn, sid: the connection and server subscription the book came from.
    """

    __slots__ = (
        "_best_no",
        "_best_yes",
        "_no",
        "_no_sorted",
        "_yes",
        "_yes_sorted",
        "clock",
        "conn",
        "market",
        "reason",
        "recv_ns",
        "seq",
        "sid",
        "valid",
    )

    def __init__(
        self,
        market: str,
        yes: dict[Decimal, Decimal],
        no: dict[Decimal, Decimal],
        best_yes: Decimal | None,
        best_no: Decimal | None,
        *,
        seq: int | None,
        clock: int | None,
        recv_ns: int,
        conn: int,
        sid: int | None,
        valid: bool = True,
        reason: str | None = None,
    ) -> None:
        self.market = market
        self._yes = yes
        self._no = no
        self._best_yes = best_yes
        self._best_no = best_no
        self._yes_sorted: tuple[Level, ...] | None = None
        self._no_sorted: tuple[Level, ...] | None = None
        self.seq = seq
        self.clock = clock
        self.recv_ns = recv_ns
        self.conn = conn
        self.sid = sid
        self.valid = valid
        self.reason = reason

    # Ladders -------------------------------------------------------------------------

    @property
    def yes(self) -> Mapping[Decimal, Decimal]:
        """YES bids, price -> size (read-only)."""
        return MappingProxyType(self._yes)

    @property
    def no(self) -> Mapping[Decimal, Decimal]:
        """NO bids in NO-leg prices, price -> size (read-only)."""
        return MappingProxyType(self._no)

    @property
    def yes_bids(self) -> tuple[Level, ...]:
        """YES bids, best (highest) first."""
        if self._yes_sorted is None:
            self._yes_sorted = _sorted_desc(self._yes)
        return self._yes_sorted

    @property
    def no_bids(self) -> tuple[Level, ...]:
        """NO bids, best (highest) first."""
        if self._no_sorted is None:
            self._no_sorted = _sorted_desc(self._no)
        return self._no_sorted

    @property
    def yes_asks(self) -> tuple[Level, ...]:
        """Implied YES asks (1 - NO bid), best (lowest) first."""
        return tuple(Level(ONE - lv.price, lv.size) for lv in self.no_bids)

    @property
    def no_asks(self) -> tuple[Level, ...]:
        """Implied NO asks (1 - YES bid), best (lowest) first."""
        return tuple(Level(ONE - lv.price, lv.size) for lv in self.yes_bids)

    # Top of book ---------------------------------------------------------------------

    @property
    def best_yes_bid(self) -> Level | None:
        p = self._best_yes
        return None if p is None else Level(p, self._yes[p])

    @property
    def best_no_bid(self) -> Level | None:
        p = self._best_no
        return None if p is None else Level(p, self._no[p])

    @property
    def best_yes_ask(self) -> Level | None:
        """YES ask implied by the best NO bid: price 1 - bid, that bid's size."""
        p = self._best_no
        return None if p is None else Level(ONE - p, self._no[p])

    @property
    def best_no_ask(self) -> Level | None:
        p = self._best_yes
        return None if p is None else Level(ONE - p, self._yes[p])

    @property
    def spread(self) -> Decimal | None:
        """YES ask - YES bid, or None when a side is empty."""
        if self._best_yes is None or self._best_no is None:
            return None
        return ONE - self._best_no - self._best_yes

    @property
    def mid(self) -> Decimal | None:
        """Midpoint of the YES bid and the implied YES ask."""
        if self._best_yes is None or self._best_no is None:
            return None
        return (self._best_yes + ONE - self._best_no) / 2

    def depth(self, side: str, levels: int | None = None) -> Decimal:
        """Total resting size on one side ("yes" or "no"), over the best `levels` levels."""
        ladder = self.yes_bids if side == "yes" else self.no_bids if side == "no" else None
        if ladder is None:
            raise ValueError(f"side must be 'yes' or 'no', not {side!r}")
        return sum((lv.size for lv in ladder[:levels]), Decimal(0))

    def as_record(self) -> dict[str, object]:
        """The book as plain JSON-able data (prices and sizes as strings), for checkpoints."""
        return {
            "market": self.market,
            "seq": self.seq,
            "clock": self.clock,
            "conn": self.conn,
            "sid": self.sid,
            "yes": [[str(p), str(s)] for p, s in self.yes_bids],
            "no": [[str(p), str(s)] for p, s in self.no_bids],
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BookSnapshot):
            return NotImplemented
        return (
            self.market == other.market
            and self.valid == other.valid
            and self._yes == other._yes
            and self._no == other._no
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = "valid" if self.valid else f"invalid ({self.reason})"
        return (
            f"BookSnapshot({self.market!r}, {state}, seq={self.seq}, "
            f"yes={len(self._yes)} levels, no={len(self._no)} levels, "
            f"bid={self._best_yes}, ask={None if self._best_no is None else ONE - self._best_no})"
        )


_DIRTY = object()  # the best price must be recomputed


class OrderBook:
    """The mutable book of one market on one wire subscription (engine-internal)."""

    __slots__ = (
        "_best_no",
        "_best_yes",
        "_shared_no",
        "_shared_yes",
        "_snap",
        "clock",
        "conn",
        "market",
        "no",
        "recv_ns",
        "seq",
        "sid",
        "use_yes_price",
        "yes",
    )

    def __init__(self, market: str, conn: int, sid: int | None, use_yes_price: bool = False):
        self.market = market
        self.conn = conn
        self.sid = sid
        self.use_yes_price = use_yes_price
        self.yes: dict[Decimal, Decimal] = {}
        self.no: dict[Decimal, Decimal] = {}
        self._best_yes: object = None
        self._best_no: object = None
        self._shared_yes = False  # a handed-out snapshot references self.yes
        self._shared_no = False
        self._snap: BookSnapshot | None = None
        self.seq: int | None = None
        self.clock: int | None = None
        self.recv_ns = 0

    def reset(
        self,
        yes: Iterable[tuple[Decimal, Decimal]],
        no: Iterable[tuple[Decimal, Decimal]],
        *,
        seq: int | None,
        clock: int | None,
        recv_ns: int,
    ) -> None:
        """Replace the whole book with a snapshot's ladders (zero-size rows are skipped)."""
        self.yes = {p: q for p, q in yes if q > 0}
        if self.use_yes_price:
            self.no = {ONE - p: q for p, q in no if q > 0}
        else:
            self.no = {p: q for p, q in no if q > 0}
        self._best_yes = _DIRTY
        self._best_no = _DIRTY
        self._shared_yes = self._shared_no = False
        self._snap = None
        self.seq, self.clock, self.recv_ns = seq, clock, recv_ns

    def apply(
        self,
        is_yes: bool,
        price: Decimal,
        delta: Decimal,
        seq: int | None,
        clock: int | None,
        recv_ns: int,
    ) -> bool:
        """Add `delta` to one level. Returns False if nothing changed (a no-op delta)."""
        self._snap = None
        if is_yes:
            if self._shared_yes:
                self.yes = dict(self.yes)
                self._shared_yes = False
            side = self.yes
        else:
            if self._shared_no:
                self.no = dict(self.no)
                self._shared_no = False
            side = self.no
            if self.use_yes_price:
                price = ONE - price
        self.seq, self.clock, self.recv_ns = seq, clock, recv_ns
        old = side.get(price)
        if old is None:
            if delta <= 0:
                return False  # removing from an absent level: nothing rests there
            side[price] = delta
            best = self._best_yes if is_yes else self._best_no
            if best is not _DIRTY and (best is None or price > best):  # type: ignore[operator]
                if is_yes:
                    self._best_yes = price
                else:
                    self._best_no = price
            return True
        new = old + delta
        if new > 0:
            side[price] = new
            return True
        del side[price]
        if is_yes:
            if self._best_yes == price:
                self._best_yes = _DIRTY
        elif self._best_no == price:
            self._best_no = _DIRTY
        return True

    def _best(self, is_yes: bool) -> Decimal | None:
        best = self._best_yes if is_yes else self._best_no
        if best is _DIRTY:
            side = self.yes if is_yes else self.no
            best = max(side) if side else None
            if is_yes:
                self._best_yes = best
            else:
                self._best_no = best
        return best  # type: ignore[return-value]

    def snapshot(self) -> BookSnapshot:
        """An immutable view of the current state (cached until the next change)."""
        snap = self._snap
        if snap is None:
            snap = BookSnapshot(
                self.market,
                self.yes,
                self.no,
                self._best(True),
                self._best(False),
                seq=self.seq,
                clock=self.clock,
                recv_ns=self.recv_ns,
                conn=self.conn,
                sid=self.sid,
            )
            self._shared_yes = self._shared_no = True
            self._snap = snap
        return snap

    @staticmethod
    def invalid(
        market: str, *, reason: str, recv_ns: int, conn: int, sid: int | None
    ) -> BookSnapshot:
        """The snapshot consumers get when a book is cleared and not yet rebuilt."""
        return BookSnapshot(
            market,
            {},
            {},
            None,
            None,
            seq=None,
            clock=None,
            recv_ns=recv_ns,
            conn=conn,
            sid=sid,
            valid=False,
            reason=reason,
        )
