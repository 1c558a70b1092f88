"""The sans-I/O engine: frames and connection events in, deliveries and commands out.

Theory of operation. The edge (a live socket or a capture reader) calls one input
method per thing that happened, with the time it happened:

    frame_received(raw, recv_ns, mono_ns, conn)    a server frame, bytes exact
    command_sent(raw, recv_ns, mono_ns, conn)       a command that really went out
    connection_attempt / connection_opened / connection_closed / session_closed
    tick(recv_ns, mono_ns)                          time passes (timeouts, checkpoints)

and the session calls add_consumer / remove_consumer / update_consumer / list.
Deliveries go straight into consumer queues; everything else is appended to
`outbox` (commands to send, state changes, error reports, gaps, switches,
checkpoints). The engine owns no socket, no file, no clock and no event loop.

Decisions that change what consumers see are taken only from inputs that a
capture records (frames, sent commands, connection events), never from timers,
so a replay of a capture takes exactly the decisions the live engine took. Timers
only ask the edge to do something (send a command, close a connection); the edge
records what it did, and that record is what changes the state.

Sequence rules (PROTOCOL.md "seq summary" and behaviours 1-5): per wire
subscription on every sequenced channel, in-order frames pass, a duplicate is
dropped, a gap or a reset is reported; on a book channel the frame is dropped,
the subscription's books are cleared and a snapshot is requested (get_snapshot,
falling back to unsubscribe + subscribe). On other channels the frame after a
gap is delivered (dropping a valid trade cannot bring back the lost one), and a
frame with a lower seq is dropped. A malformed book frame never moves the
watermark, so the next good frame shows the gap.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec

from schemas.channels import (
    BOOK_CHANNELS,
    MARKET_FILTER_CHANNELS,
    SEQUENCED_CHANNELS,
    Channel,
    channel_of_type,
)
from schemas.envelope import decode_envelope, encode_json
from schemas.errors import EnvelopeError
from stream.book import OrderBook
from stream.decode import (
    FRAME_TAGS,
    DeltaFrame,
    ErrorFrame,
    OkFrame,
    SnapshotFrame,
    SubscribedFrame,
    UnsubscribedFrame,
    decode_command,
    decode_frame,
    delta_fields,
    msg_bytes,
    snapshot_levels,
)
from stream.errors import (
    BackpressureError,
    ServerError,
    SubscribeTimeout,
    SubscriptionTerminated,
)
from stream.events import (
    BookCheckpoint,
    CloseConnection,
    CommandReply,
    ErrorReport,
    Fatal,
    Frame,
    GapDetected,
    Output,
    ResyncRequested,
    SendCommand,
    StateChanged,
    SubscribeResult,
    Switched,
)
from stream.queues import PUT_OVER, DeliveryQueue
from stream.state import ConnectionState, check_transition
from stream.subscriptions import ConsumerSubscription, Delivery, WireSubscription, market_set

__all__ = ["Engine", "EngineConfig", "EngineStats"]

_NS = 1_000_000_000
TERMINAL_ERROR_CODES = frozenset({10, 25})  # channel error, subscription buffer overflow
_S = ConnectionState
_TAG = FRAME_TAGS  # struct class -> wire type
_decode = decode_frame
_CONTROL = frozenset({SubscribedFrame, UnsubscribedFrame, OkFrame, ErrorFrame})
_BOOK = Delivery.BOOK


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Tunables of the engine. Times are seconds here, nanoseconds inside."""

    first_seq: int | None = 1  # seq of a subscription's first frame; None accepts any
    stash_maxlen: int = 1000  # frames kept per unknown sid while a subscribe awaits its ack
    ack_timeout_s: float = 10.0  # a subscribe with no ack fails after this
    resync_timeout_s: float = 5.0  # a get_snapshot with no reply falls back to resubscribe
    standby_timeout_s: float = 30.0  # a make-before-break standby not ready by then is dropped
    checkpoint_interval_s: float | None = None  # emit a BookCheckpoint per market this often
    max_held_frames: int = 200_000  # bound on frames held per consumer during an overlap


@dataclass(slots=True)
class EngineStats:
    """Counters of what the engine did; the live edge adds them to its statistics."""

    frames: int = 0
    delivered: int = 0
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


class _Conn:
    """What the engine knows about one connection."""

    __slots__ = (
        "commands",
        "conn",
        "opened_mono_ns",
        "pending",
        "retired",
        "sids",
        "standby",
        "stash",
        "stash_warned",
    )

    def __init__(self, conn: int, standby: bool, mono_ns: int) -> None:
        self.conn = conn
        self.standby = standby
        self.opened_mono_ns = mono_ns
        self.sids: dict[int, WireSubscription] = {}
        self.pending: dict[tuple[int | None, str], WireSubscription] = {}
        self.commands: dict[int, tuple[str, dict[str, Any], list[WireSubscription]]] = {}
        self.stash: dict[int, deque[tuple[bytes, int, int]]] = {}
        self.stash_warned = False
        self.retired: set[int] = set()

    def wires(self) -> list[WireSubscription]:
        return list(self.sids.values()) + list(self.pending.values())


