"""Our reconnect loop against a misbehaving exchange: budgets, rate limits, kill, cancel."""

from __future__ import annotations

import asyncio
import time

import pytest

from recorder.errors import ReconnectGaveUp
from recorder.link.policies import DisconnectReason as R
from stream import ConnectionState

from .live_helpers import Reader, eventually, sim_server, watched_session

pytestmark = pytest.mark.timeout(40)
S = ConnectionState
NS = 1_000_000_000


async def test_giving_up_after_the_last_attempt_surfaces_the_error_everywhere() -> None:
    async with sim_server() as server:
        server.add_fault("reject:503")
        watched = watched_session(server, max_reconnect_attempts=3)
        live = watched.session
        await live.open(wait=False)
        trades = Reader(await live.subscribe_trade(raw=True))
        await eventually(lambda: trades.ended)
        assert isinstance(trades.error, ReconnectGaveUp)  # never a silent hang
        assert trades.error.attempts == 4 and "HTTP 503" in str(trades.error)
        assert watched.handshakes() == 4  # the first attempt and three retries
        assert [e.event.will_retry for e in watched.events("error")] == [True] * 3 + [False]
        assert watched.states == [S.CONNECTING, S.RECONNECTING, S.DISCONNECTED, S.CLOSED]
        assert "session" in watched.error_kinds()  # on_error got it too
        assert live.stats.failed_attempts == 4 and live.stats.connects == 0
        with pytest.raises(ReconnectGaveUp):
            await live.open()  # a new run meets the same refusal and says so
        await live.close()


async def test_a_flapping_server_meets_the_attempt_rate_limit() -> None:
    async with sim_server() as server:
        server.add_fault("close:1011@at=0s")  # every connection closes right after opening
        watched = watched_session(
            server,
            attempts_per_window=3,
            attempt_window_s=0.5,
            max_reconnect_attempts=1000,
            reconnect_delay_s=0.01,
            max_reconnect_delay_s=0.01,
        )
        await watched.session.open(wait=False)
        await asyncio.sleep(1.6)
        await watched.session.close()
        starts = [e.mono_ns for e in watched.events("attempt")]
        assert 6 <= len(starts) <= 12  # 3 per 0.5 s window over 1.6 s
        for i, start in enumerate(starts):
            assert len([s for s in starts[i:] if s - start < 0.5 * NS]) <= 3
        waits = [e.event.reason for e in watched.events("reconnect_wait")]
        assert "rate_limit" in waits


async def test_flaps_back_off_and_exhaust_the_budget_because_handshakes_do_not_reset_it() -> None:
    async with sim_server() as server:
        server.add_fault("close:1011@at=0s")
        watched = watched_session(
            server, max_reconnect_attempts=3, reconnect_delay_s=0.05, stable_connection_s=5.0
        )
        await watched.session.open(wait=False)
        trades = Reader(await watched.session.subscribe_trade(raw=True))
        await eventually(lambda: trades.ended)
        assert isinstance(trades.error, ReconnectGaveUp)
        assert trades.error.attempts == 4
        assert len(watched.events("open")) == 4  # each handshake succeeded...
        waits = [e.event for e in watched.events("reconnect_wait")]
        assert [w.attempt for w in waits] == [1, 2, 3][: len(waits)]  # ...and backed off
        assert watched.session.stats.reactive_disconnects == 4


async def test_a_stable_connection_resets_the_budget_and_reconnects_at_once() -> None:
    async with sim_server() as server:
        watched = watched_session(server, max_reconnect_attempts=1, stable_connection_s=0.2)
        live = await watched.session.open()
        trades = Reader(await live.subscribe_trade(raw=True))
        for round_ in range(1, 4):
            await asyncio.sleep(0.3)  # longer than stable_connection_s
            server.inject("close", code=1011)
            await eventually(lambda r=round_: live.stats.connects == r + 1 and live.is_connected)
        assert not trades.ended and live.stats.reactive_disconnects == 3
        assert (
            watched.events("reconnect_wait") == []
        )  # the first retry after a stable one is immediate
        await live.close()


