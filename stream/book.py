"""Order books: YES and NO bid ladders per market, and the immutable snapshots consumers get.

Book semantics (docs/protocol.md section 8.1): the book is bids only, one ladder
per side, price -> resting quantity. A snapshot replaces a book; a delta adds to
one level, and a level at or below zero disappears. Asks are implied: YES ask =
1 - best NO bid (with that bid's size), NO ask = 1 - best YES bid. With
`use_yes_price` the server quotes NO levels on the YES scale; they are converted
to NO-leg prices on the way in, so a book is always stored one way.

Exact and fast (`stream.fixed`): ladders hold integers in the wire's units, prices
in 1e-4 dollars and sizes in 1e-2 contracts, so a delta is integer arithmetic.
The public surface is exact Decimals in dollars and contracts, converted on
access (`yes`, `yes_bids`, `best_yes_bid`, `spread`...); the `*_units` accessors
hand out the integers themselves for consumers who want speed. A value finer than
the unit stays an exact Decimal in units (see `stream.fixed`); nothing is rounded.

Cost model (docs/performance.md section 4.4): a delta is a dict update, O(1); the best
bid is kept incrementally and recomputed (one `max`) only after the best level
itself empties; nothing is sorted or converted until a consumer asks. Snapshots
are copy-on-write: handing one out costs nothing, and the next change copies only
the side it touches, so an immutable view per update stays cheap.

This module knows nothing of frames, sequence numbers or subscriptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import NamedTuple

from stream.fixed import PRICE_SCALE, Units, price_decimal, size_decimal

__all__ = ["BookSnapshot", "Level", "LevelUnits", "OrderBook"]


class Level(NamedTuple):
    """One price level of a ladder: price in dollars, size in contracts (exact)."""

    price: Decimal
    size: Decimal


class LevelUnits(NamedTuple):
    """One price level in the wire's units: price in 1e-4 dollars, size in 1e-2 contracts.

    Both are ints, unless the exchange sent a value finer than the unit: then an
    exact Decimal in the same units (counted in `EngineStats.subunit_values`).
    """

    price: Units
    size: Units


Ladder = dict[Units, Units]


def _desc(side: Ladder) -> tuple[LevelUnits, ...]:
    return tuple(LevelUnits(p, side[p]) for p in sorted(side, reverse=True))


def _level(price: Units, size: Units) -> Level:
    return Level(price_decimal(price), size_decimal(size))


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
        yes: Ladder,
        no: Ladder,
        best_yes: Units | None,
        best_no: Units | None,
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
        self._yes_sorted: tuple[LevelUnits, ...] | None = None
        self._no_sorted: tuple[LevelUnits, ...] | None = None
        self.seq = seq
        self.clock = clock
        self.recv_ns = recv_ns
        self.conn = conn
        self.sid = sid
        self.valid = valid
        self.reason = reason

    # Ladders in units ------------------------------------------------------------------

    @property
    def yes_units(self) -> Mapping[Units, Units]:
        """YES bids in units, price -> size (read-only, no copy)."""
        return MappingProxyType(self._yes)

    @property
    def no_units(self) -> Mapping[Units, Units]:
        """NO bids in NO-leg prices, in units (read-only, no copy)."""
        return MappingProxyType(self._no)

    @property
    def yes_bids_units(self) -> tuple[LevelUnits, ...]:
        """YES bids in units, best (highest) first."""
        if self._yes_sorted is None:
            self._yes_sorted = _desc(self._yes)
        return self._yes_sorted

    @property
    def no_bids_units(self) -> tuple[LevelUnits, ...]:
        """NO bids in units, best (highest) first."""
        if self._no_sorted is None:
            self._no_sorted = _desc(self._no)
        return self._no_sorted

    @property
    def best_yes_bid_units(self) -> LevelUnits | None:
        p = self._best_yes
        return None if p is None else LevelUnits(p, self._yes[p])

    @property
    def best_no_bid_units(self) -> LevelUnits | None:
        p = self._best_no
        return None if p is None else LevelUnits(p, self._no[p])

    @property
    def best_yes_ask_units(self) -> LevelUnits | None:
        """YES ask implied by the best NO bid: PRICE_SCALE - bid, that bid's size."""
        p = self._best_no
        return None if p is None else LevelUnits(PRICE_SCALE - p, self._no[p])

    @property
    def best_no_ask_units(self) -> LevelUnits | None:
        p = self._best_yes
        return None if p is None else LevelUnits(PRICE_SCALE - p, self._yes[p])

    @property
    def spread_units(self) -> Units | None:
        """YES ask - YES bid in 1e-4 dollars, or None when a side is empty."""
        if self._best_yes is None or self._best_no is None:
            return None
        return PRICE_SCALE - self._best_no - self._best_yes

    # Ladders in dollars and contracts (exact Decimals, converted on access) -------------

    @property
    def yes(self) -> Mapping[Decimal, Decimal]:
        """YES bids, price -> size (a read-only copy in dollars and contracts)."""
        return MappingProxyType({price_decimal(p): size_decimal(q) for p, q in self._yes.items()})

    @property
    def no(self) -> Mapping[Decimal, Decimal]:
        """NO bids in NO-leg prices, price -> size (read-only, dollars and contracts)."""
        return MappingProxyType({price_decimal(p): size_decimal(q) for p, q in self._no.items()})

    @property
    def yes_bids(self) -> tuple[Level, ...]:
        """YES bids, best (highest) first."""
        return tuple(_level(p, q) for p, q in self.yes_bids_units)

    @property
    def no_bids(self) -> tuple[Level, ...]:
        """NO bids, best (highest) first."""
        return tuple(_level(p, q) for p, q in self.no_bids_units)

    @property
    def yes_asks(self) -> tuple[Level, ...]:
        """Implied YES asks (1 - NO bid), best (lowest) first."""
        return tuple(_level(PRICE_SCALE - p, q) for p, q in self.no_bids_units)

    @property
    def no_asks(self) -> tuple[Level, ...]:
        """Implied NO asks (1 - YES bid), best (lowest) first."""
        return tuple(_level(PRICE_SCALE - p, q) for p, q in self.yes_bids_units)

    # Top of book ---------------------------------------------------------------------

    @property
    def best_yes_bid(self) -> Level | None:
        p = self._best_yes
        return None if p is None else _level(p, self._yes[p])

    @property
    def best_no_bid(self) -> Level | None:
        p = self._best_no
        return None if p is None else _level(p, self._no[p])

    @property
    def best_yes_ask(self) -> Level | None:
        """YES ask implied by the best NO bid: price 1 - bid, that bid's size."""
        p = self._best_no
        return None if p is None else _level(PRICE_SCALE - p, self._no[p])

    @property
    def best_no_ask(self) -> Level | None:
        p = self._best_yes
        return None if p is None else _level(PRICE_SCALE - p, self._yes[p])

    @property
    def spread(self) -> Decimal | None:
        """YES ask - YES bid, or None when a side is empty."""
        spread = self.spread_units
        return None if spread is None else price_decimal(spread)

    @property
    def mid(self) -> Decimal | None:
        """Midpoint of the YES bid and the implied YES ask."""
        if self._best_yes is None or self._best_no is None:
            return None
        return price_decimal(self._best_yes + PRICE_SCALE - self._best_no) / 2

    def depth(self, side: str, levels: int | None = None) -> Decimal:
        """Total resting size on one side ("yes" or "no"), over the best `levels` levels."""
        ladder = (
            self.yes_bids_units if side == "yes" else self.no_bids_units if side == "no" else None
        )
        if ladder is None:
            raise ValueError(f"side must be 'yes' or 'no', not {side!r}")
        return size_decimal(sum(lv.size for lv in ladder[:levels]))

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
        bid = self.best_yes_bid
        ask = self.best_yes_ask
        return (
            f"BookSnapshot({self.market!r}, {state}, seq={self.seq}, "
            f"yes={len(self._yes)} levels, no={len(self._no)} levels, "
            f"bid={None if bid is None else bid.price}, ask={None if ask is None else ask.price})"
        )