class Engine:
    """The pure state machine shared by the live and the replay session."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.state = ConnectionState.DISCONNECTED
        self.outbox: deque[Output] = deque()
        self.stats = EngineStats()
        self._conns: dict[int, _Conn] = {}
        self._active_conn: _Conn | None = None
        self._standby_conn: _Conn | None = None
        self._retiring: set[int] = set()  # connections switched away from, not yet closed
        self._active_id = -1  # derived, for the hot path: see _roles_changed
        self._overlap = False
        self._consumers: dict[int, ConsumerSubscription] = {}
        self._attached: dict[str, list[ConsumerSubscription]] = {}
        self._intents: dict[int, tuple[str, ConsumerSubscription | WireSubscription | None]] = {}
        self._next_cid = 1
        self._next_cmd_id = 1
        self._fatal: BaseException | None = None
        self._checkpoint_ns = (
            None
            if self.config.checkpoint_interval_s is None
            else int(self.config.checkpoint_interval_s * _NS)
        )
        self._blocking: list[DeliveryQueue] = []
        self._now = (0, 0)  # time of the latest non-frame input, for outputs raised deep inside
        first = self.config.first_seq
        self._first_last = None if first is None else first - 1  # the "last seq" before any

    # ------------------------------------------------------------------ connection roles

    @property
    def _active(self) -> _Conn | None:
        """The connection deliveries come from."""
        return self._active_conn

    @_active.setter
    def _active(self, conn: _Conn | None) -> None:
        self._active_conn = conn
        self._roles_changed()

    @property
    def _standby(self) -> _Conn | None:
        """A make-before-break connection being readied."""
        return self._standby_conn

    @_standby.setter
    def _standby(self, conn: _Conn | None) -> None:
        self._standby_conn = conn
        self._roles_changed()

    def _retire(self, conn: int) -> None:
        self._retiring.add(conn)
        self._roles_changed()

    def _unretire(self, conn: int | None = None) -> None:
        if conn is None:
            self._retiring.clear()
        else:
            self._retiring.discard(conn)
        self._roles_changed()

    def _roles_changed(self) -> None:
        self._active_id = -1 if self._active_conn is None else self._active_conn.conn
        self._overlap = self._standby_conn is not None or bool(self._retiring)

    # ------------------------------------------------------------------ consumers

    def add_consumer(
        self,
        channel: str,
        params: dict[str, Any] | None = None,
        *,
        owns_wire: bool,
        delivery: Delivery = Delivery.FRAME,
        queue: DeliveryQueue | None = None,
        tickers: frozenset[str] | None = None,
        recv_ns: int = 0,
        mono_ns: int = 0,
    ) -> ConsumerSubscription:
        """Create a consumer subscription.

        An owning consumer is subscribed on the active connection at once (and on
        every later one); an attaching consumer receives the frames of every wire
        subscription of its channel whose market passes `tickers`.
        """
        params = dict(params or {})
        if tickers is None and channel in MARKET_FILTER_CHANNELS:
            tickers = market_set(params)
        consumer = ConsumerSubscription(
            cid=self._next_cid,
            channel=channel,
            params=params,
            tickers=tickers,
            owns_wire=owns_wire,
            delivery=delivery,
            queue=queue,
        )
        self._next_cid += 1
        self._consumers[consumer.cid] = consumer
        if not owns_wire:
            self._attached.setdefault(channel, []).append(consumer)
            self._retarget(channel)
        else:
            for conn in (self._active, self._standby):
                if conn is not None:
                    self._subscribe(conn, consumer, "subscribe", recv_ns)
        if self._fatal is not None and queue is not None:
            queue.close(self._fatal)
        return consumer

    def remove_consumer(self, cid: int, recv_ns: int = 0, mono_ns: int = 0) -> None:
        """End a consumer subscription: unsubscribe its wire subscriptions, end its queue."""
        consumer = self._consumers.pop(cid, None)
        if consumer is None:
            return
        consumer.active = False
        if consumer.queue is not None:
            consumer.queue.close()
        if not consumer.owns_wire:
            self._attached[consumer.channel].remove(consumer)
            self._retarget(consumer.channel)
            return
        for conn in self._conns.values():
            for key, wire in list(conn.pending.items()):
                if wire.owner is consumer:
                    del conn.pending[key]  # its ack will be an orphan and get unsubscribed
            sids = [sid for sid, w in conn.sids.items() if w.owner is consumer]
            if sids:
                self._command(conn, "unsubscribe", {"sids": sids}, "user", recv_ns)

    def update_consumer(
        self, cid: int, action: str, args: dict[str, Any], recv_ns: int = 0
    ) -> int | None:
        """Send update_subscription for a consumer's wire subscription; returns the command id."""
        consumer = self._consumers.get(cid)
        conn = self._active
        if consumer is None or conn is None:
            return None
        wire = next((w for w in conn.sids.values() if w.owner is consumer), None)
        if wire is None or wire.sid is None:
            return None
        return self._command(
            conn,
            "update_subscription",
            {"sids": [wire.sid], "action": action, **args},
            "user",
            recv_ns,
        )

    def list_subscriptions(self, recv_ns: int = 0) -> int | None:
        """Send list_subscriptions on the active connection; the reply is a CommandReply."""
        if self._active is None:
            return None
        return self._command(self._active, "list_subscriptions", None, "user", recv_ns)

    def consumers(self) -> list[ConsumerSubscription]:
        return list(self._consumers.values())

    def wire_subscriptions(self) -> list[dict[str, Any]]:
        """The acknowledged subscriptions of the active connection, like list_subscriptions."""
        conn = self._active
        if conn is None:
            return []
        return [{"channel": w.channel, "sid": sid} for sid, w in sorted(conn.sids.items())]

    def book(self, market: str) -> Any:
        """The current BookSnapshot of a market on the active connection, or None."""
        conn = self._active
        if conn is None:
            return None
        for wire in conn.sids.values():
            book = wire.books.get(market)
            if book is not None:
                return book.snapshot()
        return None

    @property
    def blocking_queues(self) -> list[DeliveryQueue]:
        """BLOCK queues over their bound after the last input: the pump must wait on them."""
        return self._blocking

    @property
    def fatal_error(self) -> BaseException | None:
        return self._fatal

    # ------------------------------------------------------------------ connection inputs

    def connection_attempt(self, recv_ns: int, mono_ns: int) -> None:
        """The edge starts a connection attempt."""
        if self.state in (_S.DISCONNECTED, _S.CONNECTING):
            self._set_state(_S.CONNECTING, recv_ns, mono_ns)

    def attempt_failed(self, recv_ns: int, mono_ns: int, *, will_retry: bool) -> None:
        """A connection attempt failed before opening."""
        if self._active is None and self.state is not _S.CLOSED:
            self._set_state(_S.RECONNECTING if will_retry else _S.DISCONNECTED, recv_ns, mono_ns)

    def connection_opened(
        self, conn: int, recv_ns: int, mono_ns: int, *, standby: bool = False
    ) -> None:
        """A handshake succeeded. A standby connection is subscribed but not delivered from
        until its snapshots are in (make-before-break)."""
        if conn in self._conns:
            return
        state = _Conn(conn, standby and self._active is not None, mono_ns)
        self._conns[conn] = state
        if state.standby:
            self._standby = state
        else:
            if self._active is not None:  # an open without a close: the old one is gone
                self._drop_conn(self._active, "replaced", recv_ns, mono_ns, notify=True)
                self._active = None
                self._set_state(_S.RECONNECTING, recv_ns, mono_ns)
            elif self.state is _S.DISCONNECTED:
                self._set_state(_S.CONNECTING, recv_ns, mono_ns)
            self._active = state
            self._set_state(_S.CONNECTED, recv_ns, mono_ns)
        for consumer in list(self._consumers.values()):
            if consumer.owns_wire:
                reason = "resubscribe" if consumer.subscribed_once else "subscribe"
                self._subscribe(state, consumer, reason, recv_ns)

    def connection_closed(
        self,
        conn: int,
        recv_ns: int,
        mono_ns: int,
        *,
        code: int | None = None,
        reason: str = "",
        will_reconnect: bool = True,
    ) -> None:
        """A connection ended. Everything it owned (sids, seq state, books) is reset."""
        state = self._conns.get(conn)
        if state is None:
            return
        if state is self._active:
            standby = self._standby
            self._drop_conn(state, "disconnect", recv_ns, mono_ns, notify=standby is None)
            self._active = None
            if standby is not None:
                self._switch(standby, recv_ns, mono_ns)  # the standby takes over at once
                self._unretire(conn)
            else:
                self._set_state(
                    _S.RECONNECTING if will_reconnect else _S.DISCONNECTED, recv_ns, mono_ns
                )
        elif state is self._standby:
            self._standby = None
            self._drop_conn(state, "standby closed", recv_ns, mono_ns, notify=False)
            for consumer in self._consumers.values():
                consumer.held.clear()
                consumer.seen = None
        else:
            self._drop_conn(state, "retired", recv_ns, mono_ns, notify=False)
            self._unretire(conn)
            if not self._retiring and self._standby is None:
                for consumer in self._consumers.values():
                    consumer.seen = None

    def session_closed(
        self, recv_ns: int, mono_ns: int, error: BaseException | None = None
    ) -> None:
        """The session is over (shutdown, or the edge gave up): end every consumer."""
        for state in list(self._conns.values()):
            self._drop_conn(state, "closed", recv_ns, mono_ns, notify=False)
        self._active = self._standby = None
        self._unretire()
        for consumer in list(self._consumers.values()):
            if consumer.queue is not None:
                consumer.queue.close(error)
        if self.state is not _S.CLOSED:
            self._set_state(_S.CLOSED, recv_ns, mono_ns)

    # ------------------------------------------------------------------ commands

    def command_sent(self, raw: bytes, recv_ns: int, mono_ns: int, conn: int) -> None:
        """A command went out on `conn` (live: we sent it; replay: the capture says so)."""
        state = self._conns.get(conn)
        try:
            cmd = decode_command(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        intent = self._intents.pop(cmd.id, None) if cmd.id is not None else None
        if state is None:
            return
        params = cmd.params or {}
        if cmd.cmd == "subscribe":
            owner = intent[1] if intent and isinstance(intent[1], ConsumerSubscription) else None
            for channel in params.get("channels") or []:
                wire = WireSubscription(
                    conn=conn,
                    channel=channel,
                    cmd_id=cmd.id,
                    params=params,
                    owner=owner,
                    sequenced=channel in SEQUENCED_CHANNELS,
                    is_book=channel in BOOK_CHANNELS,
                    markets=market_set(params),
                    use_yes_price=bool(params.get("use_yes_price")),
                    pending_since_ns=mono_ns,
                )
                state.pending[(cmd.id, channel)] = wire
        elif cmd.cmd == "unsubscribe":
            targets = []
            for sid in params.get("sids") or []:
                gone = state.sids.pop(sid, None)
                if gone is not None:
                    wire = gone
                    targets.append(wire)
                    self._clear_books(
                        wire,
                        "unsubscribed",
                        recv_ns,
                        notify=wire.owner is not None and wire.owner.active,
                    )
                state.retired.add(sid)  # later frames on it must not touch anything (#255)
            if cmd.id is not None:
                state.commands[cmd.id] = (cmd.cmd, params, targets)
        elif cmd.id is not None:
            targets = []
            if cmd.cmd == "update_subscription":
                sids = params.get("sids") or ([params["sid"]] if "sid" in params else [])
                targets = [state.sids[s] for s in sids if s in state.sids]
                if params.get("action") == "get_snapshot":
                    for wire in targets:
                        wire.resync_cmd_id = cmd.id
                        wire.resync_since_ns = mono_ns
                        wire.awaiting_snapshot |= set(params.get("market_tickers") or ())
            state.commands[cmd.id] = (cmd.cmd, params, targets)

    def _command(
        self,
        conn: _Conn,
        name: str,
        params: dict[str, Any] | None,
        reason: str,
        recv_ns: int,
        intent: ConsumerSubscription | WireSubscription | None = None,
    ) -> int:
        cmd_id = self._next_cmd_id
        self._next_cmd_id += 1
        body: dict[str, Any] = {"id": cmd_id, "cmd": name}
        if params is not None:
            body["params"] = params
        self._intents[cmd_id] = (reason, intent)
        self.outbox.append(SendCommand(conn.conn, encode_json(body), name, cmd_id, reason))
        return cmd_id

    def _subscribe(
        self, conn: _Conn, consumer: ConsumerSubscription, reason: str, recv_ns: int
    ) -> None:
        params: dict[str, Any] = {"channels": [consumer.channel], **consumer.params}
        if reason == "resubscribe" and consumer.channel == Channel.TICKER:
            params["send_initial_snapshot"] = True  # fresh state after a reconnect
        consumer.subscribed_once = True
        self._command(conn, "subscribe", params, reason, recv_ns, consumer)

    # ------------------------------------------------------------------ time

    def tick(self, recv_ns: int, mono_ns: int) -> None:
        """Time passes: fail overdue subscribes, fall back on overdue resyncs, checkpoint."""
        self._now = (recv_ns, mono_ns)
        for state in list(self._conns.values()):
            self._check_timeouts(state, recv_ns, mono_ns)
        if self._checkpoint_ns is not None and self._active is not None:
            for wire in self._active.sids.values():
                for market, book in wire.books.items():
                    self._maybe_checkpoint(wire, market, book, recv_ns, mono_ns)

    def _check_timeouts(self, state: _Conn, recv_ns: int, mono_ns: int) -> None:
        ack_ns = int(self.config.ack_timeout_s * _NS)
        for key, wire in list(state.pending.items()):
            if mono_ns - wire.pending_since_ns >= ack_ns and wire.owner is not None:
                del state.pending[key]
                error = SubscribeTimeout(wire.channel, self.config.ack_timeout_s)
                self._report("ack_timeout", str(error), recv_ns, state.conn, None, wire.channel)
                self.outbox.append(SubscribeResult(wire.owner.cid, wire.channel, None, error))
                if wire.owner.queue is not None and state is self._active:
                    wire.owner.queue.close(error)
                    self._consumers.pop(wire.owner.cid, None)
                    wire.owner.active = False
        resync_ns = int(self.config.resync_timeout_s * _NS)
        for wire in list(state.sids.values()):
            since = wire.resync_since_ns
            if since is not None and mono_ns - since >= resync_ns:
                wire.resync_since_ns = None
                self._report(
                    "resync_timeout",
                    f"no snapshot for sid {wire.sid} after get_snapshot",
                    recv_ns,
                    state.conn,
                    wire.sid,
                    wire.channel,
                )
                self._fallback_resubscribe(state, wire, recv_ns)
        standby_ns = int(self.config.standby_timeout_s * _NS)
        if state is self._standby and mono_ns - state.opened_mono_ns >= standby_ns:
            self._report(
                "standby_timeout", f"standby connection {state.conn} not ready", recv_ns, state.conn
            )
            self.outbox.append(CloseConnection(state.conn, "standby not ready in time"))
            state.opened_mono_ns = mono_ns  # ask once per timeout period

    def _maybe_checkpoint(
        self, wire: WireSubscription, market: str, book: OrderBook, recv_ns: int, mono_ns: int
    ) -> None:
        assert self._checkpoint_ns is not None
        last = wire.last_checkpoint_ns.get(market)
        if last is None or mono_ns - last >= self._checkpoint_ns:
            wire.last_checkpoint_ns[market] = mono_ns
            if wire.sid is not None and market not in wire.awaiting_snapshot:
                self.outbox.append(
                    BookCheckpoint(
                        wire.conn, wire.sid, market, recv_ns, mono_ns, book.snapshot().as_record()
                    )
                )

    # ------------------------------------------------------------------ frames

    def frame_received(self, raw: bytes, recv_ns: int, mono_ns: int, conn: int) -> None:
        """A server frame arrived on `conn`, bytes exact."""
        self.stats.frames += 1
        state = self._conns.get(conn)
        if state is None:
            self.stats.stale_frames += 1
            return
        # The hot path: one decode, one type test, one sid lookup (PERFORMANCE.md); the
        # common types are dispatched here rather than through _dispatch to save a call.
        try:
            frame = _decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            self._undecodable(state, raw, recv_ns, mono_ns)
            return
        kind = type(frame)
        if kind is DeltaFrame or kind is SnapshotFrame:
            self._book_frame(state, frame, raw, recv_ns, mono_ns)
        elif kind in _CONTROL:
            self._control(state, frame, raw, recv_ns, mono_ns)
        else:
            self._data_frame(state, frame, raw, recv_ns, mono_ns)

    def _dispatch(self, state: _Conn, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        """Process a frame already counted (a stashed one, replayed after its ack)."""
        try:
            frame = _decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            self._undecodable(state, raw, recv_ns, mono_ns)
            return
        kind = type(frame)
        if kind is DeltaFrame or kind is SnapshotFrame:
            self._book_frame(state, frame, raw, recv_ns, mono_ns)
        elif kind in _CONTROL:
            self._control(state, frame, raw, recv_ns, mono_ns)
        else:
            self._data_frame(state, frame, raw, recv_ns, mono_ns)

    def _control(self, state: _Conn, frame: Any, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        kind = type(frame)
        if kind is SubscribedFrame:
            self._on_subscribed(state, frame, recv_ns, mono_ns)
        elif kind is UnsubscribedFrame:
            self._on_unsubscribed(state, frame, recv_ns)
        elif kind is OkFrame:
            self._on_ok(state, frame, raw, recv_ns, mono_ns)
        elif kind is ErrorFrame:
            self._on_error(state, frame, raw, recv_ns, mono_ns)

    def _wire_for(
        self, state: _Conn, sid: int | None, raw: bytes, recv_ns: int, mono_ns: int
    ) -> WireSubscription | None:
        wire = state.sids.get(sid) if sid is not None else None
        if wire is not None:
            return wire
        if sid is None or sid in state.retired:
            self.stats.stale_frames += 1
            return None
        if state.pending:
            self._stash(state, sid, raw, recv_ns, mono_ns)
        else:
            self.stats.unrouted += 1
        return None

    def _stash(self, state: _Conn, sid: int, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        """Keep a frame for a sid whose ack has not arrived yet (PROTOCOL.md #5)."""
        queue = state.stash.get(sid)
        if queue is None:
            queue = state.stash[sid] = deque(maxlen=self.config.stash_maxlen)
        if len(queue) == queue.maxlen:
            self.stats.stash_evicted += 1
            if not state.stash_warned:
                state.stash_warned = True
                self._report(
                    "stash_overflow",
                    f"more than {queue.maxlen} frames for sid {sid} before its ack; oldest evicted",
                    recv_ns,
                    state.conn,
                    sid,
                )
        queue.append((raw, recv_ns, mono_ns))
        self.stats.stashed += 1

    def _data_frame(self, state: _Conn, frame: Any, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        wire = state.sids.get(frame.sid)
        if wire is None:
            wire = self._wire_for(state, frame.sid, raw, recv_ns, mono_ns)
            if wire is None:
                return
        seq = frame.seq
        if wire.sequenced:
            if seq is None:
                self._malformed(state, raw, recv_ns, f"{_TAG[type(frame)]}: seq missing", wire)
                return
            last = wire.last_seq
            if last is None:
                last = self._first_last
            if last is not None and seq != last + 1:
                if seq == last:
                    self.stats.duplicates += 1
                    return
                self._sequence_break(state, wire, last, seq, recv_ns, mono_ns)
                if seq < last:
                    wire.last_seq = seq  # rebase: a true reset must not mute the stream
                    return
            wire.last_seq = seq
        if not wire.targets:
            return
        msg = frame.msg
        market = None
        if msg is not None and type(msg) is not list:
            market = msg.market_ticker if msg.market_ticker is not None else msg.ticker
        self._deliver(
            wire,
            Frame(
                raw,
                recv_ns,
                mono_ns,
                state.conn,
                wire.channel,
                _TAG[type(frame)],
                frame.sid,
                seq,
                market,
            ),
            None,
        )

    def _book_frame(self, state: _Conn, frame: Any, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        wire = state.sids.get(frame.sid)
        if wire is None:
            wire = self._wire_for(state, frame.sid, raw, recv_ns, mono_ns)
            if wire is None:
                return
        body = frame.msg
        is_delta = type(frame) is DeltaFrame
        # Validate fully before the watermark moves (PROTOCOL.md #3).
        if is_delta:
            side, price, delta = body.side, body.price_dollars, body.delta_fp
            if price is not None and delta is not None and (side == "yes" or side == "no"):
                is_yes = side == "yes"  # the current wire form, read inline
            else:
                try:
                    is_yes, price, delta = delta_fields(body)  # legacy form, or malformed
                except ValueError as exc:
                    self._malformed(state, raw, recv_ns, str(exc), wire)
                    return
        else:
            yes, no = snapshot_levels(body)
        seq = frame.seq
        if seq is None:
            self._malformed(state, raw, recv_ns, "orderbook frame without seq", wire)
            return
        last = wire.last_seq
        if last is None:
            last = self._first_last
        if last is not None and seq != last + 1:
            if seq == last:
                self.stats.duplicates += 1
                return
            self._sequence_break(state, wire, last, seq, recv_ns, mono_ns)
            wire.last_seq = seq
            if is_delta or seq < last:
                return
        wire.last_seq = seq
        market = body.market_ticker
        book = wire.books.get(market)
        if is_delta:
            if book is None:
                self._delta_without_book(state, wire, market, recv_ns)
                return
            book.apply(is_yes, price, delta, seq, body.clock, recv_ns)
        else:
            if book is None:
                book = wire.books[market] = OrderBook(
                    market, state.conn, wire.sid, wire.use_yes_price
                )
            book.reset(yes, no, seq=seq, clock=body.clock, recv_ns=recv_ns)
            wire.warned_no_book.discard(market)
            if wire.awaiting_snapshot:
                wire.awaiting_snapshot.discard(market)
                if not wire.awaiting_snapshot:
                    wire.resync_since_ns = None
        if wire.targets:
            self._deliver(
                wire,
                Frame(
                    raw,
                    recv_ns,
                    mono_ns,
                    state.conn,
                    wire.channel,
                    _TAG[type(frame)],
                    frame.sid,
                    seq,
                    market,
                ),
                book,
            )
        if not is_delta and state is self._standby_conn:
            self._maybe_switch(recv_ns, mono_ns)
        if self._checkpoint_ns is not None and state is self._active_conn:
            self._maybe_checkpoint(wire, market, book, recv_ns, mono_ns)

    def _delta_without_book(
        self, state: _Conn, wire: WireSubscription, market: str, recv_ns: int
    ) -> None:
        self.stats.dropped_no_book += 1
        if market in wire.awaiting_snapshot:
            return  # expected while a resync is in flight
        if market not in wire.warned_no_book:
            wire.warned_no_book.add(market)
            self._report(
                "delta_before_snapshot",
                f"delta for {market} before its snapshot on sid {wire.sid}; dropped, "
                "snapshot requested",
                recv_ns,
                state.conn,
                wire.sid,
                wire.channel,
            )
            self._request_snapshot(state, wire, [market], recv_ns)

    def _undecodable(self, state: _Conn, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        """A frame the hot-path decoder rejects: an unknown type, or a known type gone wrong."""
        try:
            env = decode_envelope(raw)
        except EnvelopeError as exc:
            self._malformed(state, raw, recv_ns, str(exc), None)
            return
        channel = channel_of_type(env.type)
        wire = state.sids.get(env.sid) if env.sid is not None else None
        if channel == Channel.UNKNOWN:
            self.stats.unknown_types += 1
            self._report(
                "unknown_type",
                f"unknown message type {env.type!r}",
                recv_ns,
                state.conn,
                env.sid,
                wire.channel if wire else None,
                raw=raw,
            )
            if wire is not None:  # the generic subscribe() stream still gets it
                self._deliver(
                    wire,
                    Frame(
                        raw,
                        recv_ns,
                        mono_ns,
                        state.conn,
                        wire.channel,
                        env.type,
                        env.sid,
                        env.seq,
                        env.market_ticker,
                    ),
                    None,
                )
            return
        self._malformed(state, raw, recv_ns, f"bad {env.type} frame", wire)

    def _malformed(
        self, state: _Conn, raw: bytes, recv_ns: int, reason: str, wire: WireSubscription | None
    ) -> None:
        self.stats.malformed += 1
        self._report(
            "malformed",
            reason,
            recv_ns,
            state.conn,
            wire.sid if wire else None,
            wire.channel if wire else None,
            raw=raw,
        )

    # ------------------------------------------------------------------ sequence and resync

    def _sequence_break(
        self,
        state: _Conn,
        wire: WireSubscription,
        last: int,
        seq: int,
        recv_ns: int,
        mono_ns: int,
    ) -> None:
        kind = "gap" if seq > last else "reset"
        if kind == "gap":
            self.stats.gaps += 1
        else:
            self.stats.resets += 1
        assert wire.sid is not None
        self.outbox.append(
            GapDetected(kind, state.conn, wire.sid, wire.channel, last + 1, seq, recv_ns, mono_ns)
        )
        self._report(
            kind,
            f"{wire.channel} sid {wire.sid}: expected seq {last + 1}, got {seq}",
            recv_ns,
            state.conn,
            wire.sid,
            wire.channel,
        )
        if wire.is_book:
            markets = set(wire.books) | set(wire.markets or ()) | wire.awaiting_snapshot
            self._clear_books(wire, kind, recv_ns, notify=True)
            self._request_snapshot(state, wire, sorted(markets), recv_ns)

    def _request_snapshot(
        self, state: _Conn, wire: WireSubscription, markets: list[str], recv_ns: int
    ) -> None:
        new = [m for m in markets if m not in wire.awaiting_snapshot]
        if not new and wire.resync_cmd_id is not None:
            return  # one resync in flight covers it
        wire.awaiting_snapshot.update(markets)
        self.stats.resyncs += 1
        assert wire.sid is not None
        self.outbox.append(
            ResyncRequested(
                state.conn, wire.sid, wire.channel, tuple(markets), "get_snapshot", recv_ns
            )
        )
        self._command(
            state,
            "update_subscription",
            {"sids": [wire.sid], "action": "get_snapshot", "market_tickers": markets},
            "resync",
            recv_ns,
            wire,
        )

    def _fallback_resubscribe(self, state: _Conn, wire: WireSubscription, recv_ns: int) -> None:
        """get_snapshot failed or timed out: unsubscribe and subscribe again (fresh snapshot)."""
        owner = wire.owner
        if owner is None or not owner.active or wire.sid is None:
            return
        self.stats.resyncs += 1
        self.outbox.append(
            ResyncRequested(
                state.conn,
                wire.sid,
                wire.channel,
                tuple(sorted(wire.markets or ())),
                "resubscribe",
                recv_ns,
            )
        )
        self._command(state, "unsubscribe", {"sids": [wire.sid]}, "fallback", recv_ns)
        self._subscribe(state, owner, "resubscribe", recv_ns)

    def _clear_books(
        self, wire: WireSubscription, reason: str, recv_ns: int, *, notify: bool
    ) -> None:
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
                if consumer.delivery is Delivery.BOOK and (
                    consumer.tickers is None or market in consumer.tickers
                ):
                    self._put(consumer, invalid)

    # ------------------------------------------------------------------ control frames

    def _on_subscribed(
        self, state: _Conn, frame: SubscribedFrame, recv_ns: int, mono_ns: int
    ) -> None:
        channel, sid = frame.msg.channel, frame.msg.sid
        wire = state.pending.pop((frame.id, channel), None)
        if wire is None:
            # An ack for a subscribe that was cancelled (or never ours): unsubscribe it (#268).
            self._report(
                "orphan_ack",
                f"ack for {channel} sid {sid} with no pending subscribe "
                f"(id {frame.id}); unsubscribing",
                recv_ns,
                state.conn,
                sid,
                channel,
            )
            state.retired.add(sid)
            state.stash.pop(sid, None)
            self._command(state, "unsubscribe", {"sids": [sid]}, "orphan_ack", recv_ns)
            return
        wire.sid = sid
        state.retired.discard(sid)  # a server may reuse a sid number
        state.sids[sid] = wire
        self._target(wire)
        if wire.owner is not None:
            self.outbox.append(SubscribeResult(wire.owner.cid, channel, sid))
        if self.state is _S.CONNECTED and state is self._active:
            self._set_state(_S.STREAMING, recv_ns, mono_ns)
        stashed = state.stash.pop(sid, None)
        if not state.pending:
            state.stash.clear()  # sids never acked in this cycle: nothing will claim them
            state.stash_warned = False
        if stashed:
            for raw, r_ns, m_ns in stashed:
                self._dispatch(state, raw, r_ns, m_ns)
        if state is self._standby:
            self._maybe_switch(recv_ns, mono_ns)

    def _on_unsubscribed(self, state: _Conn, frame: UnsubscribedFrame, recv_ns: int) -> None:
        sent = state.commands.pop(frame.id, None) if frame.id is not None else None
        if sent is not None and sent[0] == "unsubscribe":
            return  # the reply to our own unsubscribe; the sid was retired when we sent it
        wire = state.sids.pop(frame.sid, None)
        if wire is None:
            return
        state.retired.add(frame.sid)
        self._end_wire(state, wire, recv_ns, None, "server unsubscribed")

    def _end_wire(
        self,
        state: _Conn,
        wire: WireSubscription,
        recv_ns: int,
        error: BaseException | None,
        reason: str,
    ) -> None:
        """The server ended a subscription: drop its books, end the streams fed only by it."""
        self._clear_books(wire, reason, recv_ns, notify=True)
        self._report(
            "subscription_ended",
            f"{wire.channel} sid {wire.sid}: {reason}",
            recv_ns,
            state.conn,
            wire.sid,
            wire.channel,
        )
        for consumer in wire.targets:
            if consumer.owns_wire:
                if consumer is wire.owner:
                    self._end_consumer(consumer, error)
            elif not any(consumer in w.targets for w in state.sids.values() if w is not wire):
                self._end_consumer(consumer, error)
        wire.targets = []

    def _end_consumer(self, consumer: ConsumerSubscription, error: BaseException | None) -> None:
        consumer.active = False
        self._consumers.pop(consumer.cid, None)
        if not consumer.owns_wire and consumer in self._attached.get(consumer.channel, []):
            self._attached[consumer.channel].remove(consumer)
        if consumer.queue is not None:
            consumer.queue.close(error)

    def _on_ok(self, state: _Conn, frame: OkFrame, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        sent = state.commands.pop(frame.id, None) if frame.id is not None else None
        wire = state.sids.get(frame.sid) if frame.sid is not None else None
        if wire is not None and frame.seq is not None:
            self._observe_control_seq(state, wire, frame.seq, recv_ns, mono_ns)
        if sent is None:
            return
        name, params, targets = sent
        if name == "update_subscription" and isinstance(frame.msg, dict):
            tickers = frame.msg.get("market_tickers")
            for target in targets:
                if tickers is not None:
                    target.markets = frozenset(tickers)
                    for market in [m for m in target.books if m not in target.markets]:
                        del target.books[market]
                changes_markets = params.get("action") in ("add_markets", "delete_markets")
                if target.owner is not None and changes_markets and tickers is not None:
                    target.owner.params["market_tickers"] = sorted(tickers)
                    target.owner.params.pop("market_ticker", None)
        assert frame.id is not None
        self.outbox.append(CommandReply(frame.id, "ok", frame.msg))

    def _observe_control_seq(
        self, state: _Conn, wire: WireSubscription, seq: int, recv_ns: int, mono_ns: int
    ) -> None:
        """An ok/error reply that carries the subscription's seq (PROTOCOL.md open question 2):
        if it continues the sequence it consumes the number; it never starts a resync itself."""
        if wire.sequenced and wire.last_seq is not None and seq == wire.last_seq + 1:
            wire.last_seq = seq

    def _on_error(
        self, state: _Conn, frame: ErrorFrame, raw: bytes, recv_ns: int, mono_ns: int
    ) -> None:
        code, message = frame.msg.code, frame.msg.msg or ""
        sent = state.commands.pop(frame.id, None) if frame.id is not None else None
        wire = state.sids.get(frame.sid) if frame.sid is not None else None
        self._report(
            "server_error",
            f"error {code}: {message}",
            recv_ns,
            state.conn,
            frame.sid,
            wire.channel if wire else None,
            code=code,
            raw=raw,
        )
        if wire is not None and frame.seq is not None:
            self._observe_control_seq(state, wire, frame.seq, recv_ns, mono_ns)
        if frame.id is not None:
            self.outbox.append(CommandReply(frame.id, "error", {"code": code, "msg": message}))
            failed = [k for k in state.pending if k[0] == frame.id]
            for key in failed:  # a rejected subscribe
                pending = state.pending.pop(key)
                if pending.owner is not None:
                    error = ServerError(code, message)
                    self.outbox.append(
                        SubscribeResult(pending.owner.cid, pending.channel, None, error)
                    )
                    self._end_consumer(pending.owner, error)
        if (
            sent is not None
            and sent[0] == "update_subscription"
            and (sent[1].get("action") == "get_snapshot")
        ):
            for target in sent[2]:
                target.resync_since_ns = None
                self._fallback_resubscribe(state, target, recv_ns)
        if wire is not None and wire.sid is not None and code in TERMINAL_ERROR_CODES:
            state.sids.pop(wire.sid, None)
            state.retired.add(wire.sid)
            ended = SubscriptionTerminated(wire.channel, message or f"error {code}", code)
            self._end_wire(state, wire, recv_ns, ended, f"error {code}")

    # ------------------------------------------------------------------ delivery

    def _retarget(self, channel: str) -> None:
        for state in self._conns.values():
            for wire in state.sids.values():
                if wire.channel == channel:
                    self._target(wire)

    def _target(self, wire: WireSubscription) -> None:
        targets = []
        owner = wire.owner
        if owner is not None and owner.active and owner.queue is not None:
            targets.append(owner)
        targets.extend(self._attached.get(wire.channel, ()))
        wire.targets = targets

    def _deliver(self, wire: WireSubscription, frame: Frame, book: OrderBook | None) -> None:
        if wire.conn == self._active_id and not self._overlap:
            # The common case, kept flat: the active connection, no switch in progress.
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
        self._deliver_slow(wire, frame, book)

    def _deliver_slow(self, wire: WireSubscription, frame: Frame, book: OrderBook | None) -> None:
        conn = wire.conn
        active = self._active
        if active is not None and conn == active.conn:
            for consumer in wire.targets:
                tickers = consumer.tickers
                if (
                    tickers is not None
                    and frame.market_ticker is not None
                    and (frame.market_ticker not in tickers)
                ):
                    continue
                if not wire.is_book and self._seen_before(consumer, frame):
                    continue
                if consumer.delivery is Delivery.BOOK:
                    if book is not None:
                        self._put(consumer, book.snapshot())
                else:
                    self._put(consumer, frame)
        elif self._standby is not None and conn == self._standby.conn:
            for consumer in wire.targets:
                tickers = consumer.tickers
                if (
                    tickers is not None
                    and frame.market_ticker is not None
                    and (frame.market_ticker not in tickers)
                ):
                    continue
                if len(consumer.held) < self.config.max_held_frames:
                    consumer.held.append(frame)
        elif conn in self._retiring and not wire.is_book:
            # Frames still arriving on the connection we switched away from: deliver those
            # the new connection has not already delivered.
            for consumer in wire.targets:
                if self._seen_before(consumer, frame):
                    continue
                self._put(consumer, frame)

    def _seen_before(self, consumer: ConsumerSubscription, frame: Frame) -> bool:
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

    def take_blocking(self) -> list[DeliveryQueue]:
        """Return and forget the BLOCK queues that went over their bound."""
        blocking, self._blocking = self._blocking, []
        return blocking

    def _backpressure(self, consumer: ConsumerSubscription, queue: DeliveryQueue) -> None:
        """An ERROR queue overflowed: the session cannot go on half-alive (PROTOCOL.md #12)."""
        error = BackpressureError(consumer.channel, queue.maxsize)
        recv_ns, mono_ns = self._now
        last = queue.last_item()
        if isinstance(last, Frame):
            recv_ns, mono_ns = last.recv_ns, last.mono_ns
        self._report("backpressure", str(error), recv_ns, None, None, consumer.channel)
        self._fatal = error
        self.outbox.append(Fatal(error))
        self.session_closed(recv_ns, mono_ns, error)

    # ------------------------------------------------------------------ make-before-break

    def _maybe_switch(self, recv_ns: int, mono_ns: int) -> None:
        standby, active = self._standby, self._active
        if standby is None or active is None or standby.pending:
            return
        needed = {w.key() for w in active.sids.values()}
        ready = {
            w.key()
            for w in standby.sids.values()
            if not (w.is_book and (w.awaiting_snapshot or not self._has_all_books(w)))
        }
        if needed and needed <= ready:
            old = active
            self._switch(standby, recv_ns, mono_ns)
            self._retire(old.conn)
            self.outbox.append(Switched(old.conn, standby.conn, recv_ns, mono_ns))

    @staticmethod
    def _has_all_books(wire: WireSubscription) -> bool:
        return wire.markets is not None and all(m in wire.books for m in wire.markets)

    def _switch(self, standby: _Conn, recv_ns: int, mono_ns: int) -> None:
        """Deliver from `standby` from now on, flushing what it held."""
        self.stats.switches += 1
        standby.standby = False
        self._standby = None
        self._active = standby
        for consumer in list(self._consumers.values()):
            held, consumer.held = consumer.held, []
            if consumer.channel in BOOK_CHANNELS:
                if consumer.delivery is Delivery.BOOK:
                    for wire in standby.sids.values():
                        if wire.channel == consumer.channel:
                            for market, book in wire.books.items():
                                if consumer.tickers is None or market in consumer.tickers:
                                    self._put(consumer, book.snapshot())
                else:
                    for frame in held:
                        self._put(consumer, frame)
            else:
                for frame in held:
                    if not self._seen_before(consumer, frame):
                        self._put(consumer, frame)
        if self.state is _S.CONNECTED:
            self._set_state(_S.STREAMING, recv_ns, mono_ns)

    # ------------------------------------------------------------------ connection teardown

    def _drop_conn(
        self, state: _Conn, reason: str, recv_ns: int, mono_ns: int, *, notify: bool
    ) -> None:
        self._conns.pop(state.conn, None)
        for wire in state.wires():
            self._clear_books(wire, reason, recv_ns, notify=notify)
            wire.targets = []
        state.sids.clear()
        state.pending.clear()
        state.stash.clear()
        for cmd_id in [
            i
            for i, (_, w) in self._intents.items()
            if isinstance(w, WireSubscription) and w.conn == state.conn
        ]:
            del self._intents[cmd_id]

    # ------------------------------------------------------------------ outputs

    def _set_state(self, new: ConnectionState, recv_ns: int, mono_ns: int) -> None:
        old = self.state
        if old == new:
            return
        check_transition(old, new)
        self.state = new
        self.outbox.append(StateChanged(old, new, recv_ns, mono_ns))

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
