"""ReplaySession: the live consumer's view, reproduced from a capture (real Parquet files).

Each test records a scripted live session (tests/stream/harness.py) into a capture the
way the recorder lays it out (tests/replay/recorded.py), then replays it with the same
consumer code and compares what both saw.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from replay.errors import NotInCapture
from replay.reading.session import ReplaySession
from stream import EngineConfig, Session

from ..stream.harness import ScriptedSource, auto_server, wire
from .rebuild import rebuilt
from .recorded import Recording

D = Decimal
pytestmark = pytest.mark.timeout(30)
MARKETS = ["KX-A", "KX-B"]


async def consume(session: Session, out: dict[str, list[Any]]) -> list[asyncio.Task[None]]:
    """The consumer under test: raw book frames, trades, and the book of KX-A."""
    deltas = await session.subscribe("orderbook_delta", raw=True, attach=True)
    trades = await session.subscribe("trade", raw=True, attach=True)
    books = await session.orderbook("KX-A", attach=True)

    async def pump(name: str, sub: Any, view: Any) -> None:
        async for item in sub:
            out.setdefault(name, []).append(view(item))

    def frame_view(f: Any) -> tuple[Any, ...]:
        return (f.type, f.market_ticker, f.seq, f.conn, hashlib.sha1(f.raw).hexdigest())

    def book_view(b: Any) -> tuple[Any, ...]:
        return (b.valid, b.seq, tuple(b.yes_bids), tuple(b.no_bids))

    return [
        asyncio.create_task(pump("deltas", deltas, frame_view)),
        asyncio.create_task(pump("trades", trades, frame_view)),
        asyncio.create_task(pump("books", books, book_view)),
    ]


async def record_live(root: Path, script: Any, checkpoint_s: float | None = None) -> dict:
    """Run `script` against a live session whose capture subscriptions a consumer attaches
    to; write the capture under `root`; return what the consumer saw."""
    recording = Recording()
    source = ScriptedSource(auto_server(), log=recording)
    states: list[str] = []
    session = Session(
        source,
        on_state_change=lambda old, new: states.append(new.value),
        engine_config=EngineConfig(checkpoint_interval_s=checkpoint_s),
    )
    await session.start()
    await session.subscribe_wire("orderbook_delta", {"market_tickers": MARKETS})
    await session.subscribe_wire("trade", {})
    seen: dict[str, list[Any]] = {}
    tasks = await consume(session, seen)
    source.open(1)
    await source.settle()
    await script(source, recording)
    await source.settle()
    await session.close()
    await asyncio.gather(*tasks)
    recording.write(root)
    seen["states"] = states
    return seen


async def replay(root: Path, **kw: Any) -> dict:
    states: list[str] = []
    session = ReplaySession(root, on_state_change=lambda old, new: states.append(new.value), **kw)
    seen: dict[str, list[Any]] = {}
    async with session:
        tasks = await consume(session, seen)
        await asyncio.gather(*tasks)
    seen["states"] = states
    seen["records_fed"] = session.source.records
    return seen


async def busy_market(source: ScriptedSource, recording: Recording) -> None:
    """Deltas and trades, a dropped seq (gap + resync), a duplicate, a reconnect."""
    sid_book, sid_trade = 1, 2
    seq = 3  # after the two snapshots of auto_server
    for i in range(20):
        source.frame(wire.delta(sid_book, seq, MARKETS[i % 2], f"0.{30 + i:02d}00", "2.00"))
        seq += 1
        source.frame(wire.trade(sid_trade, i + 1, MARKETS[i % 2], f"t{i}"))
        if i == 10:
            recording.new_segment()
    source.frame(wire.delta(sid_book, seq + 1, "KX-A", "0.5000", "1.00"))  # seq lost: gap
    await source.settle()
    resync = [c for _, c in source.sent if c["cmd"] == "update_subscription"][-1]
    source.frame(wire.snapshot(sid_book, seq + 2, "KX-A", cmd_id=resync["id"]))
    source.frame(wire.snapshot(sid_book, seq + 3, "KX-B", cmd_id=resync["id"]))
    source.frame(wire.delta(sid_book, seq + 4, "KX-A", "0.5100", "3.00"))
    source.frame(wire.delta(sid_book, seq + 4, "KX-A", "0.5100", "3.00"))  # duplicate
    source.close_conn(1)
    source.open(2)
    await source.settle()
    source.frame(wire.delta(3, 3, "KX-B", "0.2000", "4.00"), conn=2)
    source.frame(wire.trade(4, 1, "KX-B", "after-reconnect"), conn=2)
    source.tick(0.5)


async def test_replay_delivers_exactly_what_the_live_consumer_saw(tmp_path: Path) -> None:
    live = await record_live(tmp_path, busy_market)
    again = await replay(tmp_path)
    assert len(live["deltas"]) > 20 and len(live["trades"]) == 21
    assert again["deltas"] == live["deltas"]
    assert again["trades"] == live["trades"]
    assert again["books"] == live["books"]
    assert [b[0] for b in live["books"]].count(False) >= 2  # the gap and the reconnect
    assert again["states"] == [*live["states"][:-1], "CLOSED"]


async def test_subscribing_to_a_channel_the_capture_lacks_lists_what_it_holds(
    tmp_path: Path,
) -> None:
    await record_live(tmp_path, busy_market)
    async with ReplaySession(tmp_path) as session:
        with pytest.raises(
            NotInCapture,
            match=r"no 'fill' data; it holds \['orderbook_delta', "
            r"'trade'\]",
        ):
            await session.subscribe_fill()
        with pytest.raises(NotInCapture, match=r"no trade data for \['KX-Z'\].*KX-A, KX-B"):
            await session.subscribe_trade(["KX-Z"])


async def test_a_market_filter_narrows_what_is_read_and_delivered(tmp_path: Path) -> None:
    live = await record_live(tmp_path, busy_market)
    session = ReplaySession(tmp_path, markets=["KX-B"])
    async with session:
        trades = await session.subscribe_trade(["KX-B"], raw=True)
        got = [f.market_ticker async for f in trades]
    assert got == ["KX-B"] * sum(1 for t in live["trades"] if t[1] == "KX-B")


async def test_a_market_filter_on_a_shared_subscription_makes_no_false_gaps(
    tmp_path: Path,
) -> None:
    """KX-A and KX-B share one orderbook subscription and its seq counter: a replay of
    KX-A alone must not take the seqs of KX-B's frames for lost ones (a false gap would
    clear the book and mark it invalid where the live one was valid)."""
    live = await record_live(tmp_path, busy_market)
    alone = await replay(tmp_path, markets=["KX-A"])
    assert alone["books"] == live["books"]
    assert alone["deltas"] == [d for d in live["deltas"] if d[1] == "KX-A"]


def long_market(marks: dict[str, int]) -> Any:
    """A script: 60 deltas taking turns between the markets (every third on the NO side)
    and a trade after each, 0.4 s apart (checkpoints every 2 s of this clock);
    `marks["t"]`: the time after the 41st."""

    async def script(source: ScriptedSource, recording: Recording) -> None:
        seq = 3
        for i in range(60):
            side = "no" if i % 3 == 0 else "yes"
            source.frame(wire.delta(1, seq, MARKETS[i % 2], f"0.{10 + i % 40:02d}00", "1.00",
                                    side=side))  # fmt: skip
            source.frame(wire.trade(2, i + 1, MARKETS[i % 2], f"t{i}"))
            seq += 1
            source.tick(0.4)
            if i == 40:
                await source.settle()
                marks["t"] = source.now_ns

    return script


async def test_seek_gives_the_books_that_were_live_at_that_time(tmp_path: Path) -> None:
    marks: dict[str, int] = {}
    await record_live(tmp_path, long_market(marks), checkpoint_s=2.0)
    checkpoints = list(tmp_path.glob("channel=_checkpoint/*/*.parquet"))
    assert checkpoints, "the live engine wrote connection checkpoints"
    full = await replay(tmp_path)
    seeked = await replay(tmp_path, start=marks["t"])
    assert seeked["books"][0] in full["books"]  # the first book after the seek is a live one
    assert seeked["books"] == full["books"][full["books"].index(seeked["books"][0]) :]
    assert len(seeked["deltas"]) < len(full["deltas"])
    # restored from a checkpoint: far fewer records fed than from the start
    assert seeked["records_fed"] < full["records_fed"] * 0.6


async def test_a_seek_into_a_resync_begins_with_the_invalid_book_a_pass_left(
    tmp_path: Path,
) -> None:
    """A seek whose start falls between a gap and its resync: KX-A's book consumer first
    gets the invalid book the pass gave it at the gap, then what the pass gave it after
    (the resync's book and every change), not the resync's book as if nothing preceded."""
    marks: dict[str, int] = {}

    async def gapped(source: ScriptedSource, recording: Recording) -> None:
        seq = 3
        for i in range(30):
            source.frame(wire.delta(1, seq, MARKETS[i % 2], f"0.{10 + i:02d}00", "1.00"))
            source.frame(wire.trade(2, i + 1, MARKETS[i % 2], f"t{i}"))
            seq += 1
            source.tick(0.4)
        source.frame(wire.delta(1, seq + 1, "KX-A", "0.5000", "1.00"))  # seq lost: gap
        await source.settle()
        resync = [c for _, c in source.sent if c["cmd"] == "update_subscription"][-1]
        source.tick(0.4)
        source.frame(wire.snapshot(1, seq + 2, "KX-B", cmd_id=resync["id"]))
        source.tick(0.4)
        await source.settle()
        marks["t"] = source.now_ns  # KX-B back, KX-A still awaiting its snapshot
        source.tick(0.4)
        source.frame(wire.snapshot(1, seq + 3, "KX-A", cmd_id=resync["id"]))
        for i in range(4):
            source.frame(wire.delta(1, seq + 4 + i, "KX-A", f"0.{60 + i}00", "2.00"))
            source.tick(0.4)

    await record_live(tmp_path, gapped, checkpoint_s=2.0)
    full = await replay(tmp_path)
    seeked = await replay(tmp_path, start=marks["t"])
    assert seeked["records_fed"] < full["records_fed"] * 0.6  # restored from a checkpoint
    cleared = [k for k, book in enumerate(full["books"]) if not book[0]]
    assert len(cleared) == 1  # the gap's
    assert seeked["books"] == full["books"][cleared[0] :]


async def test_a_seek_with_snapshots_begins_each_book_with_its_state_at_the_start(
    tmp_path: Path,
) -> None:
    """`snapshots=True`: a raw book consumer gets, at the seek's start, a snapshot frame of
    each market's book there (in seq order, the last one's seq just before the next
    recorded frame's), then the recorded frames: the books it rebuilds from that alone are
    after every frame those of a consumer that read the capture from its start."""
    marks: dict[str, int] = {}
    await record_live(tmp_path, long_market(marks), checkpoint_s=2.0)

    async def raw_book_frames(**kw: Any) -> list[Any]:
        async with ReplaySession(tmp_path, **kw) as session:
            deltas = await session.subscribe("orderbook_delta", raw=True, attach=True)
            return [frame async for frame in deltas]

    full = await raw_book_frames()
    plain = await raw_book_frames(start=marks["t"])
    seeked = await raw_book_frames(start=marks["t"], snapshots=True)
    assert plain[0].type == "orderbook_delta"  # without: the recorded frames alone
    head, tail = seeked[: len(MARKETS)], seeked[len(MARKETS) :]
    assert [f.type for f in head] == ["orderbook_snapshot"] * len(MARKETS)
    assert sorted(f.market_ticker for f in head) == MARKETS
    assert [f.seq for f in head] == sorted(f.seq for f in head)
    assert head[-1].seq + 1 == tail[0].seq and all(f.sid == tail[0].sid for f in head)
    assert [f.raw for f in tail] == [f.raw for f in plain]
    skipped = len(full) - len(tail)
    assert skipped > 40 and [f.raw for f in full[skipped:]] == [f.raw for f in tail]
    from_seek, one_pass = (rebuilt([json.loads(f.raw) for f in fs]) for fs in (seeked, full))
    assert from_seek[len(MARKETS) - 1 :] == one_pass[skipped - 1 :]
    # A model consumer gets them as models (the market's id kept in the checkpoint the
    # books were restored from), then the recorded frames'
    async with ReplaySession(tmp_path, start=marks["t"], snapshots=True) as session:
        models = await session.subscribe("orderbook_delta", attach=True)
        got = [m async for m in models]
    assert [(m.type, m.msg.market_id) for m in got[: len(MARKETS)]] == [
        ("orderbook_snapshot", "m-" + f.market_ticker) for f in head
    ]
    assert [m.msg for m in got[len(MARKETS) :]] == [f.message().msg for f in tail]


async def test_speed_paces_on_the_monotonic_clock_not_the_wall_clock(tmp_path: Path) -> None:
    async def slow_market(source: ScriptedSource, recording: Recording) -> None:
        for i in range(10):
            source.frame(wire.trade(2, i + 1, "KX-A", f"t{i}"))
            source.tick(0.1)  # 1 s of capture in all
            if i == 5:
                await source.settle()
                source.now_ns += 3_600_000_000_000  # the wall clock jumps an hour

    await record_live(tmp_path, slow_market)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    session = ReplaySession(tmp_path, speed=10.0)
    async with session:
        trades = await session.subscribe_trade(raw=True)
        got = [f async for f in trades]
    elapsed = loop.time() - t0
    assert len(got) == 10
    assert 0.08 <= elapsed < 1.0  # ~0.1 s at 10x; an hour's step would make it 6 minutes


async def test_bulk_access_yields_the_records_in_replay_order_with_filters(tmp_path: Path) -> None:
    from replay.reading.bulk import iter_batches, iter_frames

    live = await record_live(tmp_path, busy_market)
    frames = list(iter_frames(tmp_path, channels=["trade"]))
    assert [f.idx for f in frames] == sorted(f.idx for f in frames)
    assert len(frames) == len(live["trades"])
    assert {f.channel for f in frames} == {"trade"}
    assert [hashlib.sha1(f.raw).hexdigest() for f in frames] == [t[4] for t in live["trades"]]
    only_b = list(iter_frames(tmp_path, channels=["trade"], markets=["KX-B"]))
    assert {f.market_ticker for f in only_b} == {"KX-B"}
    batches = list(iter_batches(tmp_path, columns=["idx", "channel", "raw"]))
    assert sum(b.num_rows for b in batches) == len(list(iter_frames(tmp_path)))
    assert batches[0].schema.names == ["idx", "channel", "raw"]
    middle = frames[len(frames) // 2].recv_ns
    later = list(iter_frames(tmp_path, start=middle, channels=["trade"]))
    assert later == [f for f in frames if f.recv_ns >= middle]
