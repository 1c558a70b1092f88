"""Control frames and sent commands: acks, unsubscribes, ok and error replies.

Wire subscriptions are created when a `subscribe` command is *sent* (so replay
rebuilds them from the recorded command) and bound to their sid by the
`subscribed` ack, matched on (command id, channel). Consequences, each a
behaviour of docs/protocol.md section 9:

* an ack that matches nothing pending is an orphan (a cancelled subscribe): it is
  answered with `unsubscribe` (#268), and the reply to that unsubscribe, matched
  by command id, never tears down a live subscription that reused the sid (#354);
* frames on a sid we unsubscribed are ignored from the moment the command is sent
  (#255);
* an `unsubscribed` we did not ask for ends the stream that owns that subscription
  and drops its books (#81, #206); error 10 or 25 does the same with an exception
  (#18). A recorder's own (queue-less) subscription is subscribed again instead;
  attached consumers follow the channel and are never ended by one subscription;
* an `ok` or `error` carrying the next seq of a subscription consumes that number
  (docs/protocol.md section 11.2), so it never looks like a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from schemas.channels import BOOK_CHANNELS, SEQUENCED_CHANNELS
from stream.connections import Connection
from stream.core import EngineCore
from stream.decode import (
    ErrorFrame,
    OkFrame,
    SubscribedFrame,
    UnsubscribedFrame,
    decode_command,
)
from stream.errors import ServerError, SubscriptionTerminated
from stream.events import CommandReply, SubscribeResult
from stream.fanout import Fanout
from stream.resync import Resync
from stream.state import ConnectionState
from stream.subscriptions import ConsumerSubscription, WireSubscription, market_set
from stream.switching import Switching

__all__ = ["TERMINAL_ERROR_CODES", "ControlInput"]

#: How a frame stashed before its subscription's ack is processed once the ack is in
#: (the frame input's `dispatch`).
Dispatch = Callable[[Connection, bytes, int, int], None]

TERMINAL_ERROR_CODES = frozenset({10, 25})  # channel error, subscription buffer overflow


class ControlInput:
    """The engine's control-frame and command input (see the module docstring)."""

    __slots__ = ("_core", "_dispatch", "_fanout", "_resync", "_switching")

    def __init__(
        self,
        core: EngineCore,
        fanout: Fanout,
        resync: Resync,
        switching: Switching,
        dispatch: Dispatch,
    ) -> None:
        self._core = core
        self._fanout = fanout
        self._resync = resync
        self._switching = switching
        self._dispatch = dispatch

    # ------------------------------------------------------------------ commands sent

    def command_sent(self, raw: bytes, recv_ns: int, mono_ns: int, conn: int) -> None:
        """A command went out on `conn` (live: we sent it; replay: the capture says so)."""
        state = self._core.conns.get(conn)
        try:
            cmd = decode_command(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        intent = self._core.intents.pop(cmd.id, None) if cmd.id is not None else None
        if state is None:
            return
        params = cmd.params or {}
        if cmd.cmd == "subscribe":
            owner = intent[1] if intent and isinstance(intent[1], ConsumerSubscription) else None
            for channel in params.get("channels") or []:
                state.pending[(cmd.id, channel)] = WireSubscription(
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
        elif cmd.cmd == "unsubscribe":
            targets = []
            for sid in params.get("sids") or []:
                wire = state.sids.pop(sid, None)
                if wire is not None:
                    targets.append(wire)
                    notify = wire.owner is not None and wire.owner.active
                    self._fanout.clear_books(wire, "unsubscribed", recv_ns, notify=notify)
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

    # ------------------------------------------------------------------ control frames

    def handle(self, state: Connection, frame: Any, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        """A control frame (an ack, an unsubscribed, an ok or error reply) arrived."""
        kind = type(frame)
        if kind is SubscribedFrame:
            self._on_subscribed(state, frame, recv_ns, mono_ns)
        elif kind is UnsubscribedFrame:
            self._on_unsubscribed(state, frame, recv_ns)
        elif kind is OkFrame:
            self._on_ok(state, frame, recv_ns)
        elif kind is ErrorFrame:
            self._on_error(state, frame, raw, recv_ns)

    def _on_subscribed(
        self, state: Connection, frame: SubscribedFrame, recv_ns: int, mono_ns: int
    ) -> None:
        channel, sid = frame.msg.channel, frame.msg.sid
        wire = state.pending.pop((frame.id, channel), None)
        if wire is None:
            # An ack for a subscribe that was cancelled (or never ours): unsubscribe it (#268).
            message = f"ack for {channel} sid {sid} with no pending subscribe (id {frame.id})"
            self._core.report("orphan_ack", message, recv_ns, state.conn, sid, channel)
            state.retired.add(sid)
            state.stash.pop(sid, None)
            self._core.command(state, "unsubscribe", {"sids": [sid]}, "orphan_ack")
            return
        wire.sid = sid
        state.retired.discard(sid)  # a server may reuse a sid number
        state.sids[sid] = wire
        self._fanout.target(wire)
        if wire.owner is not None:
            self._core.outbox.append(SubscribeResult(wire.owner.cid, channel, sid))
        group = state.group
        if group.active is state and group.state is ConnectionState.CONNECTED:
            self._core.set_group_state(group, ConnectionState.STREAMING, recv_ns, mono_ns)
        stashed = state.stash.pop(sid, None)
        if not state.pending:
            state.stash.clear()  # sids never acked in this cycle: nothing will claim them
            state.stash_warned = False
        if stashed:
            for raw, r_ns, m_ns in stashed:
                self._dispatch(state, raw, r_ns, m_ns)
        if group.standby is state:
            self._switching.maybe_switch(state, recv_ns, mono_ns)

    def _on_unsubscribed(self, state: Connection, frame: UnsubscribedFrame, recv_ns: int) -> None:
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
        state: Connection,
        wire: WireSubscription,
        recv_ns: int,
        error: BaseException | None,
        reason: str,
    ) -> None:
        """The server ended a subscription: drop its books; end its owner's stream, or, for
        a recorder's queue-less subscription, subscribe again so recording goes on.

        Attached consumers are not ended: they follow the channel, and a new subscription
        (the recorder's, or a later one) feeds them again. Replay takes the same decision
        without knowing whether a re-subscribe follows, which keeps the two in step.
        """
        self._fanout.clear_books(wire, reason, recv_ns, notify=True)
        message = f"{wire.channel} sid {wire.sid}: {reason}"
        self._core.report(
            "subscription_ended", message, recv_ns, state.conn, wire.sid, wire.channel
        )
        wire.targets = []
        owner = wire.owner
        if owner is None or not owner.active:
            return
        if owner.queue is not None:
            self._fanout.end_consumer(owner, error)
        else:
            self._core.subscribe(state, owner, "resubscribe")

    def _on_ok(self, state: Connection, frame: OkFrame, recv_ns: int) -> None:
        sent = state.commands.pop(frame.id, None) if frame.id is not None else None
        wire = state.sids.get(frame.sid) if frame.sid is not None else None
        if wire is not None and frame.seq is not None:
            self._observe_control_seq(wire, frame.seq)
        if sent is None or frame.id is None:
            return
        name, params, targets = sent
        if name == "update_subscription" and isinstance(frame.msg, dict):
            tickers = frame.msg.get("market_tickers")
            changes_markets = params.get("action") in ("add_markets", "delete_markets")
            for target in targets:
                if tickers is None:
                    continue
                target.markets = frozenset(tickers)
                for market in [m for m in target.books if m not in target.markets]:
                    del target.books[market]
                if target.owner is not None and changes_markets:
                    target.owner.params["market_tickers"] = sorted(tickers)
                    target.owner.params.pop("market_ticker", None)
        self._core.outbox.append(CommandReply(frame.id, "ok", frame.msg))

    @staticmethod
    def _observe_control_seq(wire: WireSubscription, seq: int) -> None:
        """A reply carrying the subscription's next seq consumes it; it never starts a resync."""
        if wire.sequenced and wire.last_seq is not None and seq == wire.last_seq + 1:
            wire.last_seq = seq

    def _on_error(self, state: Connection, frame: ErrorFrame, raw: bytes, recv_ns: int) -> None:
        code, message = frame.msg.code, frame.msg.msg or ""
        sent = state.commands.pop(frame.id, None) if frame.id is not None else None
        wire = state.sids.get(frame.sid) if frame.sid is not None else None
        channel = wire.channel if wire else None
        core = self._core
        core.report(
            "server_error", f"error {code}: {message}", recv_ns, state.conn, frame.sid, channel,
            code=code, raw=raw,
        )  # fmt: skip
        if wire is not None and frame.seq is not None:
            self._observe_control_seq(wire, frame.seq)
        if frame.id is not None:
            core.outbox.append(CommandReply(frame.id, "error", {"code": code, "msg": message}))
            for key in [k for k in state.pending if k[0] == frame.id]:  # a rejected subscribe
                pending = state.pending.pop(key)
                if pending.owner is not None:
                    error = ServerError(code, message)
                    result = SubscribeResult(pending.owner.cid, pending.channel, None, error)
                    core.outbox.append(result)
                    self._fanout.end_consumer(pending.owner, error)
        failed_resync = sent is not None and sent[1].get("action") == "get_snapshot"
        if sent is not None and failed_resync:  # no snapshot this way: resubscribe
            for target in sent[2]:
                target.resync_since_ns = None
                self._resync.fallback_resubscribe(state, target, recv_ns)
        if wire is not None and wire.sid is not None and code in TERMINAL_ERROR_CODES:
            state.sids.pop(wire.sid, None)
            state.retired.add(wire.sid)
            ended = SubscriptionTerminated(wire.channel, message or f"error {code}", code)
            self._end_wire(state, wire, recv_ns, ended, f"error {code}")
