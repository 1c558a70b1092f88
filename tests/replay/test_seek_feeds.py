"""A seek into a capture of two feeds delivers each trade as one pass does, even when
one copy came before its feed's checkpoint and the other after the start.

The capture is written through the recorder's own writers (JournalSink, Publisher,
compaction) while an engine is driven with the same inputs, so its checkpoints are
the engine's own, taken at the moments the script says (times exact, in ms)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

from recorder.storage.compaction import compact
from recorder.storage.journal import JournalWriter
from recorder.storage.journal_sink import JournalSink
from recorder.storage.publisher import Publisher
from replay.datasets import compute
from replay.reading.session import ReplaySession
from schemas.events import Opened, RunStart, RunStop
from stream import Engine, EngineConfig
from stream.events import Checkpoint

from .capture_factory import BASE_NS, M1, RUN_A, URL, dumps, subscribe, subscribed, trade

MS = 1_000_000
_GROUP = 10  # the engine's group of feed 0 (feed 1's is the next)


class _Recorder:
    """Journals each input with its feed and hands it to an engine that takes
    checkpoints, as the recorder does; the engine's checkpoints are journalled too."""

    def __init__(self, sink: JournalSink) -> None:
        self.sink = sink
        self.engine = Engine(EngineConfig(checkpoint_interval_s=1))

    @staticmethod
    def clock(ms: int) -> tuple[int, int]:
        return BASE_NS + ms * MS, 10**12 + ms * MS

    def open(self, ms: int, conn: int, feed: int) -> None:
        recv, mono = self.clock(ms)
        self.sink.event(conn, recv, mono, Opened(url=URL, standby=False), feed=feed)
        self.engine.connection_attempt(recv, mono, group=_GROUP + feed, feed=feed)
        self.engine.connection_opened(conn, recv, mono, group=_GROUP + feed, feed=feed)
        command = dumps(subscribe(1, ["trade"]))
        self.sink.command_out(conn, recv, mono, command, feed=feed)
        self.engine.command_sent(command, recv, mono, conn)
        self.receive(ms, conn, feed, subscribed(1, "trade", 1))

    def receive(self, ms: int, conn: int, feed: int, frame: dict[str, Any]) -> None:
        recv, mono = self.clock(ms)
        raw = dumps(frame)
        self.sink.frame_in(conn, recv, mono, raw, feed=feed)
        self.engine.frame_received(raw, recv, mono, conn)
        self.flush()

    def tick(self, ms: int) -> None:
        self.engine.tick(*self.clock(ms))
        self.flush()

    def flush(self) -> None:
        while self.engine.outbox:
            out = self.engine.outbox.popleft()
            if isinstance(out, Checkpoint):  # journalled with its feed as its group
                self.sink.checkpoint(dataclasses.replace(out, group=out.group - _GROUP))


def _trade(seq: int, trade_id: str) -> dict[str, Any]:
    frame = trade(1, seq, M1, "0.5000", "0.5000", "1.00")
    frame["msg"]["trade_id"] = trade_id
    return frame


def _record(tmp_path: Path) -> Path:
    """Feeds 0 (conn 1) and 1 (conn 2) bring the same trades, feed 1 a millisecond
    later, and "late" 3 ms later: feed 0's copy at 1000 ms, both feeds' checkpoints at
    1001 ms, feed 1's copy at 1003 ms. The seek below starts at 1002 ms."""
    root, journal = tmp_path / "capture", tmp_path / "journal"
    with JournalWriter(journal, RUN_A) as writer:
        sink = JournalSink(writer)
        rec = _Recorder(sink)
        recv, mono = rec.clock(0)
        sink.event(0, recv, mono, RunStart(run_id=RUN_A, version="0.1.0"), feed=0)
        rec.open(0, 1, feed=0)
        rec.open(0, 2, feed=1)
        seq = {1: 0, 2: 0}

        def both(ms: int, trade_id: str, lag: int = 1) -> None:
            for conn, when in ((1, ms), (2, ms + lag)):
                seq[conn] += 1
                rec.receive(when, conn, conn - 1, _trade(seq[conn], trade_id))

        for k in range(5):
            both(100 + 100 * k, f"early-{k}")
        seq[1] += 1
        rec.receive(1000, 1, 0, _trade(seq[1], "late"))
        rec.tick(1001)  # both feeds' checkpoints: feed 0's after its copy of "late"
        seq[2] += 1
        rec.receive(1003, 2, 1, _trade(seq[2], "late"))
        for k in range(5):
            both(1100 + 100 * k, f"after-{k}")
        recv, mono = rec.clock(2000)
        sink.event(0, recv, mono, RunStop(reason="signal"), feed=0)
    Publisher(journal, root).publish_pending()
    for partition in sorted(root.glob("channel=*/date=*")):
        compact(root, str(partition.relative_to(root)), min_age_s=0, delete_grace_s=0)
    return root


async def _trades(root: Path, start: int | None, since: int) -> list[tuple[str, int]]:
    """(trade id, connection) of every trade a ReplaySession delivers from `since` on."""
    got = []
    async with ReplaySession(root, start=start) as session:
        sub = await session.subscribe("trade", raw=True)
        async for frame in sub:
            if frame.recv_ns >= since:
                got.append((json.loads(frame.raw)["msg"]["trade_id"], frame.conn))
    return got


def test_a_trade_copy_before_its_feeds_checkpoint_is_remembered_after_the_seek(
    tmp_path: Path,
) -> None:
    root = _record(tmp_path)
    checkpoints = list(root.glob("channel=_checkpoint/**/*.parquet"))
    assert checkpoints, "the engine took checkpoints"
    start = BASE_NS + 1002 * MS
    one_pass = asyncio.run(_trades(root, None, start))
    assert [t for t, _ in one_pass] == [f"after-{k}" for k in range(5)]  # "late" before
    assert asyncio.run(_trades(root, start, start)) == one_pass
    whole = compute(root, "trades")
    from_start = compute(root, "trades", start=start)
    assert from_start.column("trade_id").to_pylist() == [f"after-{k}" for k in range(5)]
    assert from_start.to_pylist() == whole.slice(whole.num_rows - 5).to_pylist()
