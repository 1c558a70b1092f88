"""Connection and recorder events: one typed class per event, with exact bytes both ways.

An `event` record of a capture (docs/architecture.md section 3) says something that
happened to a connection or to the recorder: a connection attempt, a handshake, a
close with its codes, a reconnect wait, a run's start and stop, a frame the recorder
could not parse. Its `raw` column is a small JSON object whose `type` key names the
event; the other keys are the fields of the class below that has that name.

Every writer builds one of these classes and stores `event.to_bytes()`; every
reader gets the class back with `event_from_bytes(raw)` and reads attributes, so a
field's name, type and default live here only. Decoding is tolerant in the ways
old captures need: a field a class has gained since has its default, a key the
class does not know is ignored, a number written as a string is accepted, and an
event name this version does not know comes back as `UnknownEvent` (its bytes
kept) instead of failing the read. Bytes that are not a JSON object naming an
event raise `EventError`.

For every event this module writes, `event_from_bytes(e.to_bytes()) == e` and the
bytes are the ones a capture holds (field order is declaration order, `type` first).
"""

from __future__ import annotations

from typing import ClassVar, Final

import msgspec

from schemas.errors import SchemaError
from schemas.record import Event

__all__ = [
    "EVENT_CLASSES",
    "Arbitrated",
    "Attempt",
    "AttemptFailed",
    "CaptureGap",
    "Closed",
    "ConnectionEvent",
    "EventError",
    "FrameRejected",
    "Opened",
    "ReconnectWait",
    "RunStart",
    "RunStop",
    "StateChanged",
    "Switched",
    "UnknownEvent",
    "event_from_bytes",
]


class EventError(SchemaError):
    """An event record's bytes are not a JSON object naming an event."""


class ConnectionEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of the event classes; `name` is the event's `type` (an `Event`)."""

    name: ClassVar[Event]

    def to_bytes(self) -> bytes:
        """The event's JSON, as a capture stores it in `raw`."""
        return _encoder.encode(self)


class RunStart(ConnectionEvent, frozen=True, kw_only=True, tag=Event.RUN_START.value):
    """A recorder process started: its run, version, exchange URL, pid and shard."""

    name: ClassVar[Event] = Event.RUN_START
    run_id: str
    version: str
    url: str | None = None
    pid: int | None = None
    shard: str | None = None


class RunStop(ConnectionEvent, frozen=True, kw_only=True, tag=Event.RUN_STOP.value):
    """The recorder stopped cleanly, and why (`duration`, `signal`, ...)."""

    name: ClassVar[Event] = Event.RUN_STOP
    reason: str


class Attempt(ConnectionEvent, frozen=True, kw_only=True, tag=Event.ATTEMPT.value):
    """A connection attempt begins (`attempt` counts from 1 since the last open)."""

    name: ClassVar[Event] = Event.ATTEMPT
    url: str
    attempt: int
    standby: bool = False


class Opened(ConnectionEvent, frozen=True, kw_only=True, tag=Event.OPEN.value):
    """The handshake succeeded; the record's `conn` is the new connection's number."""

    name: ClassVar[Event] = Event.OPEN
    url: str
    standby: bool = False


class Closed(ConnectionEvent, frozen=True, kw_only=True, tag=Event.CLOSE.value):
    """A connection ended.

    `code` and `reason` are the close frame's (None when none came: a dropped
    connection), `disconnect_reason` is the client's classification
    (`stream.DisconnectReason` values), `initiator` is `client` or `server` when known.
    """

    name: ClassVar[Event] = Event.CLOSE
    code: int | None
    reason: str = ""
    disconnect_reason: str = ""
    will_reconnect: bool = True
    initiator: str | None = None


class AttemptFailed(ConnectionEvent, frozen=True, kw_only=True, tag=Event.ERROR.value):
    """A connection attempt failed (or a transport error), and whether it is retried."""

    name: ClassVar[Event] = Event.ERROR
    error: str
    will_retry: bool = True


