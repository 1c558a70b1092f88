"""LiveSession: URLs, the Session API over a live socket, the sink, the lifecycle, TLS."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import pytest
import trustme
from websockets.asyncio.server import serve

from recorder.errors import ReconnectGaveUp
from recorder.link.live import DEMO_URL, PRODUCTION_URL, LiveSession, resolve_url
from recorder.link.sink import MemorySink
from schemas.errors import ConfigError
from schemas.events import Closed, event_from_bytes
from stream import ConnectionState, SessionClosed

from .live_helpers import Reader, book_matches_truth, eventually, sim_server, watched_session

pytestmark = pytest.mark.timeout(30)
S = ConnectionState


# ---------------------------------------------------------------- URLs and construction


def test_prod_and_demo_name_the_kalshi_endpoints() -> None:
    assert (
        resolve_url("prod") == PRODUCTION_URL == "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
    )
    assert resolve_url("demo") == DEMO_URL == "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2"
    assert resolve_url("wss://example.test/ws") == "wss://example.test/ws"


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9/x", "ws://localhost/x", "ws://[::1]:9/x"])
def test_plain_ws_is_allowed_to_loopback(url: str) -> None:
    assert resolve_url(url) == url


@pytest.mark.parametrize("url", ["ws://example.com/x", "ws://10.0.0.1/x", "http://h/x", "nope"])
def test_plain_ws_to_a_remote_host_and_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="url"):
        resolve_url(url)


def test_a_remote_url_without_credentials_is_refused() -> None:
    with pytest.raises(ConfigError, match="credentials"):
        LiveSession("demo")


def test_unknown_limit_arguments_and_compression_are_refused() -> None:
    with pytest.raises(ConfigError, match="ping_intervl_s"):
        LiveSession("ws://127.0.0.1:9/x", ping_intervl_s=3)
    with pytest.raises(ConfigError, match="compression"):
        LiveSession("ws://127.0.0.1:9/x", compression="zstd")


def test_constructor_limits_are_clamped() -> None:
    session = LiveSession("ws://127.0.0.1:9/x", ping_interval_s=0.0, max_reconnect_attempts=-3)
    assert session.limits.ping_interval_s == 0.01
    assert session.limits.max_reconnect_attempts == 0


# ---------------------------------------------------------------- the Session API, live


async def test_the_session_api_works_unchanged_over_a_live_connection() -> None:
    async with sim_server() as server:
        ticker = server.tape.market_tickers()[0]
        watched = watched_session(server)
        async with watched.session.connect() as session:
            assert session.state is S.CONNECTED or session.state is S.STREAMING
            trades = await session.subscribe_trade()  # pydantic models
            book = await session.orderbook(ticker, maxsize=10_000)
            seen = []

            @session.on("trade", raw=True)
            def on_trade(frame: Any) -> None:
                seen.append(frame.seq)

            message = await anext(trades)
            assert message.type == "trade"
            snapshot = await anext(book)
            assert snapshot.valid and snapshot.market == ticker
            subs = await session.list_subscriptions()
            assert sorted(s["channel"] for s in subs) == ["orderbook_delta", "trade"]
            await eventually(lambda: len(seen) > 2)
            assert await book_matches_truth(session, server, ticker)
        assert watched.states[:3] == [S.CONNECTING, S.CONNECTED, S.STREAMING]
        assert watched.states[-1] is S.CLOSED


async def test_frames_go_to_the_sink_before_the_engine_sees_them() -> None:
    class Checking(MemorySink):
        def __init__(self) -> None:
            super().__init__()
            self.session: LiveSession | None = None
            self.engine_was_ahead = 0

        def frame_in(
            self, conn: int, recv_ns: int, mono_ns: int, raw: bytes, feed: int = 0
        ) -> None:
            frames_in = sum(1 for r in self.records if r.dir == "in")
            if self.session is not None and self.session.engine.stats.frames != frames_in:
                self.engine_was_ahead += 1
            super().frame_in(conn, recv_ns, mono_ns, raw, feed)

    async with sim_server() as server:
        sink = Checking()
        watched = watched_session(server, sink=sink)
        sink.session = watched.session
        async with watched.session.connect() as session:
            reader = Reader(await session.subscribe_trade(raw=True))
            await reader.more_than(20)
            received = session.stats.messages_received
        assert sink.engine_was_ahead == 0
        frames = [r for r in sink.records if r.dir == "in"]
        assert len(frames) == received
        assert all(r.recv_ns > 0 and r.mono_ns > 0 for r in frames)
        # Commands went out as text frames, bytes exact, and were recorded in order.
        commands = [json.loads(r.raw) for r in sink.records if r.dir == "out"]
        assert commands[0]["cmd"] == "subscribe"
        assert session.stats.bytes_sent == sum(len(r.raw) for r in sink.records if r.dir == "out")
        # Every connection event carries both clocks and the keys replay needs.
        opened = watched.events("open")[0]
        assert opened.conn == 1 and opened.event.standby is False
        closed = watched.events("close")[-1]
        assert isinstance(closed.event, Closed) and closed.event.initiator == "client"
        assert closed.raw == closed.event.to_bytes()
        states = [(e.event.old, e.event.new) for e in watched.events("state")]
        assert states[0] == ("DISCONNECTED", "CONNECTING")


async def test_a_sink_that_raises_is_reported_and_receiving_goes_on() -> None:
    class Broken(MemorySink):
        def frame_in(
            self, conn: int, recv_ns: int, mono_ns: int, raw: bytes, feed: int = 0
        ) -> None:
            raise OSError("disk full")

    async with sim_server() as server:
        watched = watched_session(server, sink=Broken())
        async with watched.session.connect() as session:
            reader = Reader(await session.subscribe_trade(raw=True))
            await reader.more_than(10)
            await eventually(lambda: "sink_error" in watched.error_kinds())
            assert not reader.ended
        assert session.stats.connects == 1  # the socket was never dropped for it


async def test_a_session_object_connects_again_after_its_context_exits() -> None:
    async with sim_server() as server:
        watched = watched_session(server)
        live = watched.session
        seen: list[int] = []
        live.on("trade", raw=True)(lambda frame: seen.append(1))
        async with live.connect() as session:
            first = Reader(await session.subscribe_trade(raw=True))
            await first.more_than(3)
        await eventually(lambda: first.ended)
        assert first.error is None  # a clean end after the buffered messages
        assert live.is_dead and live.is_recoverable and not live.is_shutdown
        async with live.connect() as session:  # #297: the same object, a new run
            second = Reader(await session.subscribe_trade(raw=True))
            await second.more_than(3)
            before = len(seen)
            await eventually(lambda: len(seen) > before)  # @on callbacks carried over
        assert live.stats.connects == 2


async def test_shutdown_is_terminal_and_force_close_is_too() -> None:
    async with sim_server() as server:
        for stop in ("shutdown", "force_close"):
            live = watched_session(server).session
            await live.open()
            await getattr(live, stop)()
            assert live.state is S.CLOSED and live.is_shutdown and not live.is_recoverable
            with pytest.raises(SessionClosed):
                await live.open()


async def test_open_without_waiting_lets_subscriptions_go_out_on_connect() -> None:
    async with sim_server() as server:
        live = watched_session(server).session
        await live.open(wait=False)
        trades = await live.subscribe_trade(raw=True)  # before the connection is up
        assert (await anext(trades)).channel == "trade"
        await live.close()


async def test_run_forever_with_a_stop_event_closes_cleanly() -> None:
    async with sim_server() as server:
        live = watched_session(server).session
        await live.open()
        await live.subscribe_trade(raw=True, maxsize=100_000)
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stop.set)
        await live.run_forever(stop_event=stop)
        assert live.state is S.CLOSED


# ---------------------------------------------------------------- TLS


async def _tls_server(ctx: ssl.SSLContext) -> Any:
    async def handler(ws: Any) -> None:
        async for _ in ws:
            pass

    return await serve(handler, "127.0.0.1", 0, ssl=ctx)


async def test_wss_verifies_certificates_with_a_given_ca_and_refuses_unknown_ones() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    server = await _tls_server(server_ctx)
    port = next(iter(server.sockets)).getsockname()[1]
    url = f"wss://localhost:{port}/trade-api/ws/v2"
    try:
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        trusted = LiveSession(url, ssl=client_ctx, close_timeout_s=0.2)
        await trusted.open()
        assert trusted.is_connected
        await trusted.close()
        untrusted = LiveSession(url, close_timeout_s=0.2)  # system CAs only
        with pytest.raises(ReconnectGaveUp, match="certificate"):
            await untrusted.open()
        assert untrusted.stats.attempts == 1  # a bad certificate is not retried
    finally:
        server.close()
        await server.wait_closed()


async def test_every_event_is_typed_and_its_bytes_read_back_as_the_same_event() -> None:

    async with sim_server() as server:
        server.add_fault("reject:503@conn=1")
        watched = watched_session(server)
        async with watched.session.connect() as session:
            await session.subscribe_trade(raw=True, maxsize=100_000)
            await session.rotate()
            server.inject("close", code=1011)
            await eventually(lambda: session.stats.connects == 3 and session.is_connected)
        names = {r.name for r in watched.sink.events()}
        assert names >= {"attempt", "error", "open", "close", "reconnect_wait", "state", "switch"}
        for record in watched.sink.events():
            assert event_from_bytes(record.raw) == record.event
            assert record.event.name == record.name
            assert record.recv_ns > 1_700_000_000 * 10**9 and record.mono_ns > 0


async def test_checkpoints_and_hooks_reach_the_sink_and_the_caller() -> None:
    from stream import EngineConfig

    connected: list[int] = []
    async with sim_server() as server:
        ticker = server.tape.market_tickers()[0]
        watched = watched_session(
            server,
            engine_config=EngineConfig(checkpoint_interval_s=0.05),
            on_connect=connected.append,
        )
        async with watched.session.connect() as session:
            await session.orderbook(ticker, maxsize=100_000)
            await eventually(lambda: any(r.dir == "checkpoint" for r in watched.sink.records))
            assert await session.wait_disconnected(timeout=0.05) is False
            await session.request_disconnect()
            assert await session.wait_disconnected(timeout=1) is True
        assert connected == [1]
        checkpoint = next(r for r in watched.sink.records if r.dir == "checkpoint")
        assert checkpoint.conn == 1 and checkpoint.checkpoint


async def test_a_subscribe_the_server_never_acknowledges_times_out_naming_the_channel() -> None:
    from stream import EngineConfig, SubscribeTimeout

    # accepts commands, answers none (docs/protocol.md section 9.13)
    async def silent(ws: Any) -> None:
        async for _ in ws:
            pass

    server = await serve(silent, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    try:
        live = LiveSession(
            f"ws://127.0.0.1:{port}/trade-api/ws/v2",
            engine_config=EngineConfig(ack_timeout_s=0.2),
            tick_interval_s=0.02,
        )
        async with live.connect() as session:
            with pytest.raises(SubscribeTimeout, match="'trade'"):
                await session.subscribe_trade()
    finally:
        server.close()
        await server.wait_closed()


async def test_frames_buffered_at_close_are_delivered_before_the_iterator_ends() -> None:
    from stream import NotSubscribed

    async with sim_server() as server:
        live = await watched_session(server).session.open()
        with pytest.raises(NotSubscribed):
            await live.run_forever()  # docs/protocol.md section 9.14: nothing subscribed
        trades = await live.subscribe_trade(raw=True, maxsize=100_000)
        await eventually(lambda: live.stats.per_channel.get("trade", 0) >= 10)
        await live.close()
        delivered = [frame async for frame in trades]  # then StopAsyncIteration, no error
        # docs/protocol.md section 9.15
        assert len(delivered) == live.stats.per_channel["trade"] >= 10


async def test_a_callback_that_raises_is_reported_and_keeps_the_socket() -> None:
    async with sim_server() as server:
        watched = watched_session(server)
        live = watched.session
        live.on("trade", raw=True)(lambda frame: 1 / 0)
        async with live.connect() as session:
            trades = Reader(await session.subscribe_trade(raw=True))
            await trades.more_than(5)
            assert "callback_error" in watched.error_kinds()
            assert session.stats.connects == 1 and session.stats.disconnects == 0


async def test_control_calls_on_a_session_that_is_not_connected_do_nothing() -> None:
    live = LiveSession("ws://127.0.0.1:9/x")
    assert await live.request_disconnect() is False
    assert await live.rotate() is False
    await live.kill()
    await live.reconnect()
    assert live.stats.attempts == 0 and live.state is S.DISCONNECTED


async def test_with_deflate_the_client_inflates_what_the_exchange_compresses() -> None:
    async with sim_server() as server:
        plain = watched_session(server)
        deflated = watched_session(server, compression="deflate")
        async with plain.session.connect() as a, deflated.session.connect() as b:
            trades_a = await a.subscribe_trade(raw=True)
            trades_b = await b.subscribe_trade(raw=True)
            got_b = [(await anext(trades_b)).raw for _ in range(20)]
            got_a: list[bytes] = []
            while got_b[-1] not in got_a:
                got_a.append((await anext(trades_a)).raw)
            assert b._live.links.active.ws.compressed  # type: ignore[attr-defined]
            assert not a._live.links.active.ws.compressed  # type: ignore[attr-defined]
    end = got_a.index(got_b[-1])
    assert got_b[-10:] == got_a[end - 9 : end + 1]  # the same frames, bytes exact


def test_inflating_past_the_frame_limit_or_from_bad_data_is_refused() -> None:
    import zlib

    from recorder.link.sockets import _Inflate

    packer = zlib.compressobj(wbits=-15)
    bomb = packer.compress(b"x" * 100_000) + packer.flush(zlib.Z_SYNC_FLUSH)
    inflate = _Inflate("permessage-deflate; server_no_context_takeover")
    with pytest.raises(ValueError, match="past 1000 bytes"):
        inflate.message(bomb[:-4], 1000)
    assert inflate.message(bomb[:-4], 200_000) == b"x" * 100_000
    with pytest.raises(ValueError, match="bad compressed"):
        inflate.message(b"\xff\xff\xff\xff", 1000)
