"""Redundant feeds: two or more connections that carry the same subscriptions, one tape.

A *feed* is a group (`stream.connections.Group`) that carries the same channels and
markets as the other feeds of the session, each with its own connections and
reconnects: a live session opened with `feeds=2`, or a capture recorded so (or
merged from two hosts' captures). Once a group of feed 1 or above exists the engine
*arbitrates*, and consumers see one stream as if there were one feed:

- Every message once. A non-book message (a trade, a ticker update, a lifecycle
  event...) is delivered from whichever feed brings it first; the copies the other
  feeds bring later are dropped. Trades are the same message when their trade_id
  is; other messages when their type and `msg` payload are. A connection that sends
  the same message twice delivers it twice, as one feed would: copies are counted
  per connection, and a copy is delivered when its connection has now brought it
  more often than any other (so a feed's make-before-break standby is
  de-duplicated the same way). Copies are remembered for `EngineConfig.dedup_window_s` of
  receive time.
- Each market's book from one *owner* feed at a time. A snapshot makes a feed's
  book valid; the first valid book of a market makes its feed the owner. When the
  owner's book breaks (a gap or reset, its connection lost, its run ended), the
  market moves at once to another feed whose book is valid, if one is: book
  consumers get that feed's current book, raw-frame consumers a snapshot frame
  built from it (`snapshot_frame`), and an `Arbitrated` output names both feeds.
  Only when no feed holds a valid book does the market's book go invalid (the
  usual invalid snapshot, and `Arbitrated(to_feed=None)`); the next feed to get a
  snapshot owns it from then on (`Arbitrated(from_feed=None)`). A feed that
  resyncs while another owns the market does not take it back: no flapping.

Every decision is taken on an input a capture records (a frame, a connection
event, the end of a run), so a replay of a redundant capture arbitrates exactly as
the live session did. Within one feed, make-before-break (`stream.switching`)
works as before: a feed's standby replaces its active connection, and the
market stays with that feed.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from schemas.envelope import encode_json
from stream.book import OrderBook
from stream.connections import Connection, Group
from stream.core import NS, EngineCore
from stream.decode import msg_bytes
from stream.events import Arbitrated, Frame
from stream.fixed import PRICE_SCALE, format_price, format_size
from stream.subscriptions import ConsumerSubscription, Delivery, WireSubscription

__all__ = ["Arbiter", "Copies", "CopyMemory", "message_key", "snapshot_frame"]

_BOOK = Delivery.BOOK
_TRADE_ID = b'"trade_id":'


def message_key(type_: str | None, raw: bytes) -> Any:
    """What makes two frames of different feeds the same message (of type `type_`)."""
    if type_ == "trade":
        at = raw.find(_TRADE_ID)
        if at >= 0:
            end = raw.find(b",", at)
            return ("trade", raw[at + len(_TRADE_ID) : end if end >= 0 else len(raw)].strip())
    try:
        return (type_, hash(msg_bytes(raw)))
    except Exception:
        return (type_, hash(bytes(raw)))


def snapshot_frame(wire: WireSubscription, book: OrderBook, mono_ns: int) -> Frame:
    """An `orderbook_snapshot` frame of a book's current state, for raw-frame consumers
    whose market moved to this feed: its bytes are built here, not received (the
    book's own seq, sid and connection; NO bids on the subscription's own scale)."""
    no = book.no
    if wire.use_yes_price:
        no = {PRICE_SCALE - p: q for p, q in no.items()}
    # `market_id` always present (null where no snapshot gave it): the message's model
    # requires the key, so that model and struct consumers get the frame too
    msg: dict[str, Any] = {"market_ticker": book.market, "market_id": book.market_id}
    if book.clock is not None:
        msg["clock"] = book.clock
    for key, side in (("yes_dollars_fp", book.yes), ("no_dollars_fp", no)):
        if side:  # an empty side's key is absent, as the exchange sends it
            msg[key] = [[format_price(p), format_size(q)] for p, q in sorted(side.items())]
    body: dict[str, Any] = {"type": "orderbook_snapshot", "sid": wire.sid, "seq": book.seq,
                            "msg": msg}  # fmt: skip
    return Frame(
        encode_json(body), book.recv_ns, mono_ns, wire.conn, wire.channel, "orderbook_snapshot",
        wire.sid, book.seq, book.market,
    )  # fmt: skip


class CopyMemory(Protocol):
    """What the arbiter counts message copies with (`Copies`)."""

    def count(self, key: Any, conn: int, recv_ns: int) -> bool: ...


class Copies:
    """The copies of each message the connections brought, remembered for `window_ns` of
    receive time: a copy is to be delivered when its connection has now brought the
    message more often than any other connection has."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        # message key -> [copies delivered, {connection: copies it brought}]
        self._seen: dict[Any, list[Any]] = {}
        self._order: deque[tuple[int, Any]] = deque()  # (recv_ns, key), oldest first

    def count(self, key: Any, conn: int, recv_ns: int) -> bool:
        """Count a copy of the message `key` (`message_key`) that connection `conn` brought
        at `recv_ns`; True if it is to be delivered. A new key forgets the keys first seen
        before `recv_ns - window_ns`, oldest first, up to the first that is not."""
        entry = self._seen.get(key)
        if entry is None:
            self._seen[key] = [1, {conn: 1}]
            order = self._order
            order.append((recv_ns, key))
            horizon = recv_ns - self.window_ns
            while order and order[0][0] < horizon:
                self._seen.pop(order.popleft()[1], None)
            return True
        copies = entry[1]
        n = copies[conn] = copies.get(conn, 0) + 1
        if n > entry[0]:
            entry[0] = n
            return True
        return False

    def replay_into(self, memory: CopyMemory) -> None:
        """Count every copy remembered here into another memory (the derive's compiled
        one), oldest key first: from then on it answers as this one would have."""
        for recv_ns, key in self._order:  # (the keys of `_seen`, forgotten together)
            for conn, n in self._seen[key][1].items():
                for _ in range(n):
                    memory.count(key, conn, recv_ns)


