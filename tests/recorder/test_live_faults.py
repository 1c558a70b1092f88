"""One test per fault kind of the simulated exchange, asserting what the consumer sees.

Each test runs a LiveSession against `replay.server.SimServer` on loopback, injects
one fault, and checks the consumer's side: the iterator goes on (or ends exactly as
the protocol says), the book equals the exchange's truth after the resync, the
states come in order, and the statistics count right.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from recorder.errors import PermanentClose
from recorder.link.policies import DisconnectReason as R
from replay.server import FaultKind, SimServer
from stream import BinaryMessage, ConnectionState, SubscriptionTerminated

from .live_helpers import (
    Reader,
    Watched,
    book_matches_truth,
    eventually,
    sim_server,
    watched_session,
)

pytestmark = pytest.mark.timeout(40)
S = ConnectionState
NS = 1_000_000_000


def test_every_fault_kind_of_the_exchange_has_a_test_here() -> None:
    covered = {
        "close", "drop", "stall", "no_pong", "gap", "dup", "reorder", "malformed",
        "bad_utf8", "oversized", "binary", "unsubscribed", "error25", "reject",
        "slow_handshake",
    }  # fmt: skip
    assert {k.value for k in FaultKind} == covered


async def streaming(
    server: SimServer, *, trades: bool = True, **kw: Any
) -> tuple[Watched, str, Reader, Reader | None]:
    """An open session reading one market's book (and every trade), both flowing."""
    watched = watched_session(server, **kw)
    session = await watched.session.open()
    ticker = server.tape.market_tickers()[0]
    book = Reader(await session.orderbook(ticker, maxsize=100_000))
    trade = Reader(await session.subscribe_trade(raw=True, maxsize=100_000)) if trades else None
    await book.more_than(3)
    if trade is not None:
        await trade.more_than(3)
    return watched, ticker, book, trade


def after(states: list[S], start: int) -> list[S]:
    return states[start:]


# ---------------------------------------------------------------- connection faults


@pytest.mark.parametrize("code", [1000, 1001, 1011, 1012])
async def test_a_server_close_that_allows_it_reconnects_and_resyncs(code: int) -> None:
    async with sim_server() as server:
        watched, ticker, book, trades = await streaming(server)
        session = watched.session
        assert trades is not None
        mark, seen = len(watched.states), len(trades.items)
        server.inject("close", code=code)
        await eventually(lambda: session.stats.connects == 2 and session.is_connected)
        await trades.more_than(seen + 5)  # the same iterator goes on
        assert not trades.ended and not book.ended
        assert await book_matches_truth(session, server, ticker)
        assert after(watched.states, mark) == [S.RECONNECTING, S.CONNECTED, S.STREAMING]
        assert session.stats.disconnects_by_reason == {R.SERVER_CLOSED: 1}
        assert session.stats.reactive_disconnects == 1
        assert session.stats.last_close_code == code
        close = watched.events("close")[0].event
        assert (close.code, close.initiator) == (code, "server")
        assert close.will_reconnect is True
        subscribes: dict[int, list[Any]] = {}
        for record in watched.sink.records:
            command = json.loads(record.raw) if record.dir == "out" else {}
            if command.get("cmd") == "subscribe":
                subscribes.setdefault(record.conn, []).append(command["params"])
        assert subscribes[2] == subscribes[1]  # re-issued with the same filters
        await session.close()


async def test_close_1013_waits_the_server_unavailable_delay_before_reconnecting() -> None:
    async with sim_server() as server:
        watched, ticker, book, _ = await streaming(server, server_unavailable_delay_s=0.4)
        session = watched.session
        server.inject("close", code=1013)
        await eventually(lambda: session.stats.connects == 2 and session.is_connected)
        closed = watched.events("close")[0]
        retried = watched.events("attempt")[1]
        assert (retried.mono_ns - closed.mono_ns) / NS >= 0.4
        waits = [e.event for e in watched.events("reconnect_wait")]
        assert waits and waits[0].reason == "server_unavailable" and waits[0].delay_s >= 0.4
        assert await book_matches_truth(session, server, ticker)
        await session.close()


@pytest.mark.parametrize("code", [4001, 1008, 1003])
async def test_a_permanent_close_code_ends_the_session_with_the_error(code: int) -> None:
    async with sim_server() as server:
        watched, _, book, trades = await streaming(server)
        assert trades is not None
        server.inject("close", code=code)
        await eventually(lambda: trades.ended and book.ended)
        assert isinstance(trades.error, PermanentClose) and trades.error.code == code
        assert watched.states[-2:] == [S.DISCONNECTED, S.CLOSED]
        assert watched.handshakes() == 1  # no reconnect storm
        assert "session" in watched.error_kinds()  # on_error got the final error
        assert watched.session.is_dead


