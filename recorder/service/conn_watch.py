"""Watching a recorder's connections from its event stream: who is open, and a log line each.

This module owns `ConnectionWatch`, a `recorder.link.sink.Sink` put in front of the
journal's sink. Frames, commands and checkpoints go straight through (the inner
sink's own bound methods, so the receive path pays nothing); each connection event
is passed on first, then read: which connections are open and in which role
(`active`, or `standby` during a make-before-break switch), and one log line for
what an operator wants to see in a week-long job's log (a connection opened or
closed with its code and reason, a reconnect wait, a failed attempt, a switch).
It decides nothing and never raises into the session.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from recorder.link.sink import Sink
from recorder.service.health import ConnectionHealth
from schemas.events import (
    AttemptFailed,
    Closed,
    ConnectionEvent,
    Opened,
    ReconnectWait,
    Switched,
)

__all__ = ["ConnectionWatch"]

log = logging.getLogger("kalshi_tape.recorder.connections")

_NS = 1_000_000_000
#: Disconnect reasons the recorder chose itself: an INFO line; the others are WARNING.
_PROACTIVE = frozenset({"user_requested", "scheduled", "callback_triggered", "connection_limit"})


@dataclass
class _Open:
    role: str
    opened_mono_ns: int


class ConnectionWatch:
    """A sink that forwards everything to `inner` and watches the connection events."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.frame_in = inner.frame_in
        self.command_out = inner.command_out
        self.checkpoint = inner.checkpoint
        self._open: dict[int, _Open] = {}

    def event(
        self, conn: int, recv_ns: int, mono_ns: int, event: ConnectionEvent, feed: int = 0
    ) -> None:
        if feed:
            self.inner.event(conn, recv_ns, mono_ns, event, feed=feed)
        else:
            self.inner.event(conn, recv_ns, mono_ns, event)
        try:
            self._observe(conn, mono_ns, event, feed)
        except Exception as exc:  # a log line must never cost a frame
            log.debug("could not describe event %s: %r", event.name, exc)

    def connections(self, mono_ns: int) -> list[ConnectionHealth]:
        """The open connections, oldest first, with their age at `mono_ns`."""
        return [
            ConnectionHealth(no, c.role, max(0.0, (mono_ns - c.opened_mono_ns) / _NS))
            for no, c in sorted(self._open.items())
        ]

    def _observe(self, conn: int, mono_ns: int, event: ConnectionEvent, feed: int) -> None:
        match event:
            case Opened(url=url, standby=standby):
                role = "standby" if standby else "active"
                self._open[conn] = _Open(role, mono_ns)
                log.info("connection %d open to %s%s%s", conn, url,
                         " (standby for a switch)" if standby else "",
                         f" (feed {feed})" if feed else "")  # fmt: skip
            case Switched(old_conn=old_no, new_conn=new_no):
                new = self._open.get(new_no)
                if new is not None:
                    new.role = "active"
                old = self._open.get(old_no)
                if old is not None:
                    old.role = "closing"
                log.info("switched from connection %s to %s (make-before-break)", old_no, new_no)
            case Closed() as closed:
                self._open.pop(conn, None)
                reason = closed.disconnect_reason
                after = "reconnecting" if closed.will_reconnect else "not reconnecting"
                level = logging.INFO if reason in _PROACTIVE else logging.WARNING
                log.log(level, "connection %d closed: code %s %s(%s, by the %s); %s", conn,
                        closed.code, f"{closed.reason!r} " if closed.reason else "",
                        reason or "unknown", closed.initiator or "unknown side", after)  # fmt: skip
            case ReconnectWait(delay_s=delay_s, attempt=attempt, reason=why):
                log.info("next connection attempt (%s) in %.2f s (%s)", attempt, delay_s, why)
            case AttemptFailed(error=error, will_retry=will_retry):
                retry = "will retry" if will_retry else "giving up"
                log.warning("connection attempt failed: %s; %s", error, retry)