_DIRTY = object()  # the best price must be recomputed


class OrderBook:
    """The mutable book of one market on one wire subscription (engine-internal).

    Prices and sizes are in units (`stream.fixed`); `use_yes_price` NO levels are
    converted to NO-leg prices by `reset` and `apply`.
    """

    __slots__ = (
        "_best_no",
        "_best_yes",
        "_shared_no",
        "_shared_yes",
        "_snap",
        "clock",
        "conn",
        "market",
        "market_id",
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
        self.yes: Ladder = {}
        self.no: Ladder = {}
        self._best_yes: object = None
        self._best_no: object = None
        self._shared_yes = False  # a handed-out snapshot references self.yes
        self._shared_no = False
        self._snap: BookSnapshot | None = None
        self.seq: int | None = None
        self.clock: int | None = None
        self.recv_ns = 0
        self.market_id: str | None = None  # the exchange's id of the market, once a snapshot says

    def reset(
        self, yes: Ladder, no: Ladder, *, seq: int | None, clock: int | None, recv_ns: int,
        market_id: str | None = None,
    ) -> None:  # fmt: skip
        """Replace the whole book with a snapshot's ladders (price -> size, sizes above
        zero). The book takes ownership of the dicts; `market_id`, when the snapshot
        gives it, is kept."""
        if market_id is not None:
            self.market_id = market_id
        self.yes = yes
        self.no = {PRICE_SCALE - p: q for p, q in no.items()} if self.use_yes_price else no
        self._best_yes = _DIRTY
        self._best_no = _DIRTY
        self._shared_yes = self._shared_no = False
        self._snap = None
        self.seq, self.clock, self.recv_ns = seq, clock, recv_ns

    def apply(
        self,
        is_yes: bool,
        price: Units,
        delta: Units,
        seq: int | None,
        clock: int | None,
        recv_ns: int,
    ) -> bool:
        """Add `delta` to one level. Returns False if nothing changed (a no-op delta)."""
        self._snap = None
        self.seq, self.clock, self.recv_ns = seq, clock, recv_ns
        if is_yes:
            if self._shared_yes:
                self.yes = dict(self.yes)
                self._shared_yes = False
            side = self.yes
            best = self._best_yes
        else:
            if self._shared_no:
                self.no = dict(self.no)
                self._shared_no = False
            side = self.no
            best = self._best_no
            if self.use_yes_price:
                price = PRICE_SCALE - price
        old = side.get(price)
        if old is None:
            if delta <= 0:
                return False  # removing from an absent level: nothing rests there
            side[price] = delta
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
        if best == price:
            if is_yes:
                self._best_yes = _DIRTY
            else:
                self._best_no = _DIRTY
        return True

    def _best(self, is_yes: bool) -> Units | None:
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
