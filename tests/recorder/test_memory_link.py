"""The live client over an in-memory link: its reconnect behaviour with no socket at all.

The opener is injected (`LiveSession(opener=...)`), as httpx takes a transport;
the test plays the server. These check the client's own decisions; the same
behaviours against a real WebSocket server are in test_live_*.py.
"""

from __future__ import annotations

import asyncio

import pytest

from recorder.errors import PermanentClose, ReconnectGaveUp
from recorder.link.lifecycle import LinkState
from recorder.link.live import LiveSession
from recorder.link.policies import CloseVerdict
from stream.state import ConnectionState

from .memory_link import MemoryExchange, MemorySocket

pytestmark = pytest.mark.timeout(20)
URL = "ws://127.0.0.1:9/trade-api/ws/v2"
FAST = {"reconnect_delay_s": 0.01, "max_reconnect_delay_s": 0.02, "close_timeout_s": 0.1}


def trade(sid: int, seq: int) -> dict:
    return {
        "type": "trade", "sid": sid, "seq": seq,
        "msg": {"trade_id": f"t{seq}", "market_ticker": "KX-A", "yes_price_dollars": "0.4500",
                "no_price_dollars": "0.5500", "count_fp": "1.00", "taker_side": "yes",
                "taker_outcome_side": "yes", "taker_book_side": "bid",
                "is_block_trade": False, "ts": 1795244476, "ts_ms": 1795244476657},
    }  # fmt: skip


async def ack_subscribe(socket: MemorySocket, sid: int) -> None:
    command = await socket.command()
    assert command["cmd"] == "subscribe" and command["params"]["channels"] == ["trade"]
    socket.push(
        {"id": command["id"], "type": "subscribed", "msg": {"channel": "trade", "sid": sid}}
    )


async def test_a_server_close_reconnects_resubscribes_and_the_stream_goes_on() -> None:
    exchange = MemoryExchange()
    live = LiveSession(URL, opener=exchange.open, **FAST)
    async with live.connect() as session:
        first = await exchange.connection(1)
        trades = await asyncio.gather(session.subscribe_trade(raw=True), ack_subscribe(first, 1))
        stream = trades[0]
        first.push(trade(1, 1))
        assert (await anext(stream)).seq == 1
        first.server_close(1011, "internal error")
        second = await exchange.connection(2)
        await ack_subscribe(second, 7)  # the same subscription, re-issued on the new link
        second.push(trade(7, 1))
        frame = await anext(stream)
        assert (frame.conn, frame.sid, frame.seq) == (2, 7, 1)
        assert live._live.link_state is LinkState.OPEN
        assert (live.stats.connects, live.stats.reactive_disconnects) == (2, 1)
    assert live.state is ConnectionState.CLOSED


async def test_a_permanent_close_code_ends_the_session_without_another_attempt() -> None:
    exchange = MemoryExchange()
    live = LiveSession(URL, opener=exchange.open, **FAST)
    await live.open()
    (await exchange.connection(1)).server_close(4001, "auth")
    await live.wait_disconnected(5)
    await asyncio.sleep(0.05)
    assert isinstance(live.final_error, PermanentClose)
    assert exchange.attempts == 1 and live.state is ConnectionState.CLOSED
    assert live._live.link_state is LinkState.FAILED
    await live.close()


async def test_refused_attempts_back_off_and_give_up_after_the_allowed_number() -> None:
    exchange = MemoryExchange()
    live = LiveSession(URL, opener=exchange.open, max_reconnect_attempts=3, **FAST)
    await live.open()
    exchange.refuse = CloseVerdict.RETRY
    (await exchange.connection(1)).drop()
    for _ in range(200):
        if live.state is ConnectionState.CLOSED:
            break
        await asyncio.sleep(0.01)
    assert isinstance(live.final_error, ReconnectGaveUp)
    assert exchange.attempts == 1 + 3  # the first, then the three the plan allows
    await live.close()


async def test_a_requested_disconnect_holds_until_reconnect_is_asked_for() -> None:
    exchange = MemoryExchange()
    live = LiveSession(URL, opener=exchange.open, **FAST)
    await live.open()
    assert await live.request_disconnect() is True
    assert live.state is ConnectionState.DISCONNECTED
    assert live._live.link_state is LinkState.HELD
    await asyncio.sleep(0.05)
    assert exchange.attempts == 1  # held: nothing reconnects by itself
    await live.reconnect()
    await exchange.connection(2)
    assert await live.wait_connected(5)
    await live.close()
