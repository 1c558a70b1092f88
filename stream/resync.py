"""Sequence breaks and how a subscription gets its state back.

A gap (seq beyond the last + 1) or a reset (seq below it) on a wire subscription
is an event (`GapDetected`) and a report. On a book channel the subscription's
books are cleared (book consumers get an invalid snapshot) and a snapshot of
every market it covered is requested with `update_subscription` / `get_snapshot`
(docs/protocol.md section 9.1). When that fails (an error reply) or no snapshot
comes within `resync_timeout_s`, the subscription is unsubscribed and subscribed
again, which brings fresh snapshots; never for a subscription the server ended
meanwhile, which would record its channel twice.
"""

from __future__ import annotations

from stream.connections import Connection
from stream.core import NS, EngineCore
from stream.events import GapDetected, ResyncRequested
from stream.fanout import Fanout
from stream.subscriptions import WireSubscription

__all__ = ["Resync"]


class Resync:
    """Gap and reset handling for one engine (see the module docstring)."""

    __slots__ = ("_core", "_fanout", "_timeout_ns")

    def __init__(self, core: EngineCore, fanout: Fanout) -> None:
        self._core = core
        self._fanout = fanout
        self._timeout_ns = int(core.config.resync_timeout_s * NS)

    def sequence_break(
        self,
        conn: Connection,
        wire: WireSubscription,
        last: int,
        seq: int,
        recv_ns: int,
        mono_ns: int,
    ) -> None:
        """`seq` does not follow `last`: report it; on a book channel, clear and resync."""
        core = self._core
        kind = "gap" if seq > last else "reset"
        if kind == "gap":
            core.stats.gaps += 1
        else:
            core.stats.resets += 1
        assert wire.sid is not None
        core.outbox.append(
            GapDetected(kind, conn.conn, wire.sid, wire.channel, last + 1, seq, recv_ns, mono_ns)
        )
        message = f"{wire.channel} sid {wire.sid}: expected seq {last + 1}, got {seq}"
        core.report(kind, message, recv_ns, conn.conn, wire.sid, wire.channel)
        if wire.is_book:
            markets = set(wire.books) | set(wire.markets or ()) | wire.awaiting_snapshot
            self._fanout.clear_books(wire, kind, recv_ns, notify=True)
            self.request_snapshot(conn, wire, sorted(markets), recv_ns)

    def request_snapshot(
        self, conn: Connection, wire: WireSubscription, markets: list[str], recv_ns: int
    ) -> None:
        """Ask for fresh snapshots of `markets` (one request in flight covers them all)."""
        new = [m for m in markets if m not in wire.awaiting_snapshot]
        if not new and wire.resync_cmd_id is not None:
            return
        wire.awaiting_snapshot.update(markets)
        core = self._core
        core.stats.resyncs += 1
        assert wire.sid is not None
        core.outbox.append(
            ResyncRequested(
                conn.conn, wire.sid, wire.channel, tuple(markets), "get_snapshot", recv_ns
            )
        )
        params = {"sids": [wire.sid], "action": "get_snapshot", "market_tickers": markets}
        core.command(conn, "update_subscription", params, "resync", wire)

    def fallback_resubscribe(self, conn: Connection, wire: WireSubscription, recv_ns: int) -> None:
        """get_snapshot failed or timed out: unsubscribe and subscribe again (fresh snapshot).

        Not for a subscription the server ended meanwhile (error 25, `unsubscribed`): its
        owner was already ended or subscribed again, and a second subscribe would record
        the channel twice.
        """
        owner = wire.owner
        if owner is None or not owner.active or wire.sid is None:
            return
        if conn.sids.get(wire.sid) is not wire:
            return
        core = self._core
        core.stats.resyncs += 1
        markets = tuple(sorted(wire.markets or ()))
        core.outbox.append(
            ResyncRequested(conn.conn, wire.sid, wire.channel, markets, "resubscribe", recv_ns)
        )
        core.command(conn, "unsubscribe", {"sids": [wire.sid]}, "fallback")
        core.subscribe(conn, owner, "resubscribe")

    def check_timeout(
        self, conn: Connection, wire: WireSubscription, recv_ns: int, mono_ns: int
    ) -> None:
        """A get_snapshot unanswered for `resync_timeout_s`: fall back to resubscribing."""
        since = wire.resync_since_ns
        if since is not None and mono_ns - since >= self._timeout_ns:
            wire.resync_since_ns = None
            message = f"no snapshot for sid {wire.sid} after get_snapshot"
            self._core.report("resync_timeout", message, recv_ns, conn.conn, wire.sid, wire.channel)
            self.fallback_resubscribe(conn, wire, recv_ns)
