"""Fault specs, their small text syntax, and a pure per-connection scheduler.

This module owns what a fault is and when it fires. It reads no clock and touches
no socket: the connection layer (`replay.server.connection`) asks the scheduler, per
frame sent and per elapsed time, which faults are due, and applies them.

Syntax (`--fault` on the command line, `parse_fault` in code)::

    KIND[:ARG][@TRIGGER[,TRIGGER...]]

    close:1011@every=5s        close with 1011 every 5 s of each connection
    gap@p=0.001                skip a seq with probability 0.001 per data frame
    stall:3s@after=1000        stop sending data for 3 s after 1000 frames
    drop@at=2s+7.5s,conn=1     drop TCP at 2 s and 7.5 s, first connection only
    reject:503@conn=1+2        refuse the first two handshakes with HTTP 503
    drop@every=2s,tag=b        drop every 2 s the connections made to a URL with ?tag=b
    gap@every=2s,channel=orderbook_delta   every 2 s, skip a seq of the book channel
    slow_handshake:2s          every handshake waits 2 s

Kinds (ARG in brackets):
    connection: close[:code] (1000 1001 1011 1013 4001...; default 1011), drop (TCP
        reset, no close frame), stall[:duration] (no data, pings still answered;
        default 3s), no_pong[:duration] (stop answering pings; default forever)
    frame, applied to the next data frame on a sequenced channel: gap, dup, reorder
        (swap with the following frame), malformed (cut JSON), bad_utf8, oversized
        (over 1 MiB), binary (the same bytes as a binary WebSocket message),
        unsubscribed (server-initiated), error25 (buffer overflow)
    handshake: reject[:status] (default 503), slow_handshake[:duration] (default 2s)

Triggers (ORed): every=DURATION, after=FRAMES, p=PROBABILITY (per frame sent), at=
DURATION+DURATION... (since the connection opened), conn=N+N... (connection numbers,
counted per handshake attempt from 1), tag=NAME+NAME... (only connections whose URL
carries the query parameter `tag=NAME`: a client's chosen connections, such as one
feed of a redundant recorder), channel=NAME+NAME... (frame faults only: the next data
frame of one of these channels, e.g. orderbook_delta, whose snapshots and deltas a
client must resync, not trade), times=N (most fires per connection). A connection or
frame fault needs one of every, after, p or at; a handshake fault fires on every
attempt unless `conn`, `tag`, `p` or `times` narrow it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from schemas import units
from schemas.channels import TYPE_TO_CHANNEL
from schemas.errors import ConfigError

__all__ = [
    "CONNECTION_KINDS",
    "FRAME_KINDS",
    "HANDSHAKE_KINDS",
    "FaultKind",
    "FaultScheduler",
    "FaultSpec",
    "handshake_faults",
    "parse_duration_s",
    "parse_fault",
]


class FaultKind(StrEnum):
    """Every fault the simulated exchange can inject."""

    CLOSE = "close"
    DROP = "drop"
    STALL = "stall"
    NO_PONG = "no_pong"
    GAP = "gap"
    DUP = "dup"
    REORDER = "reorder"
    MALFORMED = "malformed"
    BAD_UTF8 = "bad_utf8"
    OVERSIZED = "oversized"
    BINARY = "binary"
    UNSUBSCRIBED = "unsubscribed"
    ERROR25 = "error25"
    REJECT = "reject"
    SLOW_HANDSHAKE = "slow_handshake"


CONNECTION_KINDS = frozenset({FaultKind.CLOSE, FaultKind.DROP, FaultKind.STALL, FaultKind.NO_PONG})
FRAME_KINDS = frozenset(
    {
        FaultKind.GAP,
        FaultKind.DUP,
        FaultKind.REORDER,
        FaultKind.MALFORMED,
        FaultKind.BAD_UTF8,
        FaultKind.OVERSIZED,
        FaultKind.BINARY,
        FaultKind.UNSUBSCRIBED,
        FaultKind.ERROR25,
    }
)
HANDSHAKE_KINDS = frozenset({FaultKind.REJECT, FaultKind.SLOW_HANDSHAKE})

#: What `channel=` may name: the channels data frames belong to.
_DATA_CHANNELS = frozenset(str(c) for c in TYPE_TO_CHANNEL.values() if not c.startswith("_"))
_DEFAULT_CLOSE_CODE = 1011
_DEFAULT_STALL_S = 3.0
_DEFAULT_REJECT_STATUS = 503
_DEFAULT_SLOW_S = 2.0


@dataclass(frozen=True)
class FaultSpec:
    """One fault and its schedule.

    Attributes:
        kind: what happens.
        code: close code (close).
        duration_s: stall, no_pong (None: until the connection ends), slow_handshake.
        status: HTTP status (reject).
        every_s: fire every this many seconds of the connection.
        after_frames: fire once when this many frames have been sent on the
            connection (replies included).
        p: fire with this probability per frame sent (per handshake for
            handshake kinds).
        at_s: fire at these times since the connection opened.
        conns: only on these connection numbers (None: all).
        tags: only on connections whose URL has `tag=` one of these (None: all).
        channels: frame faults only: the frame it lands on is the next data frame of
            one of these channels (None: of any sequenced channel).
        times: fire at most this many times per connection (None: no limit).
    """

    kind: FaultKind
    code: int | None = None
    duration_s: float | None = None
    status: int | None = None
    every_s: float | None = None
    after_frames: int | None = None
    p: float | None = None
    at_s: tuple[float, ...] = ()
    conns: frozenset[int] | None = None
    tags: frozenset[str] | None = None
    channels: frozenset[str] | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        where = f"fault {self.kind}"
        if self.every_s is not None and self.every_s <= 0:
            raise ConfigError(where, "every must be > 0")
        if self.after_frames is not None and self.after_frames < 0:
            raise ConfigError(where, "after must be >= 0")
        if self.p is not None and not 0 <= self.p <= 1:
            raise ConfigError(where, "p must be between 0 and 1")
        if self.times is not None and self.times < 1:
            raise ConfigError(where, "times must be >= 1")
        timed = self.every_s is not None or self.after_frames is not None or self.at_s
        if self.kind not in HANDSHAKE_KINDS and not (timed or self.p is not None):
            raise ConfigError(where, "has no trigger", "add @every=5s, @after=N, @p=0.01 or @at=2s")
        if self.channels is not None and self.kind not in FRAME_KINDS:
            raise ConfigError(where, "channel= narrows frame faults only",
                              f"use it with {sorted(k.value for k in FRAME_KINDS)}")  # fmt: skip
        unknown = sorted((self.channels or frozenset()) - _DATA_CHANNELS)
        if unknown:
            raise ConfigError(where, f"unknown channel {unknown[0]!r}",
                              f"use one of {sorted(_DATA_CHANNELS)}")  # fmt: skip
        if self.kind is FaultKind.CLOSE and not 1000 <= (self.code or 0) <= 4999:
            raise ConfigError(where, f"close code {self.code} is not valid", "use 1000 to 4999")
        if self.kind is FaultKind.REJECT and not 400 <= (self.status or 0) <= 599:
            raise ConfigError(where, f"status {self.status} is not valid", "use 400 to 599")

    def applies_to(self, conn_no: int, tag: str | None = None) -> bool:
        """True when this fault may fire on connection number `conn_no`, made to a URL
        tagged `tag`."""
        if self.tags is not None and tag not in self.tags:
            return False
        return self.conns is None or conn_no in self.conns


def parse_duration_s(text: str, field: str = "duration") -> float:
    """Parse `3s`, `250ms`, `5m`, `1.5` (seconds) into seconds (`schemas.units`)."""
    try:
        return units.parse_duration_s(text)
    except ValueError:
        raise ConfigError(
            field, f"{text!r} is not a duration", "write 3s, 250ms, 5m or 1.5"
        ) from None


def _int(text: str, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(field, f"{text!r} is not an integer") from None


def parse_fault(text: str) -> FaultSpec:
    """Parse one fault spec (see the module docstring for the syntax).

    Raises:
        ConfigError: naming the part of the spec that is wrong.
    """
    field = f"--fault {text}"
    head, _, triggers = text.partition("@")
    name, _, arg = head.partition(":")
    try:
        kind = FaultKind(name.strip())
    except ValueError:
        raise ConfigError(
            field, f"unknown kind {name!r}", f"use one of {[k.value for k in FaultKind]}"
        ) from None
    values: dict[str, object] = {}
    if kind is FaultKind.CLOSE:
        values["code"] = _int(arg, field) if arg else _DEFAULT_CLOSE_CODE
    elif kind is FaultKind.REJECT:
        values["status"] = _int(arg, field) if arg else _DEFAULT_REJECT_STATUS
    elif kind is FaultKind.STALL:
        values["duration_s"] = parse_duration_s(arg, field) if arg else _DEFAULT_STALL_S
    elif kind is FaultKind.SLOW_HANDSHAKE:
        values["duration_s"] = parse_duration_s(arg, field) if arg else _DEFAULT_SLOW_S
    elif kind is FaultKind.NO_PONG:
        values["duration_s"] = parse_duration_s(arg, field) if arg else None
    elif arg:
        raise ConfigError(field, f"{kind} takes no argument")
    for part in filter(None, (p.strip() for p in triggers.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(field, f"trigger {part!r} needs a value", "write key=value")
        if key == "every":
            values["every_s"] = parse_duration_s(value, field)
        elif key == "after":
            values["after_frames"] = _int(value, field)
        elif key == "p":
            try:
                values["p"] = float(value)
            except ValueError:
                raise ConfigError(field, f"p={value!r} is not a number") from None
        elif key == "at":
            values["at_s"] = tuple(sorted(parse_duration_s(v, field) for v in value.split("+")))
        elif key == "conn":
            values["conns"] = frozenset(_int(v, field) for v in value.split("+"))
        elif key == "tag":
            values["tags"] = frozenset(v for v in value.split("+") if v)
        elif key == "channel":
            values["channels"] = frozenset(v for v in value.split("+") if v)
        elif key == "times":
            values["times"] = _int(value, field)
        else:
            raise ConfigError(field, f"unknown trigger {key!r}",
                              "use every, after, p, at, conn, tag, channel, times")  # fmt: skip
    try:
        return FaultSpec(kind=kind, **values)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(field, exc.problem, exc.fix) from None


def handshake_faults(
    specs: tuple[FaultSpec, ...], conn_no: int, rng: random.Random, tag: str | None = None
) -> list[FaultSpec]:
    """The handshake faults that fire on handshake attempt `conn_no` (to a URL tagged `tag`).

    `times` counts attempts: `reject@times=2` refuses the first two attempts.
    """
    fired = []
    for spec in specs:
        if spec.kind not in HANDSHAKE_KINDS or not spec.applies_to(conn_no, tag):
            continue
        if spec.times is not None and conn_no > spec.times:
            continue
        if spec.p is not None and rng.random() >= spec.p:
            continue
        fired.append(spec)
    return fired


class FaultScheduler:
    """Decides which connection and frame faults fire on one connection.

    Feed it the number of data frames sent (`on_frame`) and the seconds since the
    connection opened (`due`); it returns the specs that fire. `next_due_s` tells
    the sender how long it may sleep before a timed fault is due.
    """

    def __init__(
        self,
        specs: tuple[FaultSpec, ...],
        conn_no: int,
        rng: random.Random,
        tag: str | None = None,
    ) -> None:
        self._rng = rng
        live = [s for s in specs if s.kind not in HANDSHAKE_KINDS and s.applies_to(conn_no, tag)]
        self._fired: dict[int, int] = {id(s): 0 for s in live}
        self._per_frame = [s for s in live if s.p is not None or s.after_frames is not None]
        #: (next time, spec, remaining `at` times, period or None) for timed specs.
        self._timed: list[tuple[float, FaultSpec, tuple[float, ...], float | None]] = []
        for spec in live:
            if spec.every_s is not None:
                self._timed.append((spec.every_s, spec, (), spec.every_s))
            if spec.at_s:
                self._timed.append((spec.at_s[0], spec, spec.at_s[1:], None))

    @property
    def has_frame_triggers(self) -> bool:
        """False when `on_frame` can never fire (the sender skips calling it)."""
        return bool(self._per_frame)

    def _may_fire(self, spec: FaultSpec) -> bool:
        if spec.times is not None and self._fired[id(spec)] >= spec.times:
            return False
        self._fired[id(spec)] += 1
        return True

    def on_frame(self, frames_sent: int) -> list[FaultSpec]:
        """Faults that fire now that `frames_sent` data frames have been sent."""
        fired = []
        for spec in self._per_frame:
            hit = spec.after_frames is not None and frames_sent == spec.after_frames
            if not hit and spec.p is not None:
                hit = self._rng.random() < spec.p
            if hit and self._may_fire(spec):
                fired.append(spec)
        return fired

    def due(self, elapsed_s: float) -> list[FaultSpec]:
        """Timed faults due at `elapsed_s` seconds since the connection opened."""
        fired = []
        keep = []
        for at, spec, rest, period in self._timed:
            if at > elapsed_s:
                keep.append((at, spec, rest, period))
                continue
            if self._may_fire(spec):
                fired.append(spec)
            if period is not None:
                nxt = at + period
                while nxt <= elapsed_s:  # a sender late by several periods fires once
                    nxt += period
                keep.append((nxt, spec, (), period))
            elif rest:
                keep.append((rest[0], spec, rest[1:], None))
        self._timed = keep
        return fired

    def next_due_s(self) -> float | None:
        """Seconds since open when the next timed fault is due, or None."""
        return min((entry[0] for entry in self._timed), default=None)
