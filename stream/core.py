"""The engine's state and the parts every handler shares: roles, delivery, outputs.

`Engine` (stream.engine) is assembled from this core and two handler mixins:
`stream.frames` (data and book frames, sequence, resync) and `stream.control`
(acks, replies, errors, commands sent). This module owns the state they share:
connections and groups, consumers, the outbox, and the delivery path that puts
frames into consumer queues. It knows nothing of sockets, files or clocks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from schemas.envelope import encode_json
from stream.book import OrderBook
from stream.connections import Connection, Group, aggregate_state
from stream.decode import msg_bytes
from stream.errors import BackpressureError
from stream.events import ErrorReport, Fatal, Frame, Output, SendCommand, StateChanged
from stream.queues import PUT_OVER, DeliveryQueue
from stream.state import ConnectionState, check_transition
from stream.subscriptions import ConsumerSubscription, Delivery, WireSubscription

__all__ = ["NS", "EngineConfig", "EngineCore", "EngineStats"]

NS = 1_000_000_000
_BOOK = Delivery.BOOK


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Tunables of the engine. Times are seconds here, nanoseconds inside."""

    first_seq: int | None = 1  # seq of a subscription's first frame; None accepts any
    stash_maxlen: int = 1000  # frames kept per unknown sid while a subscribe awaits its ack
    ack_timeout_s: float = 10.0  # a subscribe with no ack fails after this
    resync_timeout_s: float = 5.0  # a get_snapshot with no reply falls back to resubscribe
    standby_timeout_s: float = 30.0  # a make-before-break standby not ready by then is dropped
    checkpoint_interval_s: float | None = None  # checkpoint each active connection this often
    max_held_frames: int = 200_000  # bound on frames held per consumer during an overlap
    #: An ERROR queue that overflows closes the whole session (the default:
    #: docs/protocol.md section 9.12, no half-alive session). False ends only that consumer,
    #: with the error in its iterator: what a recorder wants, whose capture must not stop
    #: for a slow reader.
    backpressure_fatal: bool = True


@dataclass(slots=True)
class EngineStats:
    """Counters of what the engine did; the live edge adds them to its statistics."""

    frames: int = 0
    duplicates: int = 0
    gaps: int = 0
    resets: int = 0
    resyncs: int = 0
    malformed: int = 0
    unknown_types: int = 0
    stale_frames: int = 0  # frames for retired sids or closed connections
    stashed: int = 0
    stash_evicted: int = 0
    unrouted: int = 0
    dropped_no_book: int = 0
    switches: int = 0


