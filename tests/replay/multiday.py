"""A capture of several days, recorded from a scripted live session (real Parquet files).

Three markets' order books (snapshots, then a delta for each every 15 minutes) and
trades, over `days` days, with connection checkpoints every 3 hours, a journal segment
every 6 hours and a reconnect in the middle of the second day: what a backtest needs
to cross day boundaries with books seeded from checkpoints. Small (about 1,200 frames
a day) so that tests stay fast.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from stream import EngineConfig, Session

from ..stream.harness import ScriptedSource, auto_server, wire
from .recorded import Recording

__all__ = ["MARKETS", "MultiDay", "build_multiday_capture"]

MARKETS = ("KX-A", "KX-B", "KX-C")
STEP_S = 900  # a delta per market and a trade every 15 minutes
CHECKPOINT_S = 3 * 3600


@dataclass(frozen=True)
class MultiDay:
    root: Path
    start_ns: int
    end_ns: int
    frames: int


def _sid(recording: Recording, conn: int, channel: str) -> int | None:
    """The sid of the latest `subscribed` ack for `channel` on `conn`."""
    for rec in reversed(recording.records):
        if rec.conn == conn and rec.type == "subscribed":
            msg = json.loads(rec.raw)["msg"]
            if msg["channel"] == channel:
                return int(msg["sid"])
    return None


async def _acked(source: ScriptedSource, recording: Recording, conn: int) -> tuple[int, int]:
    """(book sid, trade sid) once both subscriptions of `conn` are acked."""
    for _ in range(100):
        await source.settle()
        book, trade = _sid(recording, conn, "orderbook_delta"), _sid(recording, conn, "trade")
        if book is not None and trade is not None:
            return book, trade
    raise AssertionError(f"the subscriptions of conn {conn} were never acked")


async def _record(days: int) -> Recording:
    recording = Recording()
    source = ScriptedSource(auto_server(), log=recording)
    session = Session(source, engine_config=EngineConfig(checkpoint_interval_s=CHECKPOINT_S))
    await session.start()
    await session.subscribe_wire("orderbook_delta", {"market_tickers": list(MARKETS)})
    await session.subscribe_wire("trade", {})
    conn = 1
    source.open(conn)
    book_sid, trade_sid = await _acked(source, recording, conn)
    book_seq, trade_seq = len(MARKETS) + 1, 1  # after the subscribe's snapshots
    steps = days * 86_400 // STEP_S
    for step in range(steps):
        for i, market in enumerate(MARKETS):
            price = f"0.{20 + (step * (i + 3)) % 60:02d}00"
            size = f"{1 + (step + i) % 9}.00"
            source.frame(wire.delta(book_sid, book_seq, market, price, size), conn)
            book_seq += 1
        market = MARKETS[step % len(MARKETS)]
        source.frame(wire.trade(trade_sid, trade_seq, market, f"t{step}"), conn)
        trade_seq += 1
        source.tick(STEP_S)
        if step % 24 == 23:
            await source.settle()
            recording.new_segment()  # a journal segment every 6 hours
        if step == steps // 2:  # the middle of the capture: a reconnect resets the books
            await source.settle()
            source.close_conn(conn)
            conn += 1
            source.open(conn)
            book_sid, trade_sid = await _acked(source, recording, conn)
            book_seq, trade_seq = len(MARKETS) + 1, 1
    await source.settle()
    await session.close()
    return recording


def build_multiday_capture(root: Path, days: int = 3) -> MultiDay:
    """Record `days` days into `root` (in a fresh event loop) and describe the capture."""
    recording = asyncio.run(_record(days))
    recording.write(root)
    times = [r.recv_ns for r in recording.records]
    return MultiDay(root, min(times), max(times), len(recording.records))
