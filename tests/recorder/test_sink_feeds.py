"""Sinks keep the feed of every record: frames, commands, events and checkpoints.

The journal's sink writes through a real JournalWriter and the segment is read back
with `read_segment`, as the publisher reads it; `MemorySink` keeps the same calls.
"""

from __future__ import annotations

import time
from pathlib import Path

from recorder.link.sink import MemorySink, Sink
from recorder.storage._segment import read_segment
from recorder.storage.journal import JournalWriter
from recorder.storage.journal_sink import JournalSink
from schemas.events import Closed, FrameRejected, Opened, event_from_bytes
from stream.events import Checkpoint

from .helpers import BASE_NS, RUN_A

TRADE = b'{"type":"trade","sid":1,"seq":1,"msg":{"market_ticker":"KX-A","trade_id":"t1"}}'
SUBSCRIBE = b'{"id":1,"cmd":"subscribe","params":{"channels":["trade"]}}'
URL = "wss://example.invalid/ws"


def play(sink: Sink) -> None:
    """The same calls, one of each kind on each of feeds 0 and 1 (0 by default)."""
    mono = time.monotonic_ns()
    sink.event(1, BASE_NS, mono, Opened(url=URL, standby=False))
    sink.event(2, BASE_NS + 1, mono, Opened(url=URL, standby=False), feed=1)
    sink.command_out(1, BASE_NS + 2, mono, SUBSCRIBE)
    sink.command_out(2, BASE_NS + 3, mono, SUBSCRIBE, feed=1)
    sink.frame_in(1, BASE_NS + 4, mono, TRADE)
    sink.frame_in(2, BASE_NS + 5, mono, TRADE, feed=1)
    sink.frame_in(2, BASE_NS + 6, mono, b"\xff not json", feed=1)  # rejected: and its event
    sink.checkpoint(Checkpoint(2, 1, BASE_NS + 7, mono, {"conn": 2}))
    sink.event(2, BASE_NS + 8, mono, Closed(code=1000), feed=1)


def test_the_journal_sink_writes_each_records_feed(tmp_path: Path) -> None:
    sealed: list[Path] = []
    with JournalWriter(tmp_path, RUN_A, on_sealed=sealed.append) as writer:
        play(JournalSink(writer))
    (segment,) = sealed
    records = read_segment(segment).records()
    assert [(r.type, r.conn, r.feed) for r in records] == [
        ("open", 1, 0),
        ("open", 2, 1),
        ("subscribe", 1, 0),
        ("subscribe", 2, 1),
        ("trade", 1, 0),
        ("trade", 2, 1),
        ("_malformed", 2, 1),
        ("frame_rejected", 2, 1),  # the rejection is recorded on the frame's feed
        ("checkpoint", 2, 1),  # a checkpoint's feed is its group's
        ("close", 2, 1),
    ]
    rejected = event_from_bytes(records[7].raw)
    assert isinstance(rejected, FrameRejected)
    assert rejected.idx == records[6].idx


def test_the_memory_sink_keeps_each_records_feed() -> None:
    sink = MemorySink()
    play(sink)
    assert [(r.dir, r.conn, r.feed) for r in sink.records] == [
        ("event", 1, 0),
        ("event", 2, 1),
        ("out", 1, 0),
        ("out", 2, 1),
        ("in", 1, 0),
        ("in", 2, 1),
        ("in", 2, 1),
        ("checkpoint", 2, 1),
        ("event", 2, 1),
    ]
