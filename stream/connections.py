"""What the engine knows about each connection, and how connections are grouped.

A *connection* (one socket, numbered by the edge) owns its wire subscriptions:
the sid map, subscribes awaiting their ack, commands awaiting their reply, frames
stashed for sids not yet acknowledged, and the sids it has retired.

A *group* is one feed of a recorder run, or of the live session (a session has one
feed unless it runs redundant ones, `stream.arbitration`): a sequence of connections
of which at most one is *active* (delivered from), one *standby* (a make-before-
break replacement being readied) and some *retiring* (switched away from, not yet
closed). A live session has a single group; a replay of a capture root holding
several concurrent runs (shards) has one group per run and feed, all streaming at
once.
Each group walks the state table of `stream.state`; the session sees their
aggregate.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from stream.state import ConnectionState
from stream.subscriptions import WireSubscription

__all__ = ["Connection", "Group", "aggregate_state"]


class Connection:
    """One connection's subscriptions and pending work."""

    __slots__ = (
        "commands",
        "conn",
        "group",
        "last_checkpoint_ns",
        "opened_mono_ns",
        "pending",
        "retired",
        "sids",
        "stash",
        "stash_warned",
    )

    def __init__(self, conn: int, group: Group, mono_ns: int) -> None:
        self.conn = conn
        self.group = group
        self.opened_mono_ns = mono_ns
        self.last_checkpoint_ns = mono_ns  # the first checkpoint comes one interval after open
        self.sids: dict[int, WireSubscription] = {}
        self.pending: dict[tuple[int | None, str], WireSubscription] = {}  # (cmd id, channel)
        self.commands: dict[int, tuple[str, dict[str, Any], list[WireSubscription]]] = {}
        self.stash: dict[int, deque[tuple[bytes, int, int]]] = {}
        self.stash_warned = False
        self.retired: set[int] = set()

    def wires(self) -> list[WireSubscription]:
        return list(self.sids.values()) + list(self.pending.values())

    def __repr__(self) -> str:
        return f"Connection({self.conn}, group={self.group.id}, sids={sorted(self.sids)})"


class Group:
    """The connections of one run (or of the live session) and their state."""

    __slots__ = ("active", "feed", "id", "retiring", "standby", "state")

    def __init__(self, group_id: int, feed: int | None = None) -> None:
        self.id = group_id
        #: Which feed of a redundant session this group is (`stream.arbitration`);
        #: None where feeds are not known (a shard of an old capture).
        self.feed = feed
        self.active: Connection | None = None
        self.standby: Connection | None = None
        self.retiring: set[int] = set()
        self.state = ConnectionState.DISCONNECTED


_RANK = {
    ConnectionState.CLOSED: 0,
    ConnectionState.DISCONNECTED: 1,
    ConnectionState.RECONNECTING: 2,
    ConnectionState.CONNECTING: 3,
    ConnectionState.CONNECTED: 4,
    ConnectionState.STREAMING: 5,
}


def aggregate_state(groups: list[Group]) -> ConnectionState:
    """The most alive state among the groups (DISCONNECTED when there is none)."""
    if not groups:
        return ConnectionState.DISCONNECTED
    return max((g.state for g in groups), key=_RANK.__getitem__)
