"""Records a capture of two feeds through the recorder's own writers.

`record_two_feeds` plays one recorder run with redundant feeds: every record goes
through a `JournalSink` into a `JournalWriter` with the feed it belongs to, the
sealed segments are published (`Publisher`) and every partition is compacted, as a
recorder and its maintenance job leave a capture. Feed 0 keeps one connection; feed
1 loses its first connection and reconnects, so its connection numbers interleave
with feed 0's (connection numbers are unique within a run across its feeds).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recorder.storage.compaction import compact
from recorder.storage.journal import JournalWriter
from recorder.storage.journal_sink import JournalSink
from recorder.storage.publisher import Publisher
from schemas.events import Closed, ConnectionEvent, Opened, RunStart, RunStop
from stream.checkpoint import VERSION
from stream.events import Checkpoint

from .capture_factory import BASE_NS, M1, RUN_A, URL, dumps, subscribe, subscribed, ticker, trade

__all__ = ["TwoFeeds", "record_two_feeds"]


@dataclass
class TwoFeeds:
    """The capture, and what was written to it, counted per feed."""

    root: Path
    records: Counter[int] = field(default_factory=Counter)  # feed -> records
    connections: dict[int, set[int]] = field(default_factory=dict)  # feed -> conns
    by_channel: Counter[tuple[str, int]] = field(default_factory=Counter)  # (channel, feed)
    checkpoint_conn: int = 0


class _Player:
    """Hands records to the sink with advancing clocks, and counts them."""

    def __init__(self, sink: JournalSink, out: TwoFeeds) -> None:
        self.sink, self.out = sink, out
        self.now_ns = BASE_NS

    def _tick(self, channel: str, conn: int, feed: int) -> tuple[int, int]:
        self.now_ns += 1_000_000
        self.out.records[feed] += 1
        self.out.by_channel[(channel, feed)] += 1
        if conn > 0:
            self.out.connections.setdefault(feed, set()).add(conn)
        return self.now_ns, time.monotonic_ns()

    def event(self, conn: int, event: ConnectionEvent, feed: int) -> None:
        self.sink.event(conn, *self._tick("_session", conn, feed), event, feed=feed)

    def send(self, conn: int, command: dict[str, Any], feed: int) -> None:
        self.sink.command_out(conn, *self._tick("_control", conn, feed), dumps(command), feed=feed)

    def receive(self, conn: int, frame: dict[str, Any], channel: str, feed: int) -> None:
        self.sink.frame_in(conn, *self._tick(channel, conn, feed), dumps(frame), feed=feed)

    def open(self, conn: int, feed: int) -> None:
        self.event(conn, Opened(url=URL, standby=False), feed)
        self.send(conn, subscribe(1, ["trade", "ticker"]), feed)
        self.receive(conn, subscribed(1, "trade", 1), "_control", feed)
        self.receive(conn, subscribed(1, "ticker", 2), "_control", feed)

    def checkpoint(self, conn: int, feed: int) -> None:
        recv_ns, mono_ns = self._tick("_checkpoint", conn, feed)
        record = {"version": VERSION, "conn": conn, "subs": []}  # restorable: no subscription
        self.sink.checkpoint(Checkpoint(conn, feed, recv_ns, mono_ns, record))


def record_two_feeds(tmp_path: Path) -> TwoFeeds:
    """A run with feeds 0 (connection 1) and 1 (connections 2, then 3 after a drop)."""
    out = TwoFeeds(tmp_path / "capture")
    journal = tmp_path / "journal"
    with JournalWriter(journal, RUN_A) as writer:
        play = _Player(JournalSink(writer), out)
        play.event(0, RunStart(run_id=RUN_A, version="0.1.0"), 0)
        play.open(1, feed=0)
        play.open(2, feed=1)
        for seq in range(1, 11):  # the same trades on both feeds, until feed 1 drops
            play.receive(1, trade(1, seq, M1, "0.5000", "0.5000", "1.00"), "trade", 0)
            if seq <= 5:
                play.receive(2, trade(1, seq, M1, "0.5000", "0.5000", "1.00"), "trade", 1)
        play.event(2, Closed(code=None, disconnect_reason="transport"), 1)
        play.open(3, feed=1)
        for seq in range(1, 5):
            play.receive(3, trade(1, seq, M1, "0.5000", "0.5000", "1.00"), "trade", 1)
        play.receive(1, ticker(2, M1), "ticker", 0)
        play.checkpoint(3, feed=1)
        out.checkpoint_conn = 3
        play.event(1, Closed(code=1000, disconnect_reason="shutdown"), 0)
        play.event(3, Closed(code=1000, disconnect_reason="shutdown"), 1)
        play.event(0, RunStop(reason="signal"), 0)
    Publisher(journal, out.root).publish_pending()
    for partition in sorted(out.root.glob("channel=*/date=*")):
        compact(out.root, str(partition.relative_to(out.root)), min_age_s=0, delete_grace_s=0)
    return out
