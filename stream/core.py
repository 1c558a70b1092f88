"""What every part of the engine shares: its registries, its outputs, its groups.

`Engine` (stream.engine) is one object that owns a few collaborators, each in its
own module: `stream.fanout` (who receives each frame or book), `stream.resync`
(sequence breaks and snapshot requests), `stream.frames` (the frame input),
`stream.control` (acks, replies, commands sent) and `stream.switching`
(make-before-break). They all work on one `EngineCore`: the connections and their
groups, the consumers, the commands in flight, the outbox, the counters. This
module owns that state and the few operations on it that every collaborator
needs: reporting, asking for a command, moving a group through the state table.
It knows nothing of sockets, files or clocks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from schemas.envelope import encode_json
from stream.book import BookSnapshot
from stream.connections import Connection, Group, aggregate_state
from stream.events import ErrorReport, Output, SendCommand, StateChanged
from stream.queues import DeliveryQueue
from stream.state import ConnectionState, check_transition
from stream.subscriptions import ConsumerSubscription, WireSubscription

__all__ = ["NS", "EngineConfig", "EngineCore", "EngineStats", "Intent"]

NS = 1_000_000_000

#: Why a command was sent, and whom it is for: (reason, consumer or wire subscription).
Intent = tuple[str, ConsumerSubscription | WireSubscription | None]


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
    #: An ERROR queue that overflows closes the whole session (the default: no
    #: half-alive session, docs/protocol.md section 9.12). False ends only that consumer,
    #: with the error in its iterator: what a recorder wants, whose capture must not
    #: stop for a slow reader.
    backpressure_fatal: bool = True
    #: Redundant feeds of a live session (`stream.arbitration`): groups 0..feeds-1 each
    #: carry every consumer's subscriptions, and consumers see each message once.
    feeds: int = 1
    #: How long (receive time) a message is remembered to drop its copies on other feeds.
    dedup_window_s: float = 60.0


@dataclass(slots=True)
class EngineStats:
    """Counters of what the engine did; the live edge adds them to its statistics."""

    frames: int = 0
    duplicates: int = 0
    gaps: int = 0
    resets: int = 0
    resyncs: int = 0
    malformed: int = 0
    subunit_values: int = 0  # prices or sizes finer than the wire's unit (kept exact)
    exact_reads: int = 0  # book frames whose numbers came as JSON numbers (read exactly)
    unknown_types: int = 0
    stale_frames: int = 0  # frames for retired sids or closed connections
    stashed: int = 0
    stash_evicted: int = 0
    unrouted: int = 0
    dropped_no_book: int = 0
    switches: int = 0


class EngineCore:
    """The engine's state, shared by its collaborators (see the module docstring).

    Attributes:
        state: the session's aggregate connection state.
        outbox: outputs for the edge (commands to send, reports, state changes...).
        conns, groups: open connections by number; groups (runs) by id.
        active_ids, overlap: derived for the hot path (see `roles_changed`).
        consumers, attached: consumer subscriptions by cid; attaching ones by channel.
        intents: why each command in flight was sent.
        blocking: BLOCK queues over their bound after the last input (one list for life).
        fatal: the error that closed the session, if any.
        muted: replay's fast-forward: state advances as live, nothing reaches a queue.
        cleared: while muted, the books cleared and not rebuilt since, by (channel, market):
            the invalid book its consumers get when the engine unmutes, and the wire's owner.
        now: (recv_ns, mono_ns) of the latest input that is not a frame.
        first_last: the "last seq" before a subscription's first frame.
    """

    __slots__ = (
        "active_ids",
        "arbitrating",
        "attached",
        "blocking",
        "checkpoint_ns",
        "cleared",
        "config",
        "conns",
        "consumers",
        "fatal",
        "first_last",
        "groups",
        "intents",
        "muted",
        "next_cid",
        "next_cmd_id",
        "now",
        "outbox",
        "overlap",
        "state",
        "stats",
    )

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.state = ConnectionState.DISCONNECTED
        self.outbox: deque[Output] = deque()
        self.stats = EngineStats()
        self.conns: dict[int, Connection] = {}
        self.groups: dict[int, Group] = {}
        self.active_ids: set[int] = set()
        self.overlap = False
        self.arbitrating = False
        self.consumers: dict[int, ConsumerSubscription] = {}
        self.attached: dict[str, list[ConsumerSubscription]] = {}
        self.intents: dict[int, Intent] = {}
        self.next_cid = 1
        self.next_cmd_id = 1
        self.fatal: BaseException | None = None
        self.blocking: list[DeliveryQueue] = []
        self.muted = False
        self.cleared: dict[tuple[str, str], tuple[BookSnapshot, ConsumerSubscription | None]] = {}
        self.now = (0, 0)
        interval = config.checkpoint_interval_s
        self.checkpoint_ns = None if interval is None else int(interval * NS)
        first = config.first_seq
        self.first_last = None if first is None else first - 1

    # ------------------------------------------------------------------ groups and roles

    def group(self, group_id: int, feed: int | None = None) -> Group:
        """The group of that id, made on first use; `feed` names which feed it is. Once a
        group of feed 1 or above exists, the engine arbitrates (`stream.arbitration`)."""
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id, feed)
        elif feed is not None and group.feed is None:
            group.feed = feed
        if feed and not self.arbitrating:
            self.arbitrating = True
            self.roles_changed()
        return group

    def roles_changed(self) -> None:
        """Recompute what the hot path reads: active connections, and whether any group is
        in a make-before-break overlap or feeds are arbitrated (both leave the flat path).
        Call after every change of a group's roles."""
        self.active_ids = {g.active.conn for g in self.groups.values() if g.active is not None}
        self.overlap = self.arbitrating or any(
            g.standby is not None or g.retiring for g in self.groups.values()
        )

    def set_group_state(
        self, group: Group, new: ConnectionState, recv_ns: int, mono_ns: int
    ) -> None:
        """Move one group through the state table; report the session's aggregate state."""
        if group.state == new:
            return
        check_transition(group.state, new)
        group.state = new
        self.publish_state(aggregate_state(list(self.groups.values())), recv_ns, mono_ns)

    def publish_state(self, new: ConnectionState, recv_ns: int, mono_ns: int) -> None:
        old = self.state
        if old is ConnectionState.CLOSED or old == new:
            return
        self.state = new
        self.outbox.append(StateChanged(old, new, recv_ns, mono_ns))

    # ------------------------------------------------------------------ outputs

    def report(
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

    def command(
        self,
        conn: Connection,
        name: str,
        params: dict[str, Any] | None,
        reason: str,
        intent: ConsumerSubscription | WireSubscription | None = None,
    ) -> int:
        """Ask the edge to send a command. Its effects happen when `command_sent` reports it."""
        cmd_id = self.next_cmd_id
        self.next_cmd_id += 1
        body: dict[str, Any] = {"id": cmd_id, "cmd": name}
        if params is not None:
            body["params"] = params
        self.intents[cmd_id] = (reason, intent)
        self.outbox.append(SendCommand(conn.conn, encode_json(body), name, cmd_id, reason))
        return cmd_id

    def subscribe(self, conn: Connection, consumer: ConsumerSubscription, reason: str) -> None:
        params: dict[str, Any] = {"channels": [consumer.channel], **consumer.params}
        if reason == "resubscribe" and consumer.channel == "ticker":
            params["send_initial_snapshot"] = True  # fresh state after a reconnect
        consumer.subscribed_once = True
        self.command(conn, "subscribe", params, reason, consumer)