async def test_a_dropped_tcp_connection_is_a_network_error_and_reconnects() -> None:
    async with sim_server() as server:
        watched, ticker, book, trades = await streaming(server)
        assert trades is not None
        seen = len(trades.items)
        server.inject("drop")
        await eventually(lambda: watched.session.stats.connects == 2)
        await trades.more_than(seen + 5)
        assert watched.session.stats.disconnects_by_reason == {R.NETWORK_ERROR: 1}
        assert watched.events("close")[0].event.code == 1006
        assert await book_matches_truth(watched.session, server, ticker)
        await watched.session.close()


async def test_a_server_that_stops_answering_pings_is_replaced_within_the_keepalive_bound() -> None:
    async with sim_server() as server:
        limits = {"ping_interval_s": 0.2, "ping_timeout_s": 0.2, "close_timeout_s": 0.2}
        watched, ticker, book, trades = await streaming(server, **limits)
        session = watched.session
        injected_ns = time.monotonic_ns()
        server.inject("no_pong")
        await eventually(lambda: session.stats.connects == 2 and session.is_connected)
        closed = watched.events("close")[0]
        reopened = watched.events("open")[1]
        bound_s = session.limits.dead_connection_bound_s
        assert (closed.mono_ns - injected_ns) / NS <= bound_s + 0.3
        assert (reopened.mono_ns - injected_ns) / NS <= bound_s + 0.5
        assert closed.event.disconnect_reason == "ping_timeout"
        assert session.stats.disconnects_by_reason == {R.PING_TIMEOUT: 1}
        assert await book_matches_truth(session, server, ticker)
        await session.close()


async def test_a_stalled_feed_is_noticed_and_replaced_without_losing_the_book() -> None:
    async with sim_server() as server:
        stale = {
            "stale_floor_s": 0.3,
            "stale_multiplier": 5.0,
            "stale_min_observations": 10,
            "stale_check_interval_s": 0.05,
        }
        watched, ticker, book, trades = await streaming(server, **stale)
        assert trades is not None
        session = watched.session
        await book.more_than(30)
        seen = len(trades.items)
        server.inject("stall", duration_s=5.0)
        await eventually(lambda: session.stats.rotations == 1, timeout_s=4.0)
        await trades.more_than(seen + 5, timeout_s=3.0)  # long before the stall ends
        assert session.stats.stale >= 1
        assert session.stats.disconnects_by_reason == {R.STALE: 1}
        assert "stale" in watched.error_kinds()
        assert all(snapshot.valid for snapshot in book.items)  # make-before-break: no gap
        assert await book_matches_truth(session, server, ticker)
        await session.close()


async def test_a_quiet_market_never_causes_a_reconnect() -> None:
    async with sim_server(rate_fps=40.0) as server:
        stale = {  # a floor far below the quiet market's natural gaps
            "stale_floor_s": 0.05,
            "stale_multiplier": 10.0,
            "stale_min_observations": 3,
            "stale_check_interval_s": 0.02,
        }
        watched = watched_session(server, **stale)
        session = await watched.session.open()
        quiet = Reader(await session.subscribe_ticker([server.tape.market_tickers()[1]], raw=True))
        await asyncio.sleep(3.0)  # 150 judgements of a market quoting every second or so
        assert len(quiet.items) >= 5  # it did flow, slowly: gaps far above the floor
        assert session.stats.stale == 0 and session.stats.connects == 1
        assert not quiet.ended
        await session.close()


# ---------------------------------------------------------------- frame faults (no reconnect)


@pytest.mark.parametrize("kind", ["gap", "dup", "reorder", "malformed", "bad_utf8"])
async def test_a_broken_frame_is_repaired_on_the_same_connection(kind: str) -> None:
    async with sim_server(markets=1, rate_fps=1500.0, record_truth=True) as server:
        watched, ticker, book, _ = await streaming(server, trades=False)
        session = watched.session
        await book.more_than(10)
        server.inject(kind)
        assert server.truth is not None
        await eventually(lambda: any(f["fault"] == kind for f in server.truth.faults()))
        seen = len(book.items)
        await book.more_than(seen + 20)  # the same iterator goes on
        assert await book_matches_truth(session, server, ticker)
        assert session.stats.connects == 1 and session.stats.disconnects == 0
        assert not book.ended
        engine = session.engine.stats
        if kind == "dup":
            assert engine.duplicates >= 1 and session.stats.gaps == 0
        elif kind in ("gap", "reorder", "malformed"):
            assert session.stats.gaps + session.stats.resets >= 1
            assert session.stats.resyncs >= 1
        if kind == "malformed":
            assert "malformed" in watched.error_kinds()
        if kind == "bad_utf8":  # read as bytes: kept exactly, the socket stays open
            assert any(b"\xff\xfe\xfd" in r.raw for r in watched.sink.records if r.dir == "in")
        await session.close()


