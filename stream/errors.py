"""Exceptions of the `stream` package (the engine and the Session API).

    StreamError                     base of everything raised to a consumer
    ├── SessionClosed               the session ended; iterators raise it only if it ended in error
    ├── BackpressureError           a queue with the ERROR policy overflowed (fatal for the session)
    ├── SubscriptionError           a subscription cannot go on
    │   ├── SubscribeTimeout        no `subscribed` ack within the timeout (names the channel)
    │   ├── SubscriptionTerminated  the server ended it: error 10 or 25, or a server `unsubscribed`
    │   └── NotSubscribed           run_forever() with nothing subscribed; an unknown subscription
    ├── ServerError                 an `error` reply to one of our commands (code, message)
    └── IllegalTransition           a connection state change the state table forbids

Gaps, duplicates, drops and disconnects are data (reports and counters), not
exceptions; they reach `on_error` as `ErrorReport`s and never stop a stream.
"""

from __future__ import annotations

__all__ = [
    "BackpressureError",
    "IllegalTransition",
    "NotSubscribed",
    "ServerError",
    "SessionClosed",
    "StreamError",
    "SubscribeTimeout",
    "SubscriptionError",
    "SubscriptionTerminated",
]


class StreamError(Exception):
    """Base class of the errors `stream` raises to consumers."""


class SessionClosed(StreamError):
    """The session is closed; no more subscriptions or commands."""


class BackpressureError(StreamError):
    """A consumer queue with the ERROR overflow policy was full.

    Fatal for the session: a stateful consumer that misses a message has a corrupt
    view, so the session stops instead of going on half-alive (docs/protocol.md section 9.12).
    """

    def __init__(self, channel: str, maxsize: int, *, fatal: bool = True) -> None:
        ended = "the session is closed" if fatal else "this subscription is ended"
        super().__init__(
            f"consumer of {channel} fell {maxsize} messages behind (overflow=ERROR); "
            f"{ended}. Read faster, raise maxsize, or use DROP_OLDEST or BLOCK."
        )
        self.channel = channel
        self.maxsize = maxsize


class SubscriptionError(StreamError):
    """A subscription cannot go on."""


class SubscribeTimeout(SubscriptionError):
    """The server never acknowledged a subscribe (docs/protocol.md section 9.13)."""

    def __init__(self, channel: str, timeout_s: float) -> None:
        super().__init__(f"no `subscribed` ack for channel {channel!r} within {timeout_s:g} s")
        self.channel = channel


class SubscriptionTerminated(SubscriptionError):
    """The server ended a subscription (error 10 or 25, or an `unsubscribed` we did not ask for)."""

    def __init__(self, channel: str, reason: str, code: int | None = None) -> None:
        super().__init__(f"subscription to {channel!r} ended by the server: {reason}")
        self.channel = channel
        self.reason = reason
        self.code = code


class NotSubscribed(SubscriptionError):
    """Nothing is subscribed (run_forever, docs/protocol.md section 9.14) or the subscription
    is unknown."""


class ServerError(StreamError):
    """The server answered a command with an `error` reply."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"server error {code}: {message}")
        self.code = code
        self.message = message


class IllegalTransition(StreamError):
    """A connection state change that the state table does not allow."""