class Arbiter:
    """Arbitration between the feeds of one engine (see the module docstring).

    Attributes:
        owners: market -> the id of the group (feed) its book is delivered from.
        lost: markets whose book went invalid on every feed and is not yet back.
        switches: markets moved from one feed to another.
    """

    __slots__ = ("_core", "_fanout", "copies", "lost", "owners", "switches")

    def __init__(self, core: EngineCore, fanout: Any) -> None:
        self._core = core
        self._fanout = fanout
        self.owners: dict[str, int] = {}
        self.lost: set[str] = set()
        self.switches = 0
        #: the copies of each message the connections brought (another memory with the
        #: same rule may replace it: the datasets' compiled one)
        self.copies: CopyMemory = Copies(int(core.config.dedup_window_s * NS))

    # ------------------------------------------------------------------ delivery

    def deliver(
        self, conn: Connection, wire: WireSubscription, frame: Frame, book: OrderBook | None,
        targets: list[ConsumerSubscription],
    ) -> None:  # fmt: skip
        """Deliver a frame of a feed's active connection, once for all feeds."""
        if wire.is_book:
            market = frame.market_ticker
            if market is None or book is None or self.owners.get(market) != conn.group.id:
                return
            for consumer in targets:
                self._fanout.put(consumer, book.snapshot() if consumer.delivery is _BOOK
                                 else frame)  # fmt: skip
            return
        if not self.first_copy(frame):
            return
        for consumer in targets:
            if consumer.delivery is not _BOOK:
                self._fanout.put(consumer, frame)

    def first_copy(self, frame: Frame) -> bool:
        """Count a copy of a message on its connection; True if it is to be delivered
        (its connection has now brought it more often than any other)."""
        return self.copies.count(message_key(frame.type, frame.raw), frame.conn, frame.recv_ns)

    # ------------------------------------------------------------------ ownership

    def snapshot_applied(
        self, conn: Connection, wire: WireSubscription, market: str, recv_ns: int, mono_ns: int
    ) -> None:
        """A feed's book of `market` became valid: it owns the market if nobody does."""
        if market in self.owners or conn.group.active is not conn:
            return
        self.owners[market] = conn.group.id
        if market in self.lost:
            self.lost.discard(market)
            self._core.outbox.append(
                Arbitrated(market, None, conn.group.feed, "resynced", recv_ns, mono_ns)
            )

    def release(
        self, group: Group, wire: WireSubscription, markets: list[str], reason: str, recv_ns: int
    ) -> list[str]:
        """`group`'s books of `markets` on `wire` are about to be dropped: move each market
        it owns to another feed with a valid book. Returns the markets left without a
        valid book on any feed (their consumers are to be told the book is invalid)."""
        core = self._core
        mono_ns = core.now[1]
        invalid = []
        for market in markets:
            if self.owners.get(market) != group.id:
                continue
            found = self._valid_elsewhere(group, wire.channel, market)
            if found is None:
                del self.owners[market]
                self.lost.add(market)
                invalid.append(market)
                core.outbox.append(Arbitrated(market, group.feed, None, reason, recv_ns, mono_ns))
                continue
            other, other_wire, book = found
            self.owners[market] = other.id
            self.switches += 1
            core.outbox.append(Arbitrated(market, group.feed, other.feed, reason, recv_ns, mono_ns))
            self._hand_over(other_wire, book, mono_ns)
        return invalid

    def _valid_elsewhere(
        self, group: Group, channel: str, market: str
    ) -> tuple[Group, WireSubscription, OrderBook] | None:
        """The lowest-numbered other feed whose active connection holds a valid book."""
        best = None
        for other in self._core.groups.values():
            conn = other.active
            if other is group or conn is None:
                continue
            for wire in conn.sids.values():
                book = wire.books.get(market)
                if wire.channel == channel and book is not None:
                    if best is None or (other.feed or 0) < (best[0].feed or 0):
                        best = (other, wire, book)
                    break
        return best

    def _hand_over(self, wire: WireSubscription, book: OrderBook, mono_ns: int) -> None:
        """Give the targets of the new owner's wire the market's current state."""
        market = book.market
        frame = None
        for consumer in wire.targets:
            if consumer.tickers is not None and market not in consumer.tickers:
                continue
            if consumer.delivery is _BOOK:
                self._fanout.put(consumer, book.snapshot())
            else:
                if frame is None:
                    frame = snapshot_frame(wire, book, mono_ns)
                self._fanout.put(consumer, frame)

    def owned_by(self, group: Group) -> list[str]:
        """The markets whose book is delivered from `group` (a checkpoint records them)."""
        return [market for market, owner in self.owners.items() if owner == group.id]

    def deliver_from(self, group: Group, markets: list[str]) -> None:
        """Deliver `markets` from `group` (a seek restoring where each market was
        delivered from live, `Engine.restore_checkpoint`)."""
        for market in markets:
            self.owners[market] = group.id
            self.lost.discard(market)

    def owns(self, group: Group, market: str) -> bool:
        """True if `market`'s book is delivered from `group`, or nobody's is (it may be)."""
        owner = self.owners.get(market)
        return owner is None or owner == group.id