class ReconnectWait(ConnectionEvent, frozen=True, kw_only=True, tag=Event.RECONNECT_WAIT.value):
    """The reconnect loop sleeps `delay_s` before attempt `attempt + 1`, and why."""

    name: ClassVar[Event] = Event.RECONNECT_WAIT
    delay_s: float
    attempt: int
    reason: str = "backoff"


class StateChanged(ConnectionEvent, frozen=True, kw_only=True, tag=Event.STATE.value):
    """The session's connection state changed (`stream.ConnectionState` values)."""

    name: ClassVar[Event] = Event.STATE
    old: str
    new: str


class Switched(ConnectionEvent, frozen=True, kw_only=True, tag=Event.SWITCH.value):
    """Make-before-break: delivery moved from connection `old_conn` to `new_conn`."""

    name: ClassVar[Event] = Event.SWITCH
    old_conn: int
    new_conn: int
    reason: str | None = None


class Arbitrated(ConnectionEvent, frozen=True, kw_only=True, tag=Event.ARBITRATE.value):
    """Redundant feeds: `market`'s book is delivered from `to_feed` from now on.

    `from_feed` None: no feed held a valid book, and `to_feed` has one again;
    `to_feed` None: `from_feed`'s book broke and no other feed holds a valid one, so
    the market's book is invalid until one does. `reason` is why (gap, reset,
    disconnect, ended, resynced, ...).
    """

    name: ClassVar[Event] = Event.ARBITRATE
    market: str
    from_feed: int | None
    to_feed: int | None
    reason: str


class CaptureGap(ConnectionEvent, frozen=True, kw_only=True, tag=Event.CAPTURE_GAP.value):
    """Frames the recorder could not keep (its journal backlog was over its limit).

    `first_idx`..`last_idx` are the record indexes the lost frames would have had.
    """

    name: ClassVar[Event] = Event.CAPTURE_GAP
    lost_frames: int
    lost_bytes: int | None = None
    first_idx: int | None = None
    last_idx: int | None = None
    reason: str


class FrameRejected(ConnectionEvent, frozen=True, kw_only=True, tag=Event.FRAME_REJECTED.value):
    """The inbound frame at record `idx` did not parse; it is stored under `_unknown`."""

    name: ClassVar[Event] = Event.FRAME_REJECTED
    idx: int
    reason: str


#: The class of each event name.
EVENT_CLASSES: Final[dict[Event, type[ConnectionEvent]]] = {
    cls.name: cls
    for cls in (
        RunStart,
        RunStop,
        Attempt,
        Opened,
        Closed,
        AttemptFailed,
        ReconnectWait,
        StateChanged,
        Switched,
        Arbitrated,
        CaptureGap,
        FrameRejected,
    )
}


class UnknownEvent(msgspec.Struct, frozen=True):
    """An event this version does not know (a newer recorder's): its name and bytes."""

    type: str
    raw: bytes

    def to_bytes(self) -> bytes:
        return self.raw


class _Named(msgspec.Struct):
    type: str


_encoder = msgspec.json.Encoder()
_AnyEvent = (
    RunStart
    | RunStop
    | Attempt
    | Opened
    | Closed
    | AttemptFailed
    | ReconnectWait
    | StateChanged
    | Switched
    | Arbitrated
    | CaptureGap
    | FrameRejected
)
_decoder = msgspec.json.Decoder(_AnyEvent, strict=False)
_name_decoder = msgspec.json.Decoder(_Named)
_KNOWN_NAMES: Final = frozenset(e.value for e in Event)


def event_from_bytes(raw: bytes) -> ConnectionEvent | UnknownEvent:
    """The typed event a capture's `raw` holds (see the module docstring).

    Raises:
        EventError: `raw` is not a JSON object with a string `type`, or a field of a
            known event has a value of the wrong kind (`close.code: Expected int`).
    """
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        try:
            name = _name_decoder.decode(raw).type
        except msgspec.DecodeError:
            raise EventError(f"event record is not a JSON object with a type: {exc}") from None
        if name in _KNOWN_NAMES:
            raise EventError(f"{name}: {exc}") from None
        return UnknownEvent(name, bytes(raw))
    except msgspec.DecodeError as exc:
        raise EventError(f"event record is not JSON: {exc}") from None