class EngineCore:
    """State shared by the engine's handlers, and delivery."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.state = ConnectionState.DISCONNECTED
        self.outbox: deque[Output] = deque()
        self.stats = EngineStats()
        self._conns: dict[int, Connection] = {}
        self._groups: dict[int, Group] = {}
        self._active_ids: set[int] = set()  # derived for the hot path: see _roles_changed
        self._overlap = False
        self._consumers: dict[int, ConsumerSubscription] = {}
        self._attached: dict[str, list[ConsumerSubscription]] = {}
        self._intents: dict[int, tuple[str, ConsumerSubscription | WireSubscription | None]] = {}
        self._next_cid = 1
        self._next_cmd_id = 1
        self._fatal: BaseException | None = None
        self._blocking: list[DeliveryQueue] = []
        self._muted = False  # replay fast-forward: state advances, nothing is delivered
        self._now = (0, 0)  # time of the latest non-frame input, for outputs raised deep inside
        interval = self.config.checkpoint_interval_s
        self._checkpoint_ns = None if interval is None else int(interval * NS)
        first = self.config.first_seq
        self._first_last = None if first is None else first - 1  # the "last seq" before any

    # ------------------------------------------------------------------ groups and roles

    def _group(self, group_id: int) -> Group:
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = Group(group_id)
        return group

    def _roles_changed(self) -> None:
        """Recompute what the hot path reads: active connections, and whether any group is
        in a make-before-break overlap. Call after every change of a group's roles."""
        self._active_ids = {g.active.conn for g in self._groups.values() if g.active is not None}
        self._overlap = any(g.standby is not None or g.retiring for g in self._groups.values())

    def _is_active(self, conn: Connection) -> bool:
        return conn.group.active is conn

    def _set_group_state(
        self, group: Group, new: ConnectionState, recv_ns: int, mono_ns: int
    ) -> None:
        """Move one group through the state table; report the session's aggregate state."""
        if group.state == new:
            return
        check_transition(group.state, new)
        group.state = new
        self._publish_state(aggregate_state(list(self._groups.values())), recv_ns, mono_ns)

    def _publish_state(self, new: ConnectionState, recv_ns: int, mono_ns: int) -> None:
        old = self.state
        if old is ConnectionState.CLOSED or old == new:
            return
        self.state = new
        self.outbox.append(StateChanged(old, new, recv_ns, mono_ns))

    # ------------------------------------------------------------------ outputs

    def _report(
        self,
        kind: str,
        message: str,
        recv_ns: int,
        conn: int | None = None,
        sid: int | None = None,
        channel: str | None = None,
        *,
        code: int | None = None,
        raw: bytes | None = None,
    ) -> None:
        self.outbox.append(ErrorReport(kind, message, recv_ns, conn, sid, channel, code, raw))

    def _command(
        self,
        conn: Connection,
        name: str,
        params: dict[str, Any] | None,
        reason: str,
        intent: ConsumerSubscription | WireSubscription | None = None,
    ) -> int:
        """Ask the edge to send a command. Its effects happen when `command_sent` reports it."""
        cmd_id = self._next_cmd_id
        self._next_cmd_id += 1
        body: dict[str, Any] = {"id": cmd_id, "cmd": name}
        if params is not None:
            body["params"] = params
        self._intents[cmd_id] = (reason, intent)
        self.outbox.append(SendCommand(conn.conn, encode_json(body), name, cmd_id, reason))
        return cmd_id

    def _subscribe(self, conn: Connection, consumer: ConsumerSubscription, reason: str) -> None:
        params: dict[str, Any] = {"channels": [consumer.channel], **consumer.params}
        if reason == "resubscribe" and consumer.channel == "ticker":
            params["send_initial_snapshot"] = True  # fresh state after a reconnect
        consumer.subscribed_once = True
        self._command(conn, "subscribe", params, reason, consumer)

    # ------------------------------------------------------------------ delivery

    def _retarget(self, channel: str) -> None:
        for conn in self._conns.values():
            for wire in conn.sids.values():
                if wire.channel == channel:
                    self._target(wire)

    def _target(self, wire: WireSubscription) -> None:
        """Who receives a wire subscription's frames: its owner and the attached consumers."""
        if self._muted:
            wire.targets = []
            return
        targets = []
        owner = wire.owner
        if owner is not None and owner.active and owner.queue is not None:
            targets.append(owner)
        targets.extend(self._attached.get(wire.channel, ()))
        wire.targets = targets

    def _deliver(self, wire: WireSubscription, frame: Frame, book: OrderBook | None) -> None:
        if not self._overlap and wire.conn in self._active_ids:
            # The common case, kept flat: an active connection, no switch in progress.
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
        conn = self._conns.get(wire.conn)
        if conn is None:
            return
        group = conn.group
        market = frame.market_ticker
        targets = [
            c for c in wire.targets if c.tickers is None or market is None or market in c.tickers
        ]
        if group.active is conn:
            overlap = group.standby is not None or bool(group.retiring)
            for consumer in targets:
                if overlap and not wire.is_book and self._seen_before(consumer, frame):
                    continue
                if consumer.delivery is _BOOK:
                    if book is not None:
                        self._put(consumer, book.snapshot())
                else:
                    self._put(consumer, frame)
        elif group.standby is conn:
            for consumer in targets:
                if len(consumer.held) < self.config.max_held_frames:
                    consumer.held.append(frame)
        elif wire.conn in group.retiring and not wire.is_book:
            # Still arriving on the connection we switched away from: deliver what the new
            # connection has not already delivered.
            for consumer in targets:
                if consumer.delivery is not _BOOK and not self._seen_before(consumer, frame):
                    self._put(consumer, frame)

    def _seen_before(self, consumer: ConsumerSubscription, frame: Frame) -> bool:
        """De-duplicate across two connections of one group by payload (type and msg bytes)."""
        seen = consumer.seen
        if seen is None:
            seen = consumer.seen = set()
        digest = hash((frame.type, msg_bytes(frame.raw)))
        if digest in seen:
            return True
        seen.add(digest)
        return False

    def _put(self, consumer: ConsumerSubscription, item: Any) -> None:
        queue = consumer.queue
        if queue is not None:
            status = queue.put(item)
            if status:
                self._queue_status(consumer, status)

    def _queue_status(self, consumer: ConsumerSubscription, status: int) -> None:
        queue = consumer.queue
        assert queue is not None
        if status == PUT_OVER:
            self._blocking.append(queue)
        elif not queue.closed:
            self._backpressure(consumer, queue)

    def _backpressure(self, consumer: ConsumerSubscription, queue: DeliveryQueue) -> None:
        """An ERROR queue overflowed: the session cannot go on half-alive
        (docs/protocol.md section 9.12)."""
        error = BackpressureError(
            consumer.channel, queue.maxsize, fatal=self.config.backpressure_fatal
        )
        recv_ns, mono_ns = self._now
        last = queue.last_item()
        if isinstance(last, Frame):
            recv_ns, mono_ns = last.recv_ns, last.mono_ns
        self._report("backpressure", str(error), recv_ns, None, None, consumer.channel)
        if not self.config.backpressure_fatal:
            self._end_consumer(consumer, error)
            return
        self._fatal = error
        self.outbox.append(Fatal(error))
        self.session_closed(recv_ns, mono_ns, error)

    def session_closed(
        self, recv_ns: int, mono_ns: int, error: BaseException | None = None
    ) -> None:
        """The session is over (shutdown, or the edge gave up): end every consumer."""
        for conn in list(self._conns.values()):
            self._drop_conn(conn, "closed", recv_ns, notify=False)
        for group in self._groups.values():
            group.active = group.standby = None
            group.retiring.clear()
        self._roles_changed()
        for consumer in list(self._consumers.values()):
            if consumer.queue is not None:
                consumer.queue.close(error)
        if self.state is not ConnectionState.CLOSED:
            old, self.state = self.state, ConnectionState.CLOSED
            self.outbox.append(StateChanged(old, ConnectionState.CLOSED, recv_ns, mono_ns))

    # ------------------------------------------------------------------ books and teardown

    def _clear_books(
        self, wire: WireSubscription, reason: str, recv_ns: int, *, notify: bool
    ) -> None:
        """Drop a wire subscription's books; tell book consumers unless told not to."""
        if not wire.books:
            return
        books, wire.books = wire.books, {}
        if not notify:
            return
        for market in books:
            invalid = OrderBook.invalid(
                market, reason=reason, recv_ns=recv_ns, conn=wire.conn, sid=wire.sid
            )
            for consumer in wire.targets:
                if consumer.delivery is _BOOK and (
                    consumer.tickers is None or market in consumer.tickers
                ):
                    self._put(consumer, invalid)

    def _drop_conn(self, conn: Connection, reason: str, recv_ns: int, *, notify: bool) -> None:
        """Forget a connection and everything it owned (sids, seq state, books, stash)."""
        self._conns.pop(conn.conn, None)
        for wire in conn.wires():
            self._clear_books(wire, reason, recv_ns, notify=notify)
            wire.targets = []
        conn.sids.clear()
        conn.pending.clear()
        conn.stash.clear()
        stale = [
            cmd_id
            for cmd_id, (_, intent) in self._intents.items()
            if isinstance(intent, WireSubscription) and intent.conn == conn.conn
        ]
        for cmd_id in stale:
            del self._intents[cmd_id]

    def _end_consumer(self, consumer: ConsumerSubscription, error: BaseException | None) -> None:
        consumer.active = False
        self._consumers.pop(consumer.cid, None)
        attached = self._attached.get(consumer.channel, [])
        if consumer in attached:
            attached.remove(consumer)
        if consumer.queue is not None:
            consumer.queue.close(error)
