"""`record --feeds 2` end to end: two feeds of the simulated exchange with faults on some of
their connections, one capture; its replay arbitrates exactly as the recorder did."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pytest

from replay.datasets import compute
from replay.reading.session import ReplaySession
from schemas.events import Arbitrated as RecordedArbitrated
from schemas.events import event_from_bytes
from stream.events import Arbitrated

from .test_record import run_record

pytestmark = pytest.mark.timeout(120)


def recorded_moves(root: Path) -> list[tuple[Any, ...]]:
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT recv_ns, raw FROM read_parquet('{root}/channel=_session/**/*.parquet', "
            "hive_partitioning = false) WHERE type = 'arbitrate' ORDER BY idx"
        )
        .fetchall()
    )
    moves = []
    for recv_ns, raw in rows:
        event = event_from_bytes(raw)
        assert isinstance(event, RecordedArbitrated)
        moves.append((event.market, event.from_feed, event.to_feed, event.reason, recv_ns))
    return moves


async def replay_moves(root: Path) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The arbitration decisions a replay takes, and the trade ids it delivers."""
    session = ReplaySession(root)
    moves: list[tuple[Any, ...]] = []
    dispatch = session._dispatch_outputs

    async def watched() -> None:
        for out in session.engine.outbox:
            if isinstance(out, Arbitrated):
                moves.append((out.market, out.from_feed, out.to_feed, out.reason, out.recv_ns))
        await dispatch()

    session._dispatch_outputs = watched  # type: ignore[method-assign]
    trade_ids: list[str] = []
    async with session:
        trades = await session.subscribe_trade(raw=True)
        books = await session.subscribe("orderbook_delta")

        async def drain() -> None:
            async for _ in books:
                pass

        drained = asyncio.get_running_loop().create_task(drain())
        async for frame in trades:
            trade_ids.append(json.loads(frame.raw)["msg"]["trade_id"])
        await drained
    return moves, trade_ids


def test_two_feeds_record_one_capture_that_replays_as_it_was_arbitrated(tmp_path: Path) -> None:
    root = tmp_path / "d"
    # Connections 1 and 3 (handshakes, whichever feed made them) drop every 1.5 s.
    done = run_record("--sim", "--feeds", "2", "--duration", "5s",
                      "--root", str(root), "--sim-fault", "drop@every=1.5s,conn=1+3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    con = duckdb.connect()
    by_feed = dict(con.execute(
        f"SELECT feed, count(*) FROM read_parquet('{root}/channel=*/**/*.parquet', "
        "hive_partitioning = false) WHERE dir = 'in' GROUP BY feed"
    ).fetchall())  # fmt: skip
    assert set(by_feed) == {0, 1} and min(by_feed.values()) > 100
    recorded = recorded_moves(root)
    assert recorded, "the drops moved no book from one feed to the other"
    replayed, trade_ids = asyncio.run(replay_moves(root))
    assert replayed == recorded  # the same decisions, at the same records
    assert trade_ids and len(trade_ids) == len(set(trade_ids))  # each trade once
    # The datasets arbitrate the same way: the trades table is the replay's trades.
    trades = compute(root, "trades")
    assert sorted(trades.column("trade_id").to_pylist()) == sorted(trade_ids)
    quotes = compute(root, "quotes")
    assert quotes.num_rows and pc.sum(quotes.column("valid")).as_py() > 0.9 * quotes.num_rows


def test_a_recorded_capture_of_two_feeds_derives_as_it_replays(tmp_path: Path) -> None:
    """Two feeds of the simulated exchange with drops on some connections and sequence gaps
    on all: every dataset, derived with the kernel taking both feeds' frames, equals what
    a ReplaySession consumer sees, state by state and trade by trade
    (tests/replay/datasets/test_equality.py)."""
    from tests.replay.datasets.test_equality import assert_equal_to_replay

    root = tmp_path / "d"
    done = run_record("--sim", "--feeds", "2", "--duration", "6s", "--root", str(root),
                      "--sim-fault", "drop@every=1.5s,conn=1+3",
                      "--sim-fault", "gap@p=0.004")  # fmt: skip
    assert done.returncode == 0, done.stderr
    reasons = {move[3] for move in recorded_moves(root)}
    assert {"gap", "disconnect"} <= reasons, reasons  # books moved for both causes
    out = assert_equal_to_replay(root, interval="1s")
    assert out["book_changes"].num_rows > 1_000 and out["trades"].num_rows > 10
