"""Where a live session writes what it saw and did, before anything interprets it.

This module owns the `Sink` protocol between the connection manager and the
recorder's log (docs/architecture.md section 4: write first, interpret second):

    frame_in(conn, recv_ns, mono_ns, raw, feed=0)    every received frame, before the engine
    command_out(conn, recv_ns, mono_ns, raw, feed=0)  every command, as it is sent
    event(conn, recv_ns, mono_ns, event, feed=0)      every connection event (a schemas.events
                                                      class)
    checkpoint(output)                                a stream.Checkpoint (one connection's
                                                      state; its `group` is its feed)

`feed` says which feed of a redundant session the record belongs to: feeds are
independent connection sequences subscribed to the same channels and markets, numbered
from 0 (a session with one feed passes 0, the default). Connection numbers are unique
across the feeds of a session, so `conn` alone still names a connection.

An event is one of the typed classes of `schemas.events` (`Attempt`, `Opened`,
`Closed`, ...), which carry what a replay needs to drive the engine again and
encode themselves to the bytes a capture stores. Events not tied to an opened
connection (attempts, failed attempts, waits, states) carry conn 0.

Calls are synchronous and must not block: a sink buffers (the journal appends to
memory and commits in groups). The connection manager catches anything a sink
raises, reports it through `on_error` and keeps receiving. `MemorySink` keeps
records in a list, for tests and small tools. Nothing here knows of sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from schemas.events import ConnectionEvent
from stream.events import Checkpoint

__all__ = ["MemorySink", "Sink", "SinkRecord"]


@runtime_checkable
class Sink(Protocol):
    """The recorder's side of a live session (see the module docstring)."""

    def frame_in(self, conn: int, recv_ns: int, mono_ns: int, raw: bytes, feed: int = 0) -> Any:
        """Keep a received frame (of feed `feed`). May return its
        `stream.decode.decode_frame` result, which the engine then reuses instead of
        decoding the frame again."""
        ...

    def command_out(self, conn: int, recv_ns: int, mono_ns: int, raw: bytes, feed: int = 0) -> None:
        """Keep a command sent on a connection of feed `feed`."""
        ...

    def event(
        self, conn: int, recv_ns: int, mono_ns: int, event: ConnectionEvent, feed: int = 0
    ) -> None:
        """Keep a connection event of feed `feed`."""
        ...

    def checkpoint(self, output: Checkpoint) -> None:
        """Keep a checkpoint; its feed is `output.group` (a live session's group is its feed)."""
        ...


@dataclass(frozen=True, slots=True)
class SinkRecord:
    """One call to a sink: `dir` is "in", "out", "event" or "checkpoint".

    `name` and `event` are an event's name and typed event; `checkpoint` is a
    checkpoint's record; `raw` is a frame's or a command's bytes; `feed` the feed the
    record belongs to (a checkpoint's: its group).
    """

    dir: str
    conn: int
    recv_ns: int
    mono_ns: int
    name: str = ""
    raw: bytes = b""
    event: Any = None
    checkpoint: dict[str, Any] = field(default_factory=dict, hash=False)
    feed: int = 0


class MemorySink:
    """A sink that keeps every record in `records`, in call order."""

    def __init__(self) -> None:
        self.records: list[SinkRecord] = []

    def frame_in(self, conn: int, recv_ns: int, mono_ns: int, raw: bytes, feed: int = 0) -> None:
        self.records.append(SinkRecord("in", conn, recv_ns, mono_ns, raw=raw, feed=feed))

    def command_out(self, conn: int, recv_ns: int, mono_ns: int, raw: bytes, feed: int = 0) -> None:
        self.records.append(SinkRecord("out", conn, recv_ns, mono_ns, raw=raw, feed=feed))

    def event(
        self, conn: int, recv_ns: int, mono_ns: int, event: ConnectionEvent, feed: int = 0
    ) -> None:
        raw = event.to_bytes()
        self.records.append(
            SinkRecord("event", conn, recv_ns, mono_ns, event.name, raw, event, feed=feed)
        )

    def checkpoint(self, output: Checkpoint) -> None:
        self.records.append(
            SinkRecord(
                "checkpoint",
                output.conn,
                output.recv_ns,
                output.mono_ns,
                checkpoint=output.record,
                feed=output.group,
            )
        )

    def events(self, name: str | None = None) -> list[SinkRecord]:
        """The event records (of one name, or all)."""
        return [r for r in self.records if r.dir == "event" and (name is None or r.name == name)]
