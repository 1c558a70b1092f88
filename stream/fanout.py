"""Who receives each frame and book: targets, delivery into queues, and the ends of it.

A wire subscription delivers to its *targets*: its owner (a live consumer that
subscribed it) and every consumer attached to its channel, each filtered by
ticker. `Fanout` keeps those lists, puts frames (or fresh `BookSnapshot`s) into
the consumers' queues, turns a full queue into a wait (BLOCK) or a backpressure
error (ERROR, docs/protocol.md section 9.12), and owns the teardown consumers
must hear of: books cleared (an invalid snapshot to each book consumer), a
connection dropped, a consumer ended, the session closed.

While a group switches connections (make-before-break), delivery follows the
roles: the active connection delivers (de-duplicated against the other one by
payload), the standby's frames are held until the switch, and a retiring
connection delivers only what the new one has not. The hot path, an active
connection with no switch in progress, is kept flat.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stream.arbitration import Arbiter
from stream.book import OrderBook
from stream.connections import Connection
from stream.core import EngineCore
from stream.decode import msg_bytes
from stream.errors import BackpressureError
from stream.events import Fatal, Frame, StateChanged
from stream.queues import PUT_OVER, DeliveryQueue
from stream.state import ConnectionState
from stream.subscriptions import ConsumerSubscription, Delivery, WireSubscription

__all__ = ["Fanout"]

_BOOK = Delivery.BOOK


class Fanout:
    """Delivery to consumers, for one engine (see the module docstring)."""

    __slots__ = ("_core", "_max_held", "arbiter")

    def __init__(self, core: EngineCore) -> None:
        self._core = core
        self._max_held = core.config.max_held_frames
        self.arbiter: Arbiter | None = None  # set by the engine: delivery across feeds

    # ------------------------------------------------------------------ targets

    def retarget(self, channel: str) -> None:
        """Recompute the targets of every wire subscription of a channel."""
        for conn in self._core.conns.values():
            for wire in conn.sids.values():
                if wire.channel == channel:
                    self.target(wire)

    def target(self, wire: WireSubscription) -> None:
        """Who receives a wire subscription's frames: its owner and the attached consumers.

        Muted (a seek's fast-forward), a book wire has none: book consumers get the
        current book when the engine unmutes, and a book's delivery remembers nothing.
        Other wires keep theirs, and their frames go through delivery as live, which
        remembers (copies across feeds, a standby's held frames, what a connection
        delivered); only `put` drops them."""
        if self._core.muted and wire.is_book:
            wire.targets = []
            return
        targets = []
        owner = wire.owner
        if owner is not None and owner.active and owner.queue is not None:
            targets.append(owner)
        targets.extend(self._core.attached.get(wire.channel, ()))
        wire.targets = targets

    # ------------------------------------------------------------------ delivery

    def deliver(self, wire: WireSubscription, frame: Frame, book: OrderBook | None) -> None:
        """Put a frame (or the book it changed) into the queues of the wire's targets."""
        core = self._core
        if not core.overlap and wire.conn in core.active_ids:
            # The common case, kept flat: an active connection, no switch in progress.
            if core.muted:  # nothing here to remember
                return
            market = frame.market_ticker
            for consumer in wire.targets:
                tickers = consumer.tickers
                if tickers is not None and market is not None and market not in tickers:
                    continue
                if consumer.delivery is _BOOK:
                    if book is None:
                        continue
                    status = consumer.queue.put(book.snapshot())  # type: ignore[union-attr]
                else:
                    status = consumer.queue.put(frame)  # type: ignore[union-attr]
                if status:
                    self._queue_status(consumer, status)
            return
        self._deliver_during_switch(wire, frame, book)

    def _deliver_during_switch(
        self, wire: WireSubscription, frame: Frame, book: OrderBook | None
    ) -> None:
        """Delivery while some group has a standby or a retiring connection."""
        conn = self._core.conns.get(wire.conn)
        if conn is None:
            return
        group = conn.group
        market = frame.market_ticker
        targets = [
            c for c in wire.targets if c.tickers is None or market is None or market in c.tickers
        ]
        arbiter = self.arbiter if self._core.arbitrating else None
        if arbiter is not None and group.active is conn:
            arbiter.deliver(conn, wire, frame, book, targets)
        elif group.active is conn:
            overlap = group.standby is not None or bool(group.retiring)
            for consumer in targets:
                if overlap and not wire.is_book and self.seen_before(consumer, frame):
                    continue
                if consumer.delivery is _BOOK:
                    if book is not None:
                        self.put(consumer, book.snapshot())
                else:
                    self.put(consumer, frame)
        elif group.standby is conn:
            for consumer in targets:
                if len(consumer.held) < self._max_held:
                    consumer.held.append(frame)
        elif wire.conn in group.retiring and not wire.is_book:
            # Still arriving on the connection we switched away from: deliver what the new
            # connection has not already delivered.
            if arbiter is not None:
                if arbiter.first_copy(frame):
                    for consumer in targets:
                        if consumer.delivery is not _BOOK:
                            self.put(consumer, frame)
                return
            for consumer in targets:
                if consumer.delivery is not _BOOK and not self.seen_before(consumer, frame):
                    self.put(consumer, frame)

    @staticmethod
    def seen_before(consumer: ConsumerSubscription, frame: Frame) -> bool:
        """De-duplicate across two connections of one group by payload (type and msg bytes)."""
        seen = consumer.seen
        if seen is None:
            seen = consumer.seen = set()
        digest = hash((frame.type, msg_bytes(frame.raw)))
        if digest in seen:
            return True
        seen.add(digest)
        return False

    def put(self, consumer: ConsumerSubscription, item: Any) -> None:
        """Queue one item for one consumer, minding its overflow policy (none while muted)."""
        queue = consumer.queue
        if queue is not None and not self._core.muted:
            status = queue.put(item)
            if status:
                self._queue_status(consumer, status)

    def _queue_status(self, consumer: ConsumerSubscription, status: int) -> None:
        queue = consumer.queue
        assert queue is not None
        if status == PUT_OVER:
            self._core.blocking.append(queue)
        elif not queue.closed:
            self._backpressure(consumer, queue)

    def _backpressure(self, consumer: ConsumerSubscription, queue: DeliveryQueue) -> None:
        """An ERROR queue overflowed: the session cannot go on half-alive (or, configured
        so, that consumer alone ends)."""
        core = self._core
        fatal = core.config.backpressure_fatal
        error = BackpressureError(consumer.channel, queue.maxsize, fatal=fatal)
        recv_ns, mono_ns = core.now
        last = queue.last_item()
        if isinstance(last, Frame):
            recv_ns, mono_ns = last.recv_ns, last.mono_ns
        core.report("backpressure", str(error), recv_ns, None, None, consumer.channel)
        if not fatal:
            self.end_consumer(consumer, error)
            return
        core.fatal = error
        core.outbox.append(Fatal(error))
        self.close_session(recv_ns, mono_ns, error)

    # ------------------------------------------------------------------ books and teardown

    def clear_books(
        self,
        wire: WireSubscription,
        reason: str,
        recv_ns: int,
        *,
        notify: bool,
        keep_owner: bool = False,
    ) -> None:
        """Drop a wire subscription's books; tell book consumers unless told not to.

        Across feeds, the markets the wire's feed owned move to another feed's valid
        book first (`stream.arbitration`), and only those left without one are invalid;
        `keep_owner`: the feed keeps them (its standby is taking over)."""
        if not wire.books:
            return
        # In market order, not the books' (arrival live, market order once restored from a
        # checkpoint): a seek delivers what a pass from the capture's start does.
        markets = sorted(wire.books)
        if self._core.arbitrating and self.arbiter is not None and wire.is_book:
            conn = self._core.conns.get(wire.conn)
            if conn is not None and conn.group.active is conn and not keep_owner:
                markets = self.arbiter.release(conn.group, wire, markets, reason, recv_ns)
            else:
                markets = []
            # A market no feed holds a valid book of is invalid, and its consumers hear
            # it even where one feed's end goes unsaid (a run that ended: the others go on).
            notify = bool(markets)
        wire.books = {}
        if not notify:
            return
        muted = self._core.muted
        for market in markets:
            invalid = OrderBook.invalid(
                market, reason=reason, recv_ns=recv_ns, conn=wire.conn, sid=wire.sid
            )
            if muted:  # a seek's fast-forward: told at its end unless rebuilt by then
                self._core.cleared[wire.channel, market] = (invalid, wire.owner)
            self.put_book(wire.targets, market, invalid)

    def put_book(self, consumers: Iterable[ConsumerSubscription], market: str, book: Any) -> None:
        """Queue `book` (of `market`) for each book consumer among `consumers` that takes it."""
        for consumer in consumers:
            if consumer.delivery is _BOOK and (
                consumer.tickers is None or market in consumer.tickers
            ):
                self.put(consumer, book)

    def drop_conn(
        self, conn: Connection, reason: str, recv_ns: int, *, notify: bool,
        keep_owner: bool = False,
    ) -> None:  # fmt: skip
        """Forget a connection and everything it owned (sids, seq state, books, stash)."""
        core = self._core
        for wire in conn.wires():
            self.clear_books(wire, reason, recv_ns, notify=notify, keep_owner=keep_owner)
            wire.targets = []
        core.conns.pop(conn.conn, None)
        conn.sids.clear()
        conn.pending.clear()
        conn.stash.clear()
        stale = [
            cmd_id
            for cmd_id, (_, intent) in core.intents.items()
            if isinstance(intent, WireSubscription) and intent.conn == conn.conn
        ]
        for cmd_id in stale:
            del core.intents[cmd_id]

    def end_consumer(self, consumer: ConsumerSubscription, error: BaseException | None) -> None:
        """End one consumer's stream (its iterator raises `error` after what is queued)."""
        core = self._core
        consumer.active = False
        core.consumers.pop(consumer.cid, None)
        attached = core.attached.get(consumer.channel, [])
        if consumer in attached:
            attached.remove(consumer)
        if consumer.queue is not None:
            consumer.queue.close(error)

    def close_session(self, recv_ns: int, mono_ns: int, error: BaseException | None = None) -> None:
        """The session is over (shutdown, or the edge gave up): end every consumer."""
        core = self._core
        core.arbitrating = False  # the end of every feed at once: no market moves
        for conn in list(core.conns.values()):
            self.drop_conn(conn, "closed", recv_ns, notify=False)
        for group in core.groups.values():
            group.active = group.standby = None
            group.retiring.clear()
        core.roles_changed()
        for consumer in list(core.consumers.values()):
            if consumer.queue is not None:
                consumer.queue.close(error)
        if core.state is not ConnectionState.CLOSED:
            old, core.state = core.state, ConnectionState.CLOSED
            core.outbox.append(StateChanged(old, ConnectionState.CLOSED, recv_ns, mono_ns))
