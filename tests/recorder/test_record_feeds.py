"""`record --feeds 2` end to end: two feeds of the simulated exchange with faults on some of
their connections, one capture; its replay arbitrates exactly as the recorder did."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
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

from ..replay.rebuild import rebuilt
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


async def _delivered(root: Path, start: int | None, since: int) -> tuple[list[Any], list[Any]]:
    """What ReplaySession consumers get (from `start`, or one pass), from `since` on: each
    market's book states, and the trade ids."""
    from replay.reading.capture import Capture

    markets = sorted(Capture(root).markets("orderbook_delta"))
    books: list[Any] = []
    trades: list[Any] = []
    async with ReplaySession(root, start=start, channels=["orderbook_delta", "trade"]) as s:
        subs = [await s.orderbook(m, maxsize=1 << 20) for m in markets]
        tsub = await s.subscribe("trade", raw=True, maxsize=1 << 20)

        async def drain(sub: Any) -> None:
            async for snap in sub:
                if snap.recv_ns >= since:
                    yes, no = sorted(snap.yes_units.items()), sorted(snap.no_units.items())
                    books.append((snap.market, snap.recv_ns, snap.valid, yes, no))

        async def drain_trades() -> None:
            async for frame in tsub:
                if frame.recv_ns >= since:
                    trades.append(json.loads(frame.raw)["msg"]["trade_id"])

        await asyncio.gather(*(drain(sub) for sub in subs), drain_trades())
    return sorted(books), trades


async def _raw_books(root: Path, start: int | None) -> list[dict[str, Any]]:
    """The book frames a raw consumer gets (with `start`: a seek with `snapshots`), as
    (recv_ns, JSON body)."""
    async with ReplaySession(root, start=start, channels=["orderbook_delta"],
                             snapshots=True) as s:  # fmt: skip
        sub = await s.subscribe("orderbook_delta", raw=True, maxsize=1 << 20)
        return [{"recv_ns": f.recv_ns, **json.loads(f.raw)} async for f in sub]


def check_raw_books_at_a_seek(root: Path, start: int) -> None:
    """A raw book consumer of a seek with `snapshots` gets one snapshot of each book held
    at the start, from the feed that delivers it, then one pass's frames: the books it
    rebuilds are after every frame one pass's."""
    full = asyncio.run(_raw_books(root, None))
    seek = asyncio.run(_raw_books(root, start))
    head = [f for f in seek if f["recv_ns"] < start]
    assert head and {f["type"] for f in head} == {"orderbook_snapshot"}
    markets = [f["msg"]["market_ticker"] for f in head]
    assert len(set(markets)) == len(markets)
    tail = seek[len(head) :]
    skipped = len(full) - len(tail)
    assert full[skipped:] == tail and full[skipped - 1]["recv_ns"] < start
    assert rebuilt(seek)[len(head) - 1 :] == rebuilt(full)[skipped - 1 :]


@pytest.mark.parametrize("owner", [0, 1])
def test_a_seek_into_two_feeds_restores_both_and_goes_on_as_one_pass(
    tmp_path: Path, owner: int
) -> None:
    """Two feeds of the simulated exchange (faults aimed at a feed by its URL's tag),
    checkpoints every second: the other feed's first connection is dropped at 0.5 s, so
    feed `owner` delivers every book from then on, and at 5 s a gap on `owner`'s first
    connection moves every book to the other feed. Seeking after both feeds' checkpoints
    (what a derive day shard, a backtest shard and `ReplaySession(start=...)` do), the
    dataset rows from the start on are one pass's, in its order (the books the gap hands
    over go in market order, whether restored or not), and a ReplaySession consumer gets
    one pass's book states and trades: each book delivered from `owner` (the checkpoints
    say so) and moved at the gap, as live; a raw book consumer with `snapshots` one
    pass's frames after a snapshot of each book. (With only feed 0's checkpoint restored, feed
    1 sat out until its next connection and the books went invalid at the gap; with both
    restored but not who delivered what, feed 0 delivered every book after the seek.)"""
    tags = ("a", "b")
    from replay.reading.capture import Capture

    exchange = subprocess.Popen(
        [sys.executable, "-m", "replay.server", "--open", "--port", "0", "--rate", "2000",
         "--markets", "8", "--seed", "7", "--switch", "orderbook_without_tickers=all",
         "--fault", f"drop@at=0.5s,tag={tags[1 - owner]},conn=1+2",
         "--fault", f"gap@at=5s,tag={tags[owner]},conn=1+2,channel=orderbook_delta"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert exchange.stdout is not None
        url = exchange.stdout.readline().strip()
        root = tmp_path / "d"
        config = tmp_path / "record.toml"
        config.write_text(
            f'[connection]\nurl = "{url}"\nfeeds = 2\nurls = ["{url}?tag=a", "{url}?tag=b"]\n'
            '[channels]\norderbook_delta = "all"\ntrade = "all"\n'
            f'[storage]\nroot = "{root}"\ncheckpoint_interval_s = 1\n'
        )
        done = run_record("--config", str(config), "--duration", "8s")
        assert done.returncode == 0, done.stderr
    finally:
        exchange.kill()
        exchange.wait()
    lo, _ = Capture(root).time_range()
    moves = recorded_moves(root)
    seen = Counter((m[1], m[2], m[3]) for m in moves)
    for start in (lo + 3_500_000_000, lo + 4_200_000_000):
        checkpoints = (
            duckdb.connect()
            .execute(
                f"SELECT DISTINCT feed FROM read_parquet('{root}/channel=_checkpoint/**/*.parquet',"
                f" hive_partitioning = false) WHERE recv_ns < {start}"
            )
            .fetchall()
        )
        assert sorted(checkpoints) == [(0,), (1,)]  # both feeds have one before the start
        assert all(m[2] == owner for m in moves if m[4] < start), seen  # it delivers every book
        assert any(m[1:4] == (owner, 1 - owner, "gap") for m in moves if m[4] >= start), seen
        for name in ("book_changes", "quotes", "trades"):
            whole = compute(root, name)
            want = whole.filter(pc.greater_equal(whole.column("recv_ns"), start))
            got = compute(root, name, start=start)
            assert want.num_rows > (10 if name == "trades" else 100), name
            assert got.to_pylist() == want.to_pylist(), name  # in one pass's order
        one_pass = asyncio.run(_delivered(root, None, start))
        assert asyncio.run(_delivered(root, start, start)) == one_pass
        assert len(one_pass[0]) > 100 and len(one_pass[1]) > 10
        check_raw_books_at_a_seek(root, start)
