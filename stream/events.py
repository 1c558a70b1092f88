"""What the engine hands out: the delivered frame, and every other output.

`Frame` is what a consumer asking for speed receives (and what a model consumer's
message is built from). `BinaryMessage` marks the bytes of a message that came
as a binary WebSocket message, so the opcode travels with the bytes through every
layer without a field on the hot path. The other classes are the engine's outputs, drained by
the edge from `Engine.outbox`: commands to send, state changes, error reports,
gaps and resyncs, connection switches, connection checkpoints. All are immutable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from stream.state import ConnectionState

__all__ = [
    "Arbitrated",
    "BinaryMessage",
    "Checkpoint",
    "CloseConnection",
    "CommandReply",
    "ErrorReport",
    "Fatal",
    "Frame",
    "GapDetected",
    "Output",
    "ResyncRequested",
    "SendCommand",
    "StateChanged",
    "SubscribeResult",
    "Switched",
]


_PARSERS: list[Callable[[bytes], Any]] = []


def _parsers() -> list[Callable[[bytes], Any]]:
    """(parse_message, parse_struct), imported on first use: the models load only if a
    consumer asks for them."""
    if not _PARSERS:
        from schemas.parse import parse_message
        from schemas.structs import parse_struct

        _PARSERS.extend((parse_message, parse_struct))
    return _PARSERS


class BinaryMessage(bytes):
    """The exact bytes of a message that came as a binary WebSocket message.

    Kalshi sends text; a binary message carries the same JSON bytes, and a faithful
    capture keeps the difference. The edge that receives a message wraps its bytes in
    this type when the opcode was binary (a copy, paid only by binary messages); the
    engine passes them on as they are, so `Frame.binary` tells the consumer, the
    journal records the opcode, and the replay server sends the frame back as binary.
    It is `bytes` in every other way (equal to, and hashing like, the same bytes).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"BinaryMessage({bytes(self)!r})"


class Frame(msgspec.Struct, gc=False):
    """One delivered server frame: the exact bytes, both receive clocks and the envelope.

    `message()` builds (once) the pydantic model of `schemas.parse` for it;
    `struct()` (once) its msgspec mirror of `schemas.structs`, the typed fast path.
    """

    raw: bytes
    recv_ns: int
    mono_ns: int
    conn: int
    channel: str
    type: str
    sid: int | None
    seq: int | None
    market_ticker: str | None
    _model: Any = None
    _struct: Any = None

    @property
    def binary(self) -> bool:
        """True if the frame came as a binary WebSocket message (text otherwise)."""
        return type(self.raw) is BinaryMessage

    def message(self) -> Any:
        """The typed pydantic model of this frame (parsed on first call, then cached).

        Raises:
            schemas.MessageError: the frame does not match its type's model.
        """
        model = self._model
        if model is None:
            model = self._model = _parsers()[0](self.raw)
        return model

    def struct(self) -> Any:
        """The typed msgspec mirror of this frame's model (parsed on first call, then
        cached): the same fields and values as `message()`, several times faster to
        build; no unknown fields (see `schemas.structs`).

        Raises:
            schemas.MessageError: the frame does not match its type's model.
        """
        struct = self._struct
        if struct is None:
            struct = self._struct = _parsers()[1](self.raw)
        return struct


@dataclass(frozen=True, slots=True)
class SendCommand:
    """Send `raw` on connection `conn`; then report it back with `Engine.command_sent`."""

    conn: int
    raw: bytes
    cmd: str
    id: int
    reason: str  # subscribe, resubscribe, resync, orphan_ack, user, fallback


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: ConnectionState
    new: ConnectionState
    recv_ns: int
    mono_ns: int


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """Something went wrong, or a frame was rejected. Never fatal by itself.

    kind is one of: server_error, malformed, unknown_type, gap, reset, unrouted,
    stash_overflow, delta_before_snapshot, orphan_ack, ack_timeout, resync_timeout,
    standby_timeout, subscription_ended, callback_error, backpressure, session (from
    the engine and the session); connection_error, connection_lost, sink_error,
    stale, internal_error (from the live edge).
    """

    kind: str
    message: str
    recv_ns: int
    conn: int | None = None
    sid: int | None = None
    channel: str | None = None
    code: int | None = None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class GapDetected:
    """A sequence gap (seq beyond last + 1) or reset (seq below last) on one subscription."""

    kind: str  # "gap" or "reset"
    conn: int
    sid: int
    channel: str
    expected: int
    got: int
    recv_ns: int
    mono_ns: int


@dataclass(frozen=True, slots=True)
class ResyncRequested:
    conn: int
    sid: int
    channel: str
    markets: tuple[str, ...]
    method: str  # "get_snapshot" or "resubscribe"
    recv_ns: int


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """A consumer's subscribe was acknowledged (error None) or failed."""

    cid: int
    channel: str
    sid: int | None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The reply to a command the session waits on (list_subscriptions, update_subscription)."""

    id: int
    type: str  # "ok" or "error"
    msg: Any


@dataclass(frozen=True, slots=True)
class Switched:
    """Make-before-break: delivery moved from `old_conn` to `new_conn`; close the old one."""

    old_conn: int
    new_conn: int
    recv_ns: int
    mono_ns: int


@dataclass(frozen=True, slots=True)
class Arbitrated:
    """Redundant feeds: a market's book is delivered from another feed from now on.

    `from_feed` None: the book was invalid on every feed and is valid again on
    `to_feed`; `to_feed` None: the feed it came from broke and no other feed holds a
    valid book, so it is invalid until one does. `reason` is why it moved (the break
    on the old feed: gap, reset, disconnect, ended, ...; or `resynced`).
    """

    market: str
    from_feed: int | None
    to_feed: int | None
    reason: str
    recv_ns: int
    mono_ns: int


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """The engine asks the edge to close a connection (an abandoned standby)."""

    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The whole derived state of one connection (`stream.checkpoint`), so replay can seek
    without starting over. The recorder stores it in the `_checkpoint` partition."""

    conn: int
    group: int
    recv_ns: int
    mono_ns: int
    record: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class Fatal:
    """The session cannot go on (backpressure on an ERROR queue)."""

    error: BaseException


Output = (
    SendCommand
    | StateChanged
    | ErrorReport
    | GapDetected
    | ResyncRequested
    | SubscribeResult
    | CommandReply
    | Switched
    | Arbitrated
    | CloseConnection
    | Checkpoint
    | Fatal
)
