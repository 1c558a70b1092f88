"""Connection states of a session, and the table of allowed transitions.

Theory of operation. A session starts DISCONNECTED. A connection attempt moves it
to CONNECTING (first time) or keeps it RECONNECTING (after a loss); an opened
connection makes it CONNECTED, and the first acknowledged subscription or data
frame makes it STREAMING. Losing the connection moves it to RECONNECTING when the
edge will try again, else DISCONNECTED. CLOSED is terminal: shutdown, giving up
after the last attempt, or a fatal error. Replay walks the same table from the
recorded events, so a consumer sees the same transitions it saw live.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from stream.errors import IllegalTransition

__all__ = ["TRANSITIONS", "ConnectionState", "check_transition"]


class ConnectionState(StrEnum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    STREAMING = "STREAMING"
    RECONNECTING = "RECONNECTING"
    CLOSED = "CLOSED"


_S = ConnectionState

TRANSITIONS: Final[dict[ConnectionState, frozenset[ConnectionState]]] = {
    _S.DISCONNECTED: frozenset({_S.CONNECTING, _S.RECONNECTING, _S.CLOSED}),
    _S.CONNECTING: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.DISCONNECTED, _S.CLOSED}),
    _S.CONNECTED: frozenset({_S.STREAMING, _S.RECONNECTING, _S.DISCONNECTED, _S.CLOSED}),
    _S.STREAMING: frozenset({_S.RECONNECTING, _S.DISCONNECTED, _S.CLOSED}),
    _S.RECONNECTING: frozenset({_S.CONNECTED, _S.DISCONNECTED, _S.CLOSED}),
    _S.CLOSED: frozenset(),
}


def check_transition(old: ConnectionState, new: ConnectionState) -> None:
    """Raise IllegalTransition unless the table allows old -> new (or old == new)."""
    if old != new and new not in TRANSITIONS[old]:
        raise IllegalTransition(f"cannot go from {old.value} to {new.value}")