async def test_a_binary_message_is_read_kept_binary_and_delivered_as_such() -> None:
    async with sim_server(markets=1, rate_fps=1500.0, record_truth=True) as server:
        watched, ticker, book, trades = await streaming(server)
        session = watched.session
        assert trades is not None
        for _ in range(4):  # the next data frame, trade or delta, goes as binary
            server.inject("binary")
        assert server.truth is not None
        await eventually(lambda: sum(f["fault"] == "binary" for f in server.truth.faults()) == 4)
        await book.more_than(len(book.items) + 20)
        inbound = [r.raw for r in watched.sink.records if r.dir == "in"]
        binary = {bytes(raw) for raw in inbound if type(raw) is BinaryMessage}
        assert len(binary) == 4  # the sink (the journal's input) sees the opcode
        assert all(json.loads(raw)["type"] in ("trade", "orderbook_delta") for raw in binary)
        for frame in trades.items:  # a trade that came as binary is delivered as binary
            assert frame.binary == (bytes(frame.raw) in binary)
        assert await book_matches_truth(session, server, ticker)  # a binary delta applies
        assert session.stats.disconnects == 0
        await session.close()


async def test_an_oversized_frame_under_the_16_mib_default_is_accepted() -> None:
    async with sim_server() as server:
        watched, ticker, book, _ = await streaming(server, trades=False)
        session = watched.session
        seen = len(book.items)
        server.inject("oversized")
        await book.more_than(seen + 10)
        assert max(len(r.raw) for r in watched.sink.records if r.dir == "in") > (1 << 20)
        assert session.stats.disconnects == 0
        assert await book_matches_truth(session, server, ticker)
        await session.close()


async def test_a_frame_over_max_frame_bytes_is_recorded_as_1009_and_reconnected() -> None:
    async with sim_server() as server:
        watched, ticker, book, _ = await streaming(server, trades=False, max_frame_bytes=1 << 20)
        session = watched.session
        server.inject("oversized")
        await eventually(lambda: session.stats.connects == 2 and session.is_connected)
        close = watched.events("close")[0].event
        assert (close.code, close.disconnect_reason) == (1009, "protocol_error")
        assert await book_matches_truth(session, server, ticker)
        await session.close()


async def test_a_server_unsubscribe_ends_only_that_iterator() -> None:
    async with sim_server() as server:
        watched, _, book, trades = await streaming(server)
        assert trades is not None
        server.inject("unsubscribed")
        await eventually(lambda: trades.ended or book.ended)
        ended, other = (trades, book) if trades.ended else (book, trades)
        assert ended.error is None  # a clean end (docs/protocol.md section 9.8)
        seen = len(other.items)
        await other.more_than(seen + 3)
        assert not other.ended and watched.session.stats.connects == 1
        await watched.session.close()


async def test_error_25_ends_that_iterator_with_the_terminal_error() -> None:
    async with sim_server() as server:
        watched, _, book, trades = await streaming(server)
        assert trades is not None
        server.inject("error25")
        await eventually(lambda: trades.ended or book.ended)
        ended, other = (trades, book) if trades.ended else (book, trades)
        assert isinstance(ended.error, SubscriptionTerminated) and ended.error.code == 25
        await other.more_than(len(other.items) + 3)
        assert watched.session.stats.connects == 1
        await watched.session.close()


# ---------------------------------------------------------------- handshake faults


async def test_rejected_handshakes_are_retried_until_one_succeeds() -> None:
    async with sim_server() as server:
        server.add_fault("reject:503@conn=1+2")
        watched = watched_session(server)
        session = await watched.session.open()
        assert session.is_connected
        assert watched.handshakes() == 3
        assert session.stats.failed_attempts == 2
        assert [e.event.will_retry for e in watched.events("error")] == [True, True]
        assert watched.states == [S.CONNECTING, S.RECONNECTING, S.CONNECTED]
        trades = await session.subscribe_trade(raw=True)
        assert (await anext(trades)).conn == 1
        await session.close()


async def test_a_handshake_slower_than_the_open_timeout_is_abandoned_and_retried() -> None:
    async with sim_server() as server:
        server.add_fault("slow_handshake:1s@conn=1")
        watched = watched_session(server, open_timeout_s=0.2)
        started = time.monotonic()
        session = await watched.session.open()
        assert time.monotonic() - started < 1.0  # did not wait for the slow one
        assert watched.handshakes() == 2 and session.stats.failed_attempts == 1
        assert "TimeoutError" in watched.events("error")[0].event.error
        await session.close()
