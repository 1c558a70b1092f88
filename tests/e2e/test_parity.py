"""The flagship: a consumer attached live during a capture, and the same consumer on its replay,
receive identical message sequences and identical books, across every reconnect; with one
feed, and with two redundant feeds arbitrated (docs/redundancy.md section 2).

A real recorder (`recorder.service.app.Recorder`: journal, publisher, live client) records an
in-process simulated exchange that injects disconnects, gaps and duplicates, while a
planned make-before-break rotation happens too. A consumer attached to the recorder's
subscriptions records digests of everything it gets. Then the capture (real Parquet
files) is replayed through a `ReplaySession` with the same consumer code.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import duckdb
import pytest

from recorder.service.app import Recorder
from recorder.service.config import load_config
from replay.reading.session import ReplaySession
from replay.server import ServerConfig, SimServer, Switches, parse_fault
from replay.sql.verify import verify_capture
from stream import Session

pytestmark = pytest.mark.timeout(120)
BOOKS = 3  # markets whose books the consumer follows


async def attach_consumer(session: Session, markets: list[str], seen: dict[str, list[Any]]) -> None:
    """The consumer under test: every delta and snapshot, trades, tickers, some books."""

    def frame_view(f: Any) -> tuple[Any, ...]:
        return (f.conn, f.type, f.sid, f.seq, f.market_ticker, hashlib.sha1(f.raw).hexdigest())

    def book_view(b: Any) -> tuple[Any, ...]:
        return (b.market, b.valid, b.seq, tuple(b.yes_bids), tuple(b.no_bids))

    streams = {
        "deltas": (await session.subscribe("orderbook_delta", raw=True, attach=True), frame_view),
        "trades": (await session.subscribe("trade", raw=True, attach=True), frame_view),
        "tickers": (await session.subscribe("ticker", raw=True, attach=True), frame_view),
    }
    for market in markets[:BOOKS]:
        streams[f"book {market}"] = (await session.orderbook(market, attach=True), book_view)

    async def pump(name: str, sub: Any, view: Any) -> None:
        async for item in sub:
            seen.setdefault(name, []).append(view(item))

    for name, (sub, view) in streams.items():
        asyncio.get_running_loop().create_task(pump(name, sub, view))


async def record(
    root: Path, server: SimServer, markets: list[str], feeds: int
) -> dict[str, list[Any]]:
    overrides = {
        "connection.url": server.url,
        "connection.feeds": feeds,
        "channels.orderbook_delta": "all",
        "channels.trade": "all",
        "channels.ticker": "all",
        "storage.root": str(root),
        "storage.commit_interval_ms": 20,
        "storage.segment_max_mb": 0.5,
        "storage.checkpoint_interval_s": 1,
        "health.status_interval_s": 0.2,
        "jobs.compaction": "",
        "live.reconnect_delay_s": 0.05,
    }
    seen: dict[str, list[Any]] = {}
    sessions: list[Any] = []

    async def on_ready(session: Any) -> None:
        sessions.append(session)
        await attach_consumer(session, markets, seen)

    recorder = Recorder(load_config(None, overrides), progress=False, on_ready=on_ready)
    runner = asyncio.create_task(recorder.run())
    while not sessions:
        await asyncio.sleep(0.05)
    await asyncio.sleep(3.0)
    assert await sessions[0].rotate()  # a planned make-before-break rotation
    await asyncio.sleep(3.0)
    server.pause()
    await server.quiesce()
    await asyncio.sleep(0.5)
    recorder.request_stop("test")
    assert await runner == 0
    await asyncio.sleep(0.1)  # the consumer tasks see their iterators end
    return seen


async def replay(root: Path, markets: list[str]) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {}
    async with ReplaySession(root) as session:
        await attach_consumer(session, markets, seen)
        await session.run_forever()
    await asyncio.sleep(0.1)
    return seen


@pytest.mark.parametrize("feeds", [1, 2], ids=["one feed", "two feeds"])
async def test_live_and_replayed_consumers_see_the_same_messages_and_books(
    tmp_path: Path, feeds: int
) -> None:
    faults = [parse_fault(s) for s in ("close:1011@every=2s", "gap@p=0.002", "dup@p=0.002",
                                       "drop@at=4.5s")]  # fmt: skip
    config = ServerConfig(
        auth="open", rate_fps=1500, markets=6, seed=11, faults=tuple(faults),
        switches=Switches(orderbook_without_tickers="all"),
    )  # fmt: skip
    async with SimServer(config) as server:
        markets = sorted(server.tape.market_tickers())
        live = await record(tmp_path, server, markets, feeds)
    report = verify_capture(tmp_path)
    assert not report.corrupt, report.problems()

    again = await replay(tmp_path, markets)

    conns = {c for c, *_ in live["deltas"]}
    assert len(conns) >= 3, "the capture must hold reconnects and the rotation"
    assert sum(1 for _, t, *_ in live["deltas"] if t == "orderbook_snapshot") > len(conns)
    assert report.seq_summary["gap"] >= 1  # injected gaps reached the capture
    for name in live:
        assert len(again.get(name, [])) == len(live[name]), name
        assert again[name] == live[name], name
    if feeds == 2:  # the two feeds broke at different times: books moved between them
        moves = (
            duckdb.connect()
            .execute(
                f"SELECT count(*) FROM read_parquet('{tmp_path}/channel=_session/**/*.parquet', "
                "hive_partitioning = false) WHERE type = 'arbitrate'"
            )
            .fetchone()
        )
        assert moves is not None and moves[0] > 0
        return
    for market in markets[:BOOKS]:
        valid = [ok for _, ok, *_ in live[f"book {market}"]]
        while valid and not valid[-1]:
            valid.pop()  # the recorder's own stop closes the connection at the end
        # A reset that a valid book follows: books were cleared, and came back.
        assert False in valid, f"{market}: no reset was followed by a rebuilt book"
