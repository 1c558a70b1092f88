"""Proactive control: holds, policies, make-before-break rotations, age limits, windows, alerts."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from recorder.link.live import LiveSession
from recorder.link.policies import DisconnectReason as R
from schemas.errors import ConfigError
from stream import ConnectionState, Overflow

from .live_helpers import (
    Observer,
    Reader,
    book_matches_truth,
    eventually,
    sim_server,
    trade_id,
    watched_session,
)

pytestmark = pytest.mark.timeout(40)
S = ConnectionState
NS = 1_000_000_000


async def test_request_disconnect_holds_with_iterators_open_until_should_reconnect_says_yes() -> (
    None
):
    answers = [False, False, True]
    async with sim_server() as server:
        watched = watched_session(
            server, should_reconnect=lambda: answers.pop(0), reconnect_check_interval_s=0.1
        )
        live = await watched.session.open()
        trades = Reader(await live.subscribe_trade(raw=True))
        await trades.more_than(3)
        assert await live.request_disconnect() is True
        assert live.state is S.DISCONNECTED and live.is_recoverable
        assert not trades.ended
        await eventually(lambda: live.stats.connects == 2 and live.is_connected)
        assert answers == []  # asked three times, one interval apart
        await trades.more_than(len(trades.items) + 3)
        assert live.stats.disconnects_by_reason == {R.USER_REQUESTED: 1}
        assert live.stats.proactive_disconnects == 1 and live.stats.reactive_disconnects == 0
        assert watched.events("close")[0].event.will_reconnect is False
        await live.close()


async def test_an_async_should_reconnect_returning_seconds_reconnects_after_them() -> None:
    async def later() -> float:
        return 0.3

    async with sim_server() as server:
        watched = watched_session(server, should_reconnect=later, reconnect_check_interval_s=0.05)
        live = await watched.session.open()
        await live.request_disconnect()
        held_at = time.monotonic()
        await eventually(lambda: live.is_connected)
        assert time.monotonic() - held_at >= 0.3
        waits = [e.event for e in watched.events("reconnect_wait")]
        assert [(w.reason, w.delay_s) for w in waits] == [("callback", 0.3)]
        await live.close()


async def test_reconnect_after_comes_back_after_the_delay_without_spending_the_budget() -> None:
    async with sim_server() as server:
        watched = watched_session(server, max_reconnect_attempts=0)
        live = await watched.session.open()
        trades = Reader(await live.subscribe_trade(raw=True))
        started = time.monotonic()
        await live.request_disconnect(reconnect_after=0.3)
        assert live.state is S.RECONNECTING
        await eventually(lambda: live.is_connected)
        assert time.monotonic() - started >= 0.3
        await trades.more_than(len(trades.items) + 3)
        assert not trades.ended
        await live.close()


async def test_a_reactive_reason_cannot_be_requested() -> None:
    live = LiveSession("ws://127.0.0.1:9/x")
    with pytest.raises(ValueError, match="reactive"):
        await live.request_disconnect(reason=R.SERVER_CLOSED)


async def test_planned_rotations_are_make_before_break_and_lose_no_frame() -> None:
    async with sim_server(rate_fps=1000.0) as server:
        ticker = server.tape.market_tickers()[0]
        async with Observer(server.url) as observer:
            watched = watched_session(server, max_reconnect_attempts=0)
            live = await watched.session.open()
            trades = Reader(await live.subscribe_trade(raw=True, maxsize=1_000_000))
            books = Reader(await live.orderbook(ticker, maxsize=1_000_000))
            deltas = Reader(await live.subscribe_orderbook_delta([ticker], raw=True))
            await trades.more_than(10)
            mark = len(watched.states)
            assert await live.rotate() is True
            await trades.more_than(len(trades.items) + 10)
            assert await live.request_disconnect(reconnect_after=0) is True
            await trades.more_than(len(trades.items) + 10)
            await live.schedule_reconnect(0.05)
            await eventually(lambda: live.stats.rotations == 3)
            await trades.more_than(len(trades.items) + 10)
            assert await book_matches_truth(live, server, ticker)
            await observer.sync(99)
            got = [trade_id(frame) for frame in trades.items]
            truth = observer.trade_ids
            assert len(got) == len(set(got))  # no trade twice
            assert got == truth[truth.index(got[0]) :]  # and none missing, in order
            assert len(got) > 40
        assert all(snapshot.valid for snapshot in books.items)  # never an invalid book
        assert all(item.conn in (1, 2, 3, 4) for item in deltas.items)
        assert watched.states[mark:] == []  # stayed STREAMING throughout
        stats = live.stats
        assert (stats.rotations, stats.connects, stats.reactive_disconnects) == (3, 4, 0)
        assert stats.disconnects_by_reason == {R.USER_REQUESTED: 2, R.SCHEDULED: 1}
        switches = [(e.event.old_conn, e.event.new_conn) for e in watched.events("switch")]
        assert switches == [(1, 2), (2, 3), (3, 4)]
        await live.close()


async def test_a_rotation_without_subscriptions_reconnects_at_once() -> None:
    async with sim_server() as server:
        live = await watched_session(server).session.open()
        assert await live.rotate() is True
        await eventually(lambda: live.stats.connects == 2 and live.is_connected)
        await live.close()


async def test_the_maximum_connection_age_rotates_before_the_limit_and_spends_no_budget() -> None:
    async with sim_server() as server:
        watched = watched_session(
            server, max_connection_age_s=0.5, disconnect_margin_s=0.2, max_reconnect_attempts=1
        )
        live = await watched.session.open()
        trades = Reader(await live.subscribe_trade(raw=True, maxsize=100_000))
        await eventually(lambda: live.stats.rotations >= 3, timeout_s=5)
        first_open = watched.events("open")[0].mono_ns
        first_switch = watched.events("switch")[0].mono_ns
        assert (first_switch - first_open) / NS >= 0.3  # the age limit minus the margin
        assert set(live.stats.disconnects_by_reason) == {R.CONNECTION_LIMIT}
        assert live.connection_duration_s < 0.5
        server.inject("close", code=1011)  # the reactive budget (1) is still whole
        await eventually(lambda: live.stats.reactive_disconnects == 1 and live.is_connected)
        await trades.more_than(len(trades.items) + 3)
        assert not trades.ended
        await live.close()


async def test_an_async_should_disconnect_is_awaited_before_it_counts() -> None:
    calls: list[float] = []

    async def should_disconnect() -> bool:
        calls.append(time.monotonic())
        return len(calls) >= 2

    async with sim_server() as server:
        watched = watched_session(
            server,
            should_disconnect=should_disconnect,
            disconnect_check_interval_s=0.1,
            should_reconnect=lambda: True,
            reconnect_check_interval_s=0.1,
        )
        live = await watched.session.open()
        await eventually(lambda: live.stats.disconnects == 1)
        assert len(calls) == 2  # a coroutine is not a "yes": the first answer was False
        assert live.stats.disconnects_by_reason == {R.CALLBACK_TRIGGERED: 1}
        await eventually(lambda: live.stats.connects == 2 and live.is_connected)
        await live.close()


async def test_schedule_reconnect_brings_back_a_held_session_and_close_cancels_it() -> None:
    async with sim_server() as server:
        live = await watched_session(server).session.open()
        await live.request_disconnect()
        await live.schedule_reconnect(0.2)
        await eventually(lambda: live.is_connected)
        assert live.stats.connects == 2
        await live.request_disconnect()
        await live.schedule_reconnect(0.3)
        await live.close()
        await asyncio.sleep(0.4)
        assert live.stats.connects == 2 and live.state is S.CLOSED


async def test_reconnect_windows_rotate_on_their_schedule() -> None:
    async with sim_server() as server:
        start = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3)
        trigger = IntervalTrigger(seconds=0.3, start_date=start)
        watched = watched_session(server, reconnect_windows=[trigger])
        live = await watched.session.open()
        await live.subscribe_trade(raw=True, overflow=Overflow.DROP_OLDEST)
        await eventually(lambda: live.stats.rotations >= 2, timeout_s=5)
        assert set(live.stats.disconnects_by_reason) == {R.SCHEDULED}
        await live.close()


def test_a_crontab_window_that_does_not_parse_is_a_config_error() -> None:
    LiveSession("ws://127.0.0.1:9/x", reconnect_windows=["0 4 * * *"])
    with pytest.raises(ConfigError, match="reconnect_windows"):
        LiveSession("ws://127.0.0.1:9/x", reconnect_windows=["every day at 4"])


# ---------------------------------------------------------------- wait_for_reconnect_window


async def test_wait_for_reconnect_window_without_a_callback_is_false() -> None:
    assert await LiveSession("ws://127.0.0.1:9/x").wait_for_reconnect_window() is False


async def test_wait_for_reconnect_window_is_true_when_the_callback_says_so() -> None:
    live = LiveSession("ws://127.0.0.1:9/x", should_reconnect=lambda: False)
    assert await live.wait_for_reconnect_window(lambda: True) is True  # per-call wins


async def test_wait_for_reconnect_window_waits_a_number_then_asks_again() -> None:
    answers: list[Any] = [0.2, True]
    live = LiveSession("ws://127.0.0.1:9/x", reconnect_check_interval_s=5.0)
    started = time.monotonic()
    assert await live.wait_for_reconnect_window(lambda: answers.pop(0)) is True
    assert 0.2 <= time.monotonic() - started < 1.0 and answers == []


async def test_wait_for_reconnect_window_times_out_false_and_never_connects() -> None:
    live = LiveSession("ws://127.0.0.1:9/x", reconnect_check_interval_s=0.05)
    started = time.monotonic()
    assert await live.wait_for_reconnect_window(lambda: False, timeout=0.2) is False
    assert 0.2 <= time.monotonic() - started < 0.6
    assert live.stats.attempts == 0


# ---------------------------------------------------------------- alerts and statistics


async def test_disconnect_alerts_are_throttled_and_flushed_with_the_suppressed_count() -> None:
    alerts: list[Any] = []
    async with sim_server() as server:
        watched = watched_session(
            server, on_disconnect_alert=alerts.append, disconnect_alert_interval_s=0.6
        )
        live = await watched.session.open()
        for n in range(3):
            server.inject("close", code=1011)
            await eventually(lambda n=n: live.stats.connects == n + 2 and live.is_connected)
        assert [(a.count, a.suppressed) for a in alerts] == [(1, 0)]
        await eventually(lambda: len(alerts) == 2, timeout_s=2)  # the timer flushes
        assert (alerts[1].count, alerts[1].suppressed) == (2, 2)
        assert dict(alerts[1].reasons) == {R.SERVER_CLOSED: 2}
        await live.close()


async def test_statistics_count_traffic_as_bytes_and_connections_by_kind() -> None:
    async with sim_server() as server:
        watched = watched_session(server)
        live = await watched.session.open()
        trades = Reader(await live.subscribe_trade(raw=True, maxsize=100_000))
        await trades.more_than(5)
        await live.rotate()
        server.inject("close", code=1001)
        await eventually(lambda: live.stats.connects == 3 and live.is_connected)
        await trades.more_than(len(trades.items) + 5)
        uptime = live.uptime_s
        assert live.connection_duration_s < uptime
        await live.close()
        stats = live.stats
        frames = [r for r in watched.sink.records if r.dir == "in"]
        assert stats.messages_received == len(frames)
        assert stats.bytes_received == sum(len(r.raw) for r in frames)
        assert stats.per_channel["trade"] == sum(1 for r in frames if b'"type":"trade"' in r.raw)
        assert (stats.connects, stats.rotations) == (3, 1)
        assert stats.disconnects_by_reason == {
            R.USER_REQUESTED: 2,  # the rotation's old connection, and close()
            R.SERVER_CLOSED: 1,
        }
        assert (stats.proactive_disconnects, stats.reactive_disconnects) == (2, 1)
        assert stats.last_connect_ns <= stats.last_disconnect_ns
        assert live.connection_duration_s == 0.0 and live.uptime_s >= uptime


def test_a_missed_window_is_skipped_not_fired_late() -> None:
    from recorder.link.control import next_window

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    trigger = IntervalTrigger(minutes=5, start_date=start)
    fire = next_window(trigger, None, start)
    assert fire == start
    late = start + dt.timedelta(hours=2, seconds=30)  # the machine slept two hours
    assert next_window(trigger, fire, late) == start + dt.timedelta(hours=2, minutes=5)
    on_time = start + dt.timedelta(minutes=5, milliseconds=200)
    assert next_window(trigger, fire, on_time) == start + dt.timedelta(minutes=5)


async def test_a_disconnect_during_a_rotation_cancels_it_and_holds() -> None:
    async with sim_server() as server:
        watched = watched_session(server)
        live = await watched.session.open()
        await live.subscribe_trade(raw=True, overflow=Overflow.DROP_OLDEST)
        server.add_fault("slow_handshake:0.4s@conn=2")  # the standby's handshake is slow
        rotation = asyncio.get_running_loop().create_task(live.rotate())
        await eventually(lambda: watched.handshakes() == 2)
        assert await live.request_disconnect() is True
        assert live.state is S.DISCONNECTED
        await asyncio.sleep(0.6)  # past the slow handshake: nothing comes back
        assert live.state is S.DISCONNECTED and live.stats.connects == 1
        assert len(server.connections) == 0  # and no socket was left open
        assert rotation.done() and rotation.result() is False  # called off, not cancelled
        await live.close()
