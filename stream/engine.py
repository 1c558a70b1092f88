"""The sans-I/O engine: frames and connection events in, deliveries and commands out.

Theory of operation. The edge (a live socket or a capture reader) calls one input
method per thing that happened, with the time it happened:

    frame_received(raw, recv_ns, mono_ns, conn)     a server frame, bytes exact
    command_sent(raw, recv_ns, mono_ns, conn)        a command that really went out
    connection_attempt / attempt_failed / connection_opened / connection_closed
    session_closed                                   the end
    tick(recv_ns, mono_ns)                           time passes (timeouts, checkpoints)

and the session calls add_consumer / remove_consumer / update_consumer /
list_subscriptions. Deliveries go straight into consumer queues; everything else
is appended to `outbox`: commands to send, state changes, error reports, gaps,
resyncs, switches, checkpoints. The engine owns no socket, file, clock or loop.

Decisions that change what consumers see are taken only from inputs a capture
records (frames, sent commands, connection events), never from timers, so a
replay of a capture takes exactly the decisions the live engine took. A timer
only asks the edge to act (send a command, close a connection); the edge records
what it did, and that record is what changes the state.

Structure. `Engine` is the one object the edges and the session see. It owns its
state (`stream.core.EngineCore`) and a few collaborators, each with one job and
a small interface, wired here once:

    Fanout      stream.fanout     who receives each frame or book; teardown
    Resync      stream.resync     gaps and resets; snapshot requests, fallback
    Switching   stream.switching  make-before-break
    Arbiter     stream.arbitration redundant feeds: each message once, each book from one
    FrameInput  stream.frames     frame_received: routing, sequence, books
    ControlInput stream.control   command_sent; acks, unsubscribes, replies

This module adds the consumers, the connection inputs, time and checkpoints.
`frame_received` and `command_sent` are the collaborators' own methods, bound
to the engine, so the hot path pays no extra call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from schemas.channels import MARKET_FILTER_CHANNELS
from stream.arbitration import Arbiter, snapshot_frame
from stream.book import BookSnapshot
from stream.checkpoint import checkpoint_record, is_quiescent, restore_wires
from stream.connections import Connection
from stream.control import ControlInput
from stream.core import NS, EngineConfig, EngineCore, EngineStats
from stream.errors import SubscribeTimeout
from stream.events import Checkpoint, CloseConnection, Frame, Output, SubscribeResult
from stream.fanout import Fanout
from stream.frames import FrameInput
from stream.queues import DeliveryQueue
from stream.resync import Resync
from stream.state import ConnectionState
from stream.subscriptions import ConsumerSubscription, Delivery, WireSubscription, market_set
from stream.switching import Switching

__all__ = ["Engine", "EngineConfig", "EngineStats"]

_S = ConnectionState
LIVE_GROUP = 0  # the one group of a live session


class Engine:
    """The pure state machine shared by the live and the replay session.

    Attributes:
        config: the tunables it was made with.
        stats: counters of what it did.
        outbox: outputs for the edge to carry out, in order.
        frame_received(raw, recv_ns, mono_ns, conn, decoded=None): a server frame
            arrived on `conn`, bytes exact (`decoded`: its `stream.decode.decode_frame`
            result, when the edge already has it). See `stream.frames.FrameInput`.
        command_sent(raw, recv_ns, mono_ns, conn): a command went out on `conn` (live:
            we sent it; replay: the capture says so). See `stream.control.ControlInput`.
    """

    frame_received: Callable[..., None]
    command_sent: Callable[[bytes, int, int, int], None]

    def __init__(self, config: EngineConfig | None = None) -> None:
        core = self._core = EngineCore(config or EngineConfig())
        self.config: EngineConfig = core.config
        self.stats: EngineStats = core.stats
        self.outbox: deque[Output] = core.outbox
        self._fanout = Fanout(core)
        self._arbiter = self._fanout.arbiter = Arbiter(core, self._fanout)
        self._resync = Resync(core, self._fanout)
        self._switching = Switching(core, self._fanout)
        self._frames = FrameInput(core, self._fanout, self._resync)
        self._control = ControlInput(
            core, self._fanout, self._resync, self._switching, self._frames.dispatch
        )
        self._frames.control = self._control
        self._frames.switching = self._switching
        self._frames.arbiter = self._arbiter
        #: The groups a live session's consumers subscribe on: one per feed.
        self._live_groups = range(LIVE_GROUP, LIVE_GROUP + core.config.feeds)
        if core.config.feeds > 1:
            for feed in self._live_groups:
                core.group(feed, feed)
        self.frame_received = self._frames.frame_received
        self.command_sent = self._control.command_sent

    @property
    def state(self) -> ConnectionState:
        """The session's connection state (the most alive of its groups')."""
        return self._core.state

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
    ) -> ConsumerSubscription:
        """Create a consumer subscription.

        An owning consumer is subscribed on the live group's connections at once (and
        on every later one); an attaching consumer receives the frames of every wire
        subscription of its channel whose market passes `tickers`.
        """
        params = dict(params or {})
        if tickers is None and channel in MARKET_FILTER_CHANNELS:
            tickers = market_set(params)
        if not owns_wire and queue is None:
            raise ValueError("an attaching consumer needs a queue")
        consumer = ConsumerSubscription(
            cid=self._core.next_cid,
            channel=channel,
            params=params,
            tickers=tickers,
            owns_wire=owns_wire,
            delivery=delivery,
            queue=queue,
        )
        self._core.next_cid += 1
        self._core.consumers[consumer.cid] = consumer
        if not owns_wire:
            self._core.attached.setdefault(channel, []).append(consumer)
            self._fanout.retarget(channel)
        else:
            for group in self._live():
                for conn in (group.active, group.standby):
                    if conn is not None:
                        self._core.subscribe(conn, consumer, "subscribe")
        if self._core.fatal is not None and queue is not None:
            queue.close(self._core.fatal)
        return consumer

    def remove_consumer(self, cid: int) -> None:
        """End a consumer subscription: unsubscribe its wire subscriptions, end its queue."""
        consumer = self._core.consumers.pop(cid, None)
        if consumer is None:
            return
        consumer.active = False
        if consumer.queue is not None:
            consumer.queue.close()
        if not consumer.owns_wire:
            self._core.attached[consumer.channel].remove(consumer)
            self._fanout.retarget(consumer.channel)
            return
        for conn in self._core.conns.values():
            for key, wire in list(conn.pending.items()):
                if wire.owner is consumer:
                    del conn.pending[key]  # its ack will be an orphan and get unsubscribed
            sids = [sid for sid, w in conn.sids.items() if w.owner is consumer]
            if sids:
                self._core.command(conn, "unsubscribe", {"sids": sids}, "user")

    def update_consumer(self, cid: int, action: str, args: dict[str, Any]) -> int | None:
        """Send update_subscription for a consumer's wire subscription; returns the command id."""
        consumer = self._core.consumers.get(cid)
        if consumer is None:
            return None
        first: int | None = None
        for group in self._live():  # every feed's subscription; the first one's id is answered
            conn = group.active
            wire = (
                None
                if conn is None
                else next((w for w in conn.sids.values() if w.owner is consumer), None)
            )
            if conn is None or wire is None or wire.sid is None:
                continue
            params = {"sids": [wire.sid], "action": action, **args}
            cmd_id = self._core.command(conn, "update_subscription", params, "user")
            first = cmd_id if first is None else first
        return first

    def list_subscriptions(self) -> int | None:
        """Send list_subscriptions on the live connection; the reply is a CommandReply."""
        group = self._core.groups.get(LIVE_GROUP)
        if group is None or group.active is None:
            return None
        return self._core.command(group.active, "list_subscriptions", None, "user")

    def _live(self) -> list[Any]:
        """The live session's groups (one per feed) that exist."""
        groups = self._core.groups
        return [groups[g] for g in self._live_groups if g in groups]

    @property
    def arbiter(self) -> Arbiter:
        """Arbitration between feeds (`stream.arbitration`): which feed owns each book."""
        return self._arbiter

    @property
    def arbitrating(self) -> bool:
        """Whether the engine arbitrates between feeds (a group of feed 1 or above exists)."""
        return self._core.arbitrating

    def consumers(self) -> list[ConsumerSubscription]:
        return list(self._core.consumers.values())

    def wire_subscriptions(self) -> list[dict[str, Any]]:
        """The acknowledged subscriptions of the active connections, like list_subscriptions."""
        found = []
        for group in self._core.groups.values():
            if group.active is not None:
                found += [
                    {"channel": w.channel, "sid": sid} for sid, w in group.active.sids.items()
                ]
        return sorted(found, key=lambda s: (s["sid"], s["channel"]))

    def group_ended(self, group: int, recv_ns: int, mono_ns: int) -> None:
        """A group's records are over (a run stopped, or its process died): its connections
        go without a word to consumers, as they would have live, where nothing was said
        after the end. A close that really happened is its own `connection_closed`."""
        g = self._core.groups.get(group)
        if g is None:
            return
        for conn in [c for c in self._core.conns.values() if c.group is g]:
            self._fanout.drop_conn(conn, "ended", recv_ns, notify=False)
        g.active = g.standby = None
        g.retiring.clear()
        self._core.roles_changed()
        if g.state is not _S.CLOSED:
            self._core.set_group_state(g, _S.DISCONNECTED, recv_ns, mono_ns)

    def subscription_activity(self) -> list[tuple[int, int, str, int, int | None]]:
        """(conn, sid, channel, frames, last_mono_ns) of every acknowledged subscription on an
        active connection: what a staleness watchdog needs to judge each one's own rate."""
        return [
            (conn.conn, sid, w.channel, w.frames, w.last_mono_ns)
            for conn in (g.active for g in self._core.groups.values())
            if conn is not None
            for sid, w in conn.sids.items()
        ]

    def book(self, market: str) -> BookSnapshot | None:
        """The current book of a market on an active connection (the freshest; across
        feeds, the owner feed's), or None."""
        best: BookSnapshot | None = None
        owner = self._arbiter.owners.get(market) if self._core.arbitrating else None
        for group in self._core.groups.values():
            if owner is not None and group.id != owner:
                continue
            if group.active is None:
                continue
            for wire in group.active.sids.values():
                book = wire.books.get(market)
                if book is not None and (best is None or book.recv_ns > best.recv_ns):
                    best = book.snapshot()
        return best

    @property
    def blocking_queues(self) -> list[DeliveryQueue]:
        """BLOCK queues over their bound after the last input: the pump must wait on them.

        The same list for the engine's life (an edge may hold on to it and test it)."""
        return self._core.blocking

    def take_blocking(self) -> list[DeliveryQueue]:
        """Return and forget the BLOCK queues that went over their bound."""
        blocking = self._core.blocking[:]
        self._core.blocking.clear()
        return blocking

    @property
    def fatal_error(self) -> BaseException | None:
        return self._core.fatal

    def mute(self) -> None:
        """Deliver nothing until `unmute` (replay seek: state advances silently).

        What delivery remembers advances as live (`Fanout.target`): a seek's fast-forward
        counts message copies across feeds, holds a standby's frames and notes what a
        connection delivered, so that from the start on consumers get what a pass from
        the capture's start would have given them."""
        self._core.muted = True
        self._core.cleared.clear()
        for conn in self._core.conns.values():
            for wire in conn.sids.values():
                self._fanout.target(wire)

    def unmute(self, *, snapshot_frames: bool = False) -> None:
        """Deliver again; book consumers get the current book of their markets at once,
        and with `snapshot_frames` every other consumer of a book channel (raw frames,
        models, structs) an `orderbook_snapshot` frame of it, as a subscriber connecting
        now would first receive (`_books_now`).

        Book consumers first get, in market order, the invalid book of each market whose
        book the fast-forward cleared and did not rebuild: per market, every book
        consumer is left with what a pass from the capture's start left it with."""
        core = self._core
        core.muted = False
        for (channel, market), (invalid, owner) in sorted(core.cleared.items()):
            owners = [owner] if owner is not None and owner.active else []
            self._fanout.put_book([*owners, *core.attached.get(channel, ())], market, invalid)
        core.cleared.clear()
        for conn in core.conns.values():
            for wire in conn.sids.values():
                self._fanout.target(wire)
                if conn.group.active is conn and wire.books:
                    self._books_now(conn, wire, snapshot_frames)

    def _books_now(self, conn: Connection, wire: WireSubscription, frames_too: bool) -> None:
        """Give `wire`'s targets the books it holds that its feed delivers, in seq order:
        a book consumer each book's snapshot; with `frames_too` any other a frame built
        from it (`snapshot_frame`: its sid, its last change's seq and receive time, the
        market's id), so that the next frame of the subscription follows the last of them."""
        owns = self._arbiter.owns if self._core.arbitrating else None
        books = sorted((book for market, book in wire.books.items()
                        if owns is None or owns(conn.group, market)),
                       key=lambda book: -1 if book.seq is None else book.seq)  # fmt: skip
        frames: dict[str, Frame] = {}
        for consumer in wire.targets:
            as_book = consumer.delivery is Delivery.BOOK
            if not (as_book or frames_too):
                continue
            for book in books:
                market = book.market
                if consumer.tickers is not None and market not in consumer.tickers:
                    continue
                if as_book:
                    item: Any = book.snapshot()
                elif (item := frames.get(market)) is None:
                    item = frames[market] = snapshot_frame(wire, book, self._core.now[1])
                self._fanout.put(consumer, item)

    def session_closed(
        self, recv_ns: int, mono_ns: int, error: BaseException | None = None
    ) -> None:
        """The session is over (shutdown, or the edge gave up): end every consumer."""
        self._fanout.close_session(recv_ns, mono_ns, error)

    # ------------------------------------------------------------------ connection inputs

    def connection_attempt(
        self, recv_ns: int, mono_ns: int, *, group: int = LIVE_GROUP, feed: int | None = None
    ) -> None:
        """The edge starts a connection attempt (on `group`, which is feed `feed`)."""
        self._core.now = (recv_ns, mono_ns)
        g = self._core.group(group, feed)
        if g.state in (_S.DISCONNECTED, _S.CONNECTING):
            self._core.set_group_state(g, _S.CONNECTING, recv_ns, mono_ns)

    def attempt_failed(
        self, recv_ns: int, mono_ns: int, *, will_retry: bool, group: int = LIVE_GROUP,
        feed: int | None = None,
    ) -> None:  # fmt: skip
        """A connection attempt failed before opening."""
        self._core.now = (recv_ns, mono_ns)
        g = self._core.group(group, feed)
        if g.active is None and g.state is not _S.CLOSED:
            self._core.set_group_state(g, _S.RECONNECTING if will_retry else _S.DISCONNECTED,
                                  recv_ns, mono_ns)  # fmt: skip

    def connection_opened(
        self,
        conn: int,
        recv_ns: int,
        mono_ns: int,
        *,
        standby: bool = False,
        group: int = LIVE_GROUP,
        feed: int | None = None,
    ) -> None:
        """A handshake succeeded. A standby connection is subscribed but not delivered from
        until its snapshots are in (make-before-break); then it replaces the active one."""
        self._core.now = (recv_ns, mono_ns)
        if conn in self._core.conns or self.state is _S.CLOSED:
            return
        g = self._core.group(group, feed)
        state = Connection(conn, g, mono_ns)
        self._core.conns[conn] = state
        if standby and g.active is not None:
            g.standby = state
        else:
            if g.active is not None:  # an open without a close: the old one is gone
                self._fanout.drop_conn(g.active, "replaced", recv_ns, notify=True)
                g.active = None
                self._core.set_group_state(g, _S.RECONNECTING, recv_ns, mono_ns)
            elif g.state is _S.DISCONNECTED:
                self._core.set_group_state(g, _S.CONNECTING, recv_ns, mono_ns)
            g.active = state
            self._core.set_group_state(g, _S.CONNECTED, recv_ns, mono_ns)
        self._core.roles_changed()
        if group in self._live_groups:
            for consumer in list(self._core.consumers.values()):
                if consumer.owns_wire:
                    reason = "resubscribe" if consumer.subscribed_once else "subscribe"
                    self._core.subscribe(state, consumer, reason)

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
        self._core.now = (recv_ns, mono_ns)
        state = self._core.conns.get(conn)
        if state is None:
            return
        g = state.group
        if g.active is state:
            standby = g.standby
            self._fanout.drop_conn(state, "disconnect", recv_ns, notify=standby is None,
                                   keep_owner=standby is not None)  # fmt: skip
            g.active = None
            if standby is not None:
                self._switching.switch(g, recv_ns, mono_ns)  # the standby takes over at once
            else:
                new = _S.RECONNECTING if will_reconnect else _S.DISCONNECTED
                self._core.set_group_state(g, new, recv_ns, mono_ns)
        elif g.standby is state:
            g.standby = None
            self._fanout.drop_conn(state, "standby closed", recv_ns, notify=False)
            for consumer in self._core.consumers.values():  # another feed's stay held
                consumer.held = [f for f in consumer.held if f.conn != conn]
        else:
            self._fanout.drop_conn(state, "retired", recv_ns, notify=False)
            g.retiring.discard(conn)
        self._core.roles_changed()
        if not self._core.overlap:
            for consumer in self._core.consumers.values():
                consumer.seen = None

    # ------------------------------------------------------------------ time

    def tick(self, recv_ns: int, mono_ns: int) -> None:
        """Time passes: fail overdue subscribes, fall back on overdue resyncs, checkpoint."""
        self._core.now = (recv_ns, mono_ns)
        for state in list(self._core.conns.values()):
            self._check_timeouts(state, recv_ns, mono_ns)
        if self._core.checkpoint_ns is not None:
            for group in self._core.groups.values():
                conn = group.active
                if conn is None or mono_ns - conn.last_checkpoint_ns < self._core.checkpoint_ns:
                    continue
                if conn.sids and is_quiescent(conn):
                    conn.last_checkpoint_ns = mono_ns
                    delivers = self._arbiter.owned_by(group) if self._core.arbitrating else None
                    record = checkpoint_record(conn, delivers)
                    self.outbox.append(Checkpoint(conn.conn, group.id, recv_ns, mono_ns, record))

    def restore_checkpoint(
        self,
        record: dict[str, Any],
        recv_ns: int,
        mono_ns: int,
        *,
        conn: int,
        group: int = LIVE_GROUP,
        feed: int | None = None,
    ) -> None:
        """Replace a connection's subscriptions and books with a checkpoint's (replay seek).

        The connection is opened (as the group's active one) if it is not open yet. With
        redundant feeds, the markets the record says its feed delivered are delivered
        from this feed from now on; a market no record names goes to the first feed
        restored with a valid book of it (restore the feeds' checkpoints oldest first).

        Raises:
            ValueError: the record cannot be restored.
        """
        self._core.now = (recv_ns, mono_ns)
        if conn not in self._core.conns:
            self.connection_opened(conn, recv_ns, mono_ns, group=group, feed=feed)
        state = self._core.conns[conn]
        for wire in state.wires():
            wire.targets = []
        state.sids.clear()
        state.pending.clear()
        for wire in restore_wires(state, record):
            self._fanout.target(wire)
            if self._core.arbitrating and wire.is_book and state.group.active is state:
                for market in wire.books:
                    self._arbiter.snapshot_applied(state, wire, market, recv_ns, mono_ns)
        state.last_checkpoint_ns = mono_ns
        g = state.group
        delivers = record.get("delivers")
        if self._core.arbitrating and delivers is not None and g.active is state:
            self._arbiter.deliver_from(g, delivers)
        if state.sids and g.active is state and g.state is _S.CONNECTED:
            self._core.set_group_state(g, _S.STREAMING, recv_ns, mono_ns)

    def _check_timeouts(self, state: Connection, recv_ns: int, mono_ns: int) -> None:
        ack_ns = int(self.config.ack_timeout_s * NS)
        for key, wire in list(state.pending.items()):
            owner = wire.owner
            if owner is None or mono_ns - wire.pending_since_ns < ack_ns:
                continue
            del state.pending[key]
            error = SubscribeTimeout(wire.channel, self.config.ack_timeout_s)
            self._core.report("ack_timeout", str(error), recv_ns, state.conn, None, wire.channel)
            self.outbox.append(SubscribeResult(owner.cid, wire.channel, None, error))
            if state.group.active is state:
                self._fanout.end_consumer(owner, error)
        for wire in list(state.sids.values()):
            self._resync.check_timeout(state, wire, recv_ns, mono_ns)
        standby_ns = int(self.config.standby_timeout_s * NS)
        if state.group.standby is state and mono_ns - state.opened_mono_ns >= standby_ns:
            message = f"standby connection {state.conn} not ready"
            self._core.report("standby_timeout", message, recv_ns, state.conn)
            self.outbox.append(CloseConnection(state.conn, "standby not ready in time"))
            state.opened_mono_ns = mono_ns  # ask once per timeout period
