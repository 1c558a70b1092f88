"""The Session API over a scripted source (docs/protocol.md sections 9.10 and 9.12 to 9.15)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import msgspec
import pytest

from schemas.parse import parse_message
from stream import (
    BackpressureError,
    ConnectionState,
    NotSubscribed,
    Overflow,
    ServerError,
    Session,
    SessionClosed,
    SubscribeTimeout,
)

from .harness import ScriptedSource, auto_server, wire

D = Decimal
pytestmark = pytest.mark.timeout(20)


async def started(source: ScriptedSource | None = None, **kw) -> tuple[Session, ScriptedSource]:
    source = source or ScriptedSource()
    session = Session(source, **kw)
    await session.start()
    source.open(1)
    await source.settle()
    return session, source


async def test_subscribe_waits_for_the_ack_and_the_iterator_yields_frames() -> None:
    session, source = await started()
    trades = await session.subscribe_trade(["KX-A"], raw=True)
    assert source.sent[0][1]["params"] == {"channels": ["trade"], "market_tickers": ["KX-A"]}
    source.frame(wire.trade(1, 1, "KX-A"))
    frame = await anext(trades)
    assert (frame.channel, frame.type, frame.seq, frame.market_ticker) == (
        "trade",
        "trade",
        1,
        "KX-A",
    )
    await session.close()


async def test_callbacks_and_iterators_both_get_every_message() -> None:
    session, source = await started()
    seen: list[int] = []
    session.on("trade", raw=True)(lambda f: seen.append(f.seq))

    async def async_cb(f) -> None:
        seen.append(-f.seq)

    session.on("trade", raw=True)(async_cb)
    trades = await session.subscribe_trade(raw=True)
    for seq in (1, 2, 3):
        source.frame(wire.trade(1, seq, "KX-A", f"t{seq}"))
    got = [(await anext(trades)).seq for _ in range(3)]
    await source.settle()
    assert got == [1, 2, 3]
    assert seen == [1, -1, 2, -2, 3, -3]
    await session.close()


async def test_a_failing_callback_is_reported_and_the_stream_goes_on() -> None:
    errors = []
    session, source = await started(on_error=errors.append)
    session.on("trade", raw=True)(lambda f: 1 / 0)
    trades = await session.subscribe_trade(raw=True)
    source.frame(wire.trade(1, 1, "KX-A"))
    source.frame(wire.trade(1, 2, "KX-A"))
    assert [(await anext(trades)).seq for _ in range(2)] == [1, 2]
    await source.settle()
    assert [e.kind for e in errors] == ["callback_error", "callback_error"]
    await session.close()


async def test_run_forever_without_a_subscription_raises() -> None:
    session, source = await started()
    with pytest.raises(NotSubscribed):
        await session.run_forever()
    await session.close()


async def test_run_forever_returns_cleanly_when_the_stop_event_is_set() -> None:
    session, source = await started()
    trades = await session.subscribe_trade(raw=True)
    stop = asyncio.Event()
    runner = asyncio.create_task(session.run_forever(stop_event=stop))
    await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(runner, 2)  # no CancelledError leaks (#177)
    assert runner.exception() is None
    assert session.state is ConnectionState.CLOSED
    assert [f async for f in trades] == []


async def test_frames_buffered_at_close_are_delivered_before_the_iterator_ends() -> None:
    session, source = await started()
    trades = await session.subscribe_trade(raw=True)
    for seq in (1, 2, 3):
        source.frame(wire.trade(1, seq, "KX-A", f"t{seq}"))
    await source.settle()
    await session.close()
    assert [f.seq async for f in trades] == [1, 2, 3]


async def test_error_overflow_is_fatal_and_raised_in_the_iterator() -> None:
    states = []
    session, source = await started(on_state_change=lambda old, new: states.append(new))
    books = await session.subscribe_orderbook_delta(["KX-A"], raw=True, maxsize=5)
    for seq in range(2, 10):
        source.frame(wire.delta(1, seq, "KX-A", "0.4000", "1.00"))
    await source.settle()
    got = []
    with pytest.raises(BackpressureError, match="orderbook_delta"):
        async for frame in books:
            got.append(frame.seq)
    assert got == [1, 2, 3, 4, 5]  # what was queued before the overflow is still delivered
    assert states[-1] is ConnectionState.CLOSED
    with pytest.raises(SessionClosed):
        await session.subscribe_trade()
    await session.close()


async def test_drop_oldest_keeps_the_newest_and_counts_drops() -> None:
    session, source = await started()
    tickers = await session.subscribe_ticker(raw=True, maxsize=3)
    for price in ("0.1000", "0.2000", "0.3000", "0.4000", "0.5000"):
        source.frame(wire.ticker(1, "KX-A", price))
    await source.settle()
    await session.close()
    got = [f async for f in tickers]
    assert [b'"price_dollars":"0.5000"' in f.raw for f in got] == [False, False, True]
    assert tickers.dropped == 2


async def test_block_makes_the_producer_wait_and_drops_nothing() -> None:
    session, source = await started()
    trades = await session.subscribe_trade(raw=True, maxsize=4, overflow=Overflow.BLOCK)
    for seq in range(1, 101):
        source.frame(wire.trade(1, seq, "KX-A", f"t{seq}"))
    got = []
    async for frame in trades:
        got.append(frame.seq)
        assert len(trades._queue) <= 5  # bounded: the producer waited instead of piling up
        if frame.seq == 100:
            break
    assert got == list(range(1, 101))
    await session.close()


async def test_orderbook_yields_a_fresh_immutable_book_per_update() -> None:
    session, source = await started()
    books = await session.orderbook("KX-A")
    first = await anext(books)
    source.frame(wire.delta(1, 2, "KX-A", "0.4000", "5.00"))
    second = await anext(books)
    assert first.yes == {D("0.40"): D("10.00")}  # unchanged by the later delta
    assert second.yes == {D("0.40"): D("15.00")}
    assert second.best_yes_bid.price == D("0.40") and second.spread == D("0.05")
    assert session.book("KX-A") == second
    await session.close()


async def test_list_subscriptions_returns_the_server_list() -> None:
    session, source = await started()
    await session.subscribe_trade()
    await session.subscribe_orderbook_delta(["KX-A"])
    listed = await session.list_subscriptions()
    assert listed == [{"channel": "trade", "sid": 1}, {"channel": "orderbook_delta", "sid": 2}]
    await session.close()


async def test_update_subscription_returns_the_ok_payload_and_raises_on_error() -> None:
    server = auto_server()

    def responder(conn, cmd):
        if cmd["cmd"] == "update_subscription":
            if cmd["params"]["action"] == "add_markets":
                return [wire.ok(cmd["id"], {"market_tickers": ["KX-A", "KX-B"]})]
            return [wire.error(13, "Unsupported action", cmd_id=cmd["id"])]
        return server(conn, cmd)

    session, source = await started(ScriptedSource(responder))
    trades = await session.subscribe_trade(["KX-A"])
    assert await trades.update("add_markets", market_tickers=["KX-B"]) == {
        "market_tickers": ["KX-A", "KX-B"]
    }
    with pytest.raises(ServerError, match="13"):
        await trades.update("explode")
    await session.close()


async def test_subscribe_raises_subscribe_timeout_when_no_ack_comes() -> None:
    session, source = await started(ScriptedSource(lambda conn, cmd: []))
    pending = asyncio.create_task(session.subscribe_fill())
    await source.settle()
    source.tick(11)
    with pytest.raises(SubscribeTimeout, match="'fill'"):
        await asyncio.wait_for(pending, 2)
    await session.close()


async def test_when_the_source_gives_up_iterators_raise_its_error_and_on_error_hears_it() -> None:
    errors = []
    session, source = await started(on_error=errors.append)
    trades = await session.subscribe_trade(raw=True)
    source.frame(wire.trade(1, 1, "KX-A"))
    source.fail(ConnectionError("gave up after 10 attempts"))
    got = []
    with pytest.raises(ConnectionError, match="10 attempts"):
        async for frame in trades:
            got.append(frame.seq)
    assert got == [1]
    await asyncio.sleep(0)
    assert errors[-1].kind == "session"
    assert session.state is ConnectionState.CLOSED


async def test_states_come_in_order_across_a_reconnect() -> None:
    states = []
    session, source = await started(on_state_change=lambda old, new: states.append(new.value))
    await session.subscribe_trade()
    source.close_conn(1)
    source.open(2)
    await source.settle()
    await session.close()
    assert states == [
        "CONNECTING",
        "CONNECTED",
        "STREAMING",
        "RECONNECTING",
        "CONNECTED",
        "STREAMING",
        "CLOSED",
    ]


async def test_a_subscription_resumes_on_the_new_connection_under_the_same_client_id() -> None:
    session, source = await started()
    trades = await session.subscribe_trade(raw=True)
    source.frame(wire.trade(1, 1, "KX-A", "t1"))
    source.close_conn(1)
    source.open(2)
    await source.settle()
    source.frame(wire.trade(2, 1, "KX-A", "t2"), conn=2)
    got = [await anext(trades), await anext(trades)]
    assert [(f.conn, f.sid) for f in got] == [(1, 1), (2, 2)]
    resubscribe = [cmd for conn, cmd in source.sent if conn == 2]
    assert resubscribe[0]["params"]["channels"] == ["trade"]
    await session.close()


async def test_consumers_get_pydantic_models_unless_they_ask_for_raw_frames() -> None:
    session, source = await started()
    trades = await session.subscribe_trade(["KX-A"])
    source.frame(wire.trade(1, 1, "KX-A", "t1", price="0.4500"))
    message = await anext(trades)
    assert type(message).__name__ == "Trade"
    assert message.msg.yes_price_dollars == D("0.4500")
    assert message.msg.no_price_dollars == D("0.5500")
    assert message.seq == 1
    await session.close()


async def test_a_frame_that_fails_its_model_is_reported_and_skipped_not_fatal() -> None:
    errors = []
    session, source = await started(on_error=errors.append)
    trades = await session.subscribe_trade()
    source.frame(b'{"type":"trade","sid":1,"seq":1,"msg":{"market_ticker":"KX-A"}}')
    source.frame(wire.trade(1, 2, "KX-A", "t2"))
    message = await anext(trades)
    await source.settle()
    assert message.seq == 2
    (report,) = [e for e in errors if e.kind == "malformed"]
    assert "trade.msg.trade_id" in report.message
    assert report.raw.startswith(b'{"type":"trade"')
    await session.close()


async def test_struct_consumers_get_the_typed_mirrors_of_the_models_in_async_for() -> None:
    errors = []
    session, source = await started(on_error=errors.append)
    trades = await session.subscribe_trade(["KX-A"], struct=True)
    source.frame(b'{"type":"trade","sid":1,"seq":1,"msg":{"market_ticker":"KX-A"}}')
    second = wire.trade(1, 2, "KX-A", "t2", price="0.4500")
    source.frame(second)
    source.frame(wire.trade(1, 3, "KX-A", "t3", price="0.4600"))
    await source.settle()
    got = []
    async for message in trades:
        got.append(message)
        if len(got) == 2:
            break
    assert [type(m).__name__ for m in got] == ["Trade", "Trade"]
    assert isinstance(got[0], msgspec.Struct)
    assert [m.msg.yes_price_dollars for m in got] == [D("0.4500"), D("0.4600")]
    assert got[0].type == "trade" and got[0].seq == 2
    source.tick(0.0)  # one more input: the session pumps the report out
    await source.settle()
    model = parse_message(second)  # the pydantic model of the same frame: the same values
    assert model.msg.trade_id == got[0].msg.trade_id and model.msg.ts == got[0].msg.ts
    assert [e.kind for e in errors].count("malformed") == 1  # the bad frame, reported
    with pytest.raises(ValueError, match="exclude"):
        await session.subscribe_trade(raw=True, struct=True)
    await session.close()


async def test_a_consumer_that_breaks_out_of_async_for_loses_nothing_queued() -> None:
    session, source = await started()
    trades = await session.subscribe_trade(raw=True)
    for seq in range(1, 6):
        source.frame(wire.trade(1, seq, "KX-A", f"t{seq}"))
    await source.settle()
    first = []
    async for frame in trades:
        first.append(frame.seq)
        if len(first) == 2:
            break
    rest = []
    async for frame in trades:
        rest.append(frame.seq)
        if len(first) + len(rest) == 5:
            break
    assert first + rest == [1, 2, 3, 4, 5]
    await session.close()