async def test_kill_really_closes_the_socket_and_reconnects_as_a_reactive_drop() -> None:
    async with sim_server() as server:
        watched = watched_session(server)
        live = await watched.session.open()
        trades = Reader(await live.subscribe_trade(raw=True))
        await trades.more_than(3)
        first = server.connections[0].conn_no
        await live.kill()
        await eventually(lambda: server.connection(first) is None)  # the exchange saw it go
        await eventually(lambda: live.stats.connects == 2 and live.is_connected)
        await trades.more_than(len(trades.items) + 3)
        assert live.stats.disconnects_by_reason == {R.KILLED: 1}
        assert live.stats.reactive_disconnects == 1
        assert watched.disconnects == [R.KILLED]  # on_disconnect got the reason
        await live.close()


async def test_kill_without_auto_reconnect_leaves_a_recoverable_dead_session() -> None:
    async with sim_server() as server:
        watched = watched_session(server, auto_reconnect=False)
        live = await watched.session.open()
        trades = Reader(await live.subscribe_trade(raw=True))
        await trades.more_than(3)
        await live.kill()
        assert live.state is S.DISCONNECTED
        assert live.is_dead and live.is_recoverable and not live.is_shutdown
        await asyncio.sleep(0.2)
        assert live.stats.connects == 1 and not trades.ended  # waits, iterators alive
        await live.reconnect()
        assert await live.wait_connected(timeout=5)
        await trades.more_than(len(trades.items) + 3)
        await live.close()
        await live.kill()  # a no-op once closed
        assert live.state is S.CLOSED


async def test_close_cancels_a_pending_reconnect() -> None:
    async with sim_server() as server:
        watched = watched_session(server, server_unavailable_delay_s=30.0)
        live = await watched.session.open()
        server.add_fault("reject:503")
        server.inject("close", code=1013)  # wait 30 s before the next attempt
        await eventually(lambda: len(watched.events("reconnect_wait")) == 1)
        started = time.monotonic()
        await live.close()
        assert time.monotonic() - started < 1.0
        attempts = watched.handshakes()
        await asyncio.sleep(0.3)
        assert watched.handshakes() == attempts == 1  # nothing came back after close()
        assert live.state is S.CLOSED


async def test_cancelling_a_consumer_propagates_and_leaves_the_session_running() -> None:
    async with sim_server() as server:
        live = await watched_session(server).session.open()
        trades = await live.subscribe_trade(raw=True)

        async def consume() -> None:
            async for _ in trades:
                await asyncio.sleep(10)

        task = asyncio.get_running_loop().create_task(consume())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await asyncio.sleep(1)  # asyncio.timeout still works around the session
        quiet = await live.subscribe_ticker(["NO-SUCH-MARKET"], raw=True)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await anext(quiet)
        assert live.is_connected and (await anext(trades)).channel == "trade"
        await live.close()


async def test_cancelling_open_while_it_retries_propagates_and_stops_the_attempts() -> None:
    async with sim_server() as server:
        server.add_fault("reject:503")
        watched = watched_session(server, server_unavailable_delay_s=0.1)
        task = asyncio.get_running_loop().create_task(watched.session.open())
        await eventually(lambda: watched.handshakes() >= 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await watched.session.close()
        attempts = watched.handshakes()
        await asyncio.sleep(0.3)
        assert watched.handshakes() == attempts


async def test_a_callback_controlled_strategy_reconnects_when_the_callback_says() -> None:
    from recorder.link.policies import ReconnectStrategy

    asked: list[float] = []

    def when() -> float | bool:
        asked.append(time.monotonic())
        return 0.3 if len(asked) == 1 else False

    async with sim_server() as server:
        watched = watched_session(
            server, strategy=ReconnectStrategy.CALLBACK_CONTROLLED, should_reconnect=when
        )
        live = await watched.session.open()
        server.inject("close", code=1011)
        closed_at = time.monotonic()
        await eventually(lambda: live.stats.connects == 2 and live.is_connected)
        assert time.monotonic() - closed_at >= 0.3 and len(asked) == 1
        await live.close()
