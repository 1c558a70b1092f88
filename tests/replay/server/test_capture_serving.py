"""The replay server: a capture served through the simulated exchange to a plain client.

Each test records a capture (a scripted live session, or records written one by one),
serves it with `CaptureTape` on a real `SimServer`, and reads it with a plain
websockets client. What the client must get is what the live consumer saw, taken
from a `ReplaySession` over the same files.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from replay.reading.bulk import iter_frames
from replay.server.capture_tape import CaptureTape
from replay.sql.connection import connect
from schemas.events import Opened, RunStart

from ...stream.harness import ScriptedSource, wire
from ..capture_factory import RunBuilder, subscribe, subscribed, trade
from ..recorded import Recording
from ..test_replay_session import MARKETS, record_live
from .capture_helpers import (
    NETWORK_1006,
    PLANNED,
    SERVER_1011,
    client_books,
    consumer_view,
    raw_client,
    received,
    recorded,
    serving,
    trade_ids,
    trades_capture,
    truth_levels,
    until_served,
)

pytestmark = pytest.mark.timeout(60)


async def book_story(source: ScriptedSource, recording: Recording) -> None:
    """Deltas and trades on two markets; a lost seq and its resync; a duplicate; a
    reconnect whose snapshots differ from the books; more deltas on the new connection."""
    seq = 3  # after the two snapshots of the first subscribe
    for i in range(40):
        market = MARKETS[i % 2]
        side = "yes" if i % 3 else "no"
        price = f"0.{20 + i % 15:02d}00" if side == "yes" else f"0.{50 + i % 9:02d}00"
        source.frame(wire.delta(1, seq, market, price, f"{1 + i % 4}.00", side))
        source.frame(wire.trade(2, i + 1, market, f"t{i}"))
        seq += 1
        source.tick(0.01)
    source.frame(wire.delta(1, seq + 1, "KX-A", "0.3300", "5.00"))  # seq lost: gap
    await source.settle()
    resync = [c for _, c in source.sent if c["cmd"] == "update_subscription"][-1]
    for n, market in enumerate(MARKETS):
        levels = (("0.2100", "7.00"), ("0.2500", "1.00"))
        source.frame(wire.snapshot(1, seq + 2 + n, market, levels, (("0.6000", "3.00"),),
                                   cmd_id=resync["id"]))  # fmt: skip
    seq += 4
    source.frame(wire.delta(1, seq, "KX-B", "0.2500", "-1.00"))
    source.frame(wire.delta(1, seq, "KX-B", "0.2500", "-1.00"))  # duplicate: dropped live
    source.tick(0.01)
    source.close_conn(1)  # recorded as a reactive NETWORK_ERROR close
    source.open(2)
    await source.settle()  # resubscribed: sids 3 (book) and 4 (trade), default snapshots
    for i in range(10):
        source.frame(wire.delta(3, 3 + i, MARKETS[i % 2], f"0.3{i}00", "2.00"), conn=2)
        source.frame(wire.trade(4, i + 1, MARKETS[i % 2], f"after-{i}"), conn=2)
        source.tick(0.01)


@pytest.fixture
async def story(tmp_path: Path) -> Path:
    await record_live(tmp_path, book_story)
    return tmp_path


async def test_a_client_gets_the_recorded_frames_with_fresh_sids_and_seqs_in_order(
    story: Path,
) -> None:
    live = await consumer_view(story, ["orderbook_delta", "trade"])
    tape = CaptureTape(story, speed=None)
    async with serving(tape) as server, raw_client(server) as client:
        sids = await client.subscribe(["trade", "orderbook_delta"], market_tickers=MARKETS)
        await until_served(server, tape)
        await client.sync()
    expected = recorded(live.frames)  # type: ignore[attr-defined]
    got = received(client)
    wanted = set(expected)
    assert [m for m in got if m in wanted] == expected  # every one, once, in order, byte-exact
    snapshots = [f for f, _ in client.data("orderbook_snapshot")]
    assert [(f["seq"], f["msg"]["market_ticker"]) for f in snapshots] == [(1, "KX-A"), (2, "KX-B")]
    synthetic = [t for t, m in got if (t, m) not in wanted and t != "orderbook_snapshot"]
    assert synthetic and set(synthetic) == {"orderbook_delta"}  # the recorded snapshots' diffs
    assert sids == [1, 2]
    for sid in sids:
        seqs = [f["seq"] for f, _ in client.data() if f["sid"] == sid]
        assert seqs == list(range(1, len(seqs) + 1))
    assert len([t for t, _ in expected if t == "trade"]) == 50


async def test_recorded_frames_are_served_as_text_messages(story: Path) -> None:
    """A capture does not say yet which frames came as binary messages: all go as text."""
    tape = CaptureTape(story, speed=None)
    async with (
        serving(tape) as server,
        websockets.connect(server.url, close_timeout=0.5) as ws,  # it stops reading midway
    ):
        params = {"channels": ["trade", "orderbook_delta"], "market_tickers": MARKETS}
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": params}))
        async with asyncio.timeout(10):
            messages = [await ws.recv() for _ in range(40)]  # str: text, bytes: binary
    assert {json.loads(m)["type"] for m in messages} >= {"trade", "orderbook_delta"}
    assert all(isinstance(m, str) for m in messages)


async def test_a_clients_book_equals_the_truth_across_a_recorded_resync_and_reconnect(
    story: Path,
) -> None:
    live = await consumer_view(story, ["orderbook_delta"])
    tape = CaptureTape(story, speed=None)
    async with serving(tape) as server, raw_client(server) as client:
        await client.subscribe(["orderbook_delta"], market_tickers=MARKETS)
        await until_served(server, tape)
        await client.sync()
        books = client_books(client)
        for ticker in MARKETS:
            yes, no, clock = books[ticker]
            assert (yes, no) == truth_levels(server, ticker)
            end = live.last_books[ticker]  # type: ignore[attr-defined]  # the consumer's, at the end
            assert (yes, no) == (dict(end.yes), dict(end.no))
            assert clock == server.book(ticker)["clock"] == end.clock  # type: ignore[index]
    assert tape.reports["gap"] == 1  # the recorded gap was met, and left behind


async def test_a_subscriber_starting_anywhere_keeps_the_truth(story: Path) -> None:
    """`book()` is the truth at the served position: a book started from it at any point
    and moved by the deltas served after it ends equal to the truth."""
    tape = CaptureTape(story, speed=None)
    await tape.start()
    started: list[tuple[dict[Any, Any], dict[Any, Any]]] = []
    try:
        while not tape.finished:
            view = tape.book("KX-A")
            assert view is not None
            started.append(({p: q for p, q in view.yes}, {p: q for p, q in view.no}))
            for event in tape.take(3):
                msg = event.payload
                if event.type != "orderbook_delta" or msg["market_ticker"] != "KX-A":
                    continue
                for yes, no in started:
                    apply_delta(yes if msg["side"] == "yes" else no, msg)
            await asyncio.sleep(0)
    finally:
        await tape.stop()
    end = tape.book("KX-A")
    assert end is not None and len(started) > 20
    for yes, no in started:
        assert (yes, no) == (dict(end.yes), dict(end.no))


def apply_delta(side: dict[str, str], msg: dict[str, Any]) -> None:
    from decimal import Decimal

    price = f"{Decimal(msg['price_dollars']):.4f}"
    left = Decimal(side.get(price, "0")) + Decimal(msg["delta_fp"])
    if left:
        side[price] = f"{left:.2f}"
    else:
        side.pop(price, None)


async def test_paced_serving_takes_the_capture_time_divided_by_the_speed(tmp_path: Path) -> None:
    trades_capture(tmp_path, [(100, None)], step_ns=10_000_000)  # about 1 s of capture
    tape = CaptureTape(tmp_path, speed=4.0)
    async with serving(tape) as server, raw_client(server) as client:
        await client.subscribe(["trade"])
        t0 = time.monotonic()
        stamps = []
        while len(stamps) < 100:
            frame = await client.recv()
            if frame["type"] == "trade":
                stamps.append(time.monotonic() - t0)
    assert 0.18 <= stamps[-1] < 0.8  # about 1.05 s / 4, after a 0.1 s start grace
    assert stamps[49] - stamps[0] >= 0.08  # spread out, not one burst


async def test_max_mode_drops_nothing_and_never_cuts_off_a_slow_reader(tmp_path: Path) -> None:
    trades_capture(tmp_path, [(3000, None)])
    tape = CaptureTape(tmp_path, speed=None)
    async with serving(tape, send_buffer_frames=64) as server, raw_client(server) as client:
        await client.subscribe(["trade"])
        while len(client.data("trade")) < 3000:
            await client.recv()
            if len(client.frames) % 200 == 0:
                await asyncio.sleep(0.02)  # a slow reader
        assert server.truth is not None and not server.truth.faults()
        assert len(server.connections) == 1
    assert trade_ids(client) == [f"T{i}" for i in range(1, 3001)]
    assert [f["seq"] for f, _ in client.data("trade")] == list(range(1, 3001))


async def test_paced_at_a_high_speed_the_same_slow_reader_is_cut_off(tmp_path: Path) -> None:
    trades_capture(tmp_path, [(3000, None)])
    tape = CaptureTape(tmp_path, speed=1000.0)  # 3 s of capture in 3 ms
    async with serving(tape, send_buffer_frames=64) as server, raw_client(server) as client:
        await client.subscribe(["trade"])
        await asyncio.sleep(0.3)  # not reading: the paced tape does not wait for us
        code = await client.read_until_closed()
        assert server.truth is not None
        assert [f["fault"] for f in server.truth.faults()] == ["overflow"]
    assert code == 1008 and len(client.data("trade")) < 3000


async def meet(server: Any, tape: CaptureTape) -> list[tuple[list[str], int | None]]:
    """Connect, subscribe to trades, read until closed or served; reconnect as a client
    would. Returns each connection's trade ids and how it ended (close code; None: a
    dropped connection; 0: still open at the end)."""
    segments: list[tuple[list[str], int | None]] = []
    while not tape.finished:
        async with raw_client(server) as client:
            await client.subscribe(["trade"])
            reader = asyncio.ensure_future(client.read_until_closed())
            while not reader.done() and not tape.finished:
                await asyncio.sleep(0.01)
            if reader.done():
                segments.append((trade_ids(client), reader.result()))
                continue
            reader.cancel()
            await server.quiesce()
            await client.sync()
            server.resume()
            segments.append((trade_ids(client), 0))
    return segments


async def test_recorded_disconnects_close_the_client_with_their_codes_where_they_were(
    tmp_path: Path,
) -> None:
    trades_capture(tmp_path, [(10, SERVER_1011), (10, NETWORK_1006), (10, PLANNED), (10, None)])
    tape = CaptureTape(tmp_path, speed=None, reproduce_disconnects=True)
    async with serving(tape) as server:
        segments = await meet(server, tape)
        assert server.truth is not None
        faults = [(f["conn"], f["fault"]) for f in server.truth.faults()]
        assert faults == [(1, "close"), (2, "drop")]
    ids = [f"T{i}" for i in range(1, 41)]
    assert segments == [(ids[:10], 1011), (ids[10:20], None), (ids[20:], 0)]
    assert tape.closes_served == 2  # the planned rotation is not reproduced


async def test_without_the_flag_the_recorded_disconnects_are_not_reproduced(
    tmp_path: Path,
) -> None:
    trades_capture(tmp_path, [(10, SERVER_1011), (10, NETWORK_1006), (10, None)])
    tape = CaptureTape(tmp_path, speed=None)
    async with serving(tape) as server:
        segments = await meet(server, tape)
    assert segments == [([f"T{i}" for i in range(1, 31)], 0)]


async def test_a_start_time_serves_from_there_with_the_books_of_that_time(tmp_path: Path) -> None:
    marks: dict[str, int] = {}

    async def long_story(source: ScriptedSource, recording: Recording) -> None:
        seq = 3
        for i in range(60):
            price = f"0.{10 + i % 40:02d}00"
            source.frame(wire.delta(1, seq, MARKETS[i % 2], price, f"{1 + i % 3}.00"))
            source.frame(wire.trade(2, i + 1, MARKETS[i % 2], f"t{i}"))
            seq += 1
            source.tick(0.4)  # the live engine checkpoints every 2 s of this clock
            if i == 40:
                await source.settle()
                marks["t"] = source.now_ns

    await record_live(tmp_path, long_story, checkpoint_s=2.0)
    live = await consumer_view(tmp_path, ["orderbook_delta", "trade"], start=marks["t"])
    tape = CaptureTape(tmp_path, speed=None, start=marks["t"])
    async with serving(tape) as server, raw_client(server) as client:
        await client.subscribe(["trade", "orderbook_delta"], market_tickers=MARKETS)
        await until_served(server, tape)
        await client.sync()
        books = client_books(client)
        for ticker in MARKETS:
            end = live.last_books[ticker]  # type: ignore[attr-defined]
            assert books[ticker][:2] == truth_levels(server, ticker)
            assert books[ticker][:2] == (dict(end.yes), dict(end.no))
    expected = recorded(live.frames)  # type: ignore[attr-defined]
    assert [m for m in received(client) if m in set(expected)] == expected
    assert client.data("trade")[0][0]["msg"]["trade_id"] == "t41"


async def test_index_filters_market_ids_and_initial_tickers_come_from_the_capture(
    tmp_path: Path,
) -> None:
    from ..capture_factory import M1, RunBuilder, subscribe, subscribed, ticker

    run = RunBuilder(tmp_path)
    run.event(Opened(url="wss://x", standby=False), 1)
    run.send(subscribe(1, ["cfbenchmarks_value", "ticker"]))
    run.receive(subscribed(1, "cfbenchmarks_value", 1))
    run.receive(subscribed(1, "ticker", 2))
    run.receive({"id": 2, "type": "cfbenchmarks_value_indexlist", "sid": 1, "seq": 1,
                 "msg": {"index_ids": ["BRTI", "ETHUSD_RTI", "SOLUSD_RTI"]}})  # fmt: skip
    for seq, index_id in enumerate(["BRTI", "ETHUSD_RTI", "BRTI", "ETHUSD_RTI"], start=2):
        msg = {"index_id": index_id, "received_at": 1_795_248_000_000 + seq, "data": "{}",
               "avg_60s_data": {"value": "1.00000000", "window_size": 60}}  # fmt: skip
        run.receive({"type": "cfbenchmarks_value", "sid": 1, "seq": seq, "msg": msg})
    run.receive(ticker(2, M1))
    run.write()
    tape = CaptureTape(tmp_path, speed=None)
    async with serving(tape) as server, raw_client(server) as client:
        await client.subscribe(["cfbenchmarks_value"], index_ids=["BRTI"])
        await until_served(server, tape)
        cid = await client.command("update_subscription",
                                   {"sid": 1, "action": "indexlist"})  # fmt: skip
        listing = await client.until_reply(cid)
        cid = await client.command("subscribe", {"channels": ["ticker"], "market_ids": ["9b0f6d1e"],
                                                 "send_initial_snapshot": True})  # fmt: skip
        await client.until_reply(cid)
        initial = await client.recv()
    values = [f["msg"]["index_id"] for f, _ in client.data("cfbenchmarks_value")]
    assert values == ["BRTI", "BRTI"]  # the index filter, on recorded values
    assert listing["msg"] == {"index_ids": ["BRTI", "ETHUSD_RTI", "SOLUSD_RTI"]}
    assert initial["type"] == "ticker" and initial["msg"] == ticker(2, M1)["msg"]
    assert tape.market_tickers() == [M1]


async def test_a_market_filter_serves_only_that_markets_frames(story: Path) -> None:
    tape = CaptureTape(story, speed=None, markets=["KX-B"], channels=["trade"])
    async with serving(tape) as server, raw_client(server) as client:
        await client.subscribe(["trade"])
        await until_served(server, tape)
        await client.sync()
    markets = [f["msg"]["market_ticker"] for f, _ in client.data("trade")]
    assert markets == ["KX-B"] * 25
    assert tape.market_tickers() == ["KX-B"] and tape.book("KX-B") is None  # no book served


async def test_a_frame_recorded_as_binary_is_replayed_and_served_as_binary(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path)
    run.event(RunStart(run_id=run.run_id, version="test"), 0)
    run.event(Opened(url="wss://x", standby=False), 1)
    run.send(subscribe(1, ["trade"]))
    run.receive(subscribed(1, "trade", 1))
    binary_seqs = {3, 5}
    for seq in range(1, 7):
        frame = trade(1, seq, "KX-T", "0.5000", "0.5000", "1.00")
        frame["msg"]["trade_id"] = f"T{seq}"
        run.receive(frame, binary=seq in binary_seqs)
    run.write()

    # The capture holds the opcode: SQL, the bulk reader and the replay engine all see it.
    con = connect(tmp_path)
    opcodes = con.execute("SELECT seq, opcode FROM frames WHERE type = 'trade' ORDER BY idx")
    assert opcodes.fetchall() == [(s, 2 if s in binary_seqs else 1) for s in range(1, 7)]
    con.close()
    bulk = [f for f in iter_frames(tmp_path) if f.type == "trade"]
    assert [f.opcode for f in bulk] == [2 if f.seq in binary_seqs else 1 for f in bulk]
    view = await consumer_view(tmp_path, ["trade"])
    assert [(f.seq, f.binary) for f in view.frames] == [(s, s in binary_seqs) for s in range(1, 7)]

    # Served: each trade goes out as the kind of message it came as, its msg byte for byte.
    tape = CaptureTape(tmp_path, speed=None)
    async with serving(tape) as server, websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"]}}))
        kinds: dict[str, bool] = {}
        async with asyncio.timeout(10):
            while len(kinds) < 6:
                message = await ws.recv()
                frame = json.loads(message)
                if frame["type"] == "trade":
                    kinds[frame["msg"]["trade_id"]] = isinstance(message, bytes)
    assert kinds == {f"T{s}": s in binary_seqs for s in range(1, 7)}
