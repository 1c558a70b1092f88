"""Bad and many clients: spec errors never crash, slow readers are cut off, 50 are served."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from replay.server import ServerConfig, SimServer, Switches
from replay.server.protocol import Session
from replay.server.subscriptions import Router
from tests.replay.server.conftest import client, running

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_commands = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers(-2, 5) | st.text(max_size=3),
        "cmd": st.sampled_from(
            ["subscribe", "unsubscribe", "update_subscription", "list_subscriptions", "x"]
        ),
        "params": st.fixed_dictionaries(
            {},
            optional={
                "channels": st.lists(
                    st.sampled_from(["ticker", "orderbook_delta", "fill", "pyth_value", "bogus"])
                )
                | _json,
                "sids": st.lists(st.integers(0, 4)) | _json,
                "sid": st.integers(0, 4) | _json,
                "action": st.sampled_from(
                    ["add_markets", "get_snapshot", "subscribe_indices", "indexlist"]
                )
                | _json,
                "market_tickers": st.lists(st.text(max_size=5)) | _json,
                "index_ids": _json,
                "shard_factor": _json,
            },
        )
        | _json,
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(commands=st.lists(_commands, min_size=1, max_size=6))
def test_any_command_gets_replies_and_never_an_exception(commands: list[dict[str, object]]) -> None:
    config = ServerConfig(auth="open", markets=3, rate_fps=0)
    from replay.server import SyntheticMarket

    sent: list[bytes] = []
    session = Session(
        Router(), SyntheticMarket(config, 0), config, lambda frame, _binary: sent.append(frame)
    )
    for command in commands:
        before = len(sent)
        session.handle(json.dumps(command).encode())
        replies = [json.loads(frame) for frame in sent[before:]]
        assert replies, command  # every command is answered
        for reply in replies:
            if reply["type"] == "error":
                assert reply["msg"]["code"] in {
                    1,
                    2,
                    3,
                    4,
                    5,
                    7,
                    8,
                    9,
                    11,
                    12,
                    13,
                    14,
                    15,
                    19,
                    20,
                    21,
                    22,
                    24,
                    26,
                    28,
                }


async def test_fifty_clients_at_once_are_all_served() -> None:
    async with running(rate_fps=500, markets=10) as server:
        tickers = list(server.tape.market_tickers())
        all_subscribed = asyncio.Barrier(50)

        async def one() -> int:
            async with client(server) as c:
                (sid,) = await c.subscribe(["orderbook_delta"], market_tickers=tickers)
                await all_subscribed.wait()
                open_now = len(server.connections)
                while len(c.data(sid)) < 50:
                    await c.recv(timeout_s=10)
                seqs = [f["seq"] for f in c.data(sid)]
                assert seqs == list(range(1, len(seqs) + 1))
                return open_now

        counts = await asyncio.gather(*(one() for _ in range(50)))
        assert counts == [50] * 50


async def test_a_client_that_stops_reading_is_disconnected_and_the_queue_stays_bounded() -> None:
    bound = 500
    async with running(rate_fps=20_000, markets=20, send_buffer_frames=bound) as server:
        tickers = list(server.tape.market_tickers())
        async with (
            client(server) as healthy,
            websockets.connect(server.url, max_queue=4, close_timeout=0.5) as stuck,
        ):
            await stuck.send(
                json.dumps(
                    {
                        "id": 1,
                        "cmd": "subscribe",
                        "params": {
                            "channels": ["orderbook_delta", "ticker", "trade"],
                            "market_tickers": tickers,
                        },
                    }
                )
            )
            await healthy.subscribe(["ticker"], market_tickers=tickers[:1])
            stuck_conn = server.connection(2)  # the healthy client is connection 1
            assert stuck_conn is not None
            async with asyncio.timeout(20):
                while stuck_conn in server.connections:
                    await asyncio.sleep(0.05)
                    assert stuck_conn.queued <= bound
                    await healthy.sync()  # the healthy client is served meanwhile
            assert stuck_conn.max_queued <= bound
            assert server.truth is not None
            assert any(f["fault"] == "overflow" for f in server.truth.faults(stuck_conn.conn_no))
            assert (await healthy.sync())["type"] == "ok"


async def test_the_error25_overflow_policy_ends_subscriptions_and_keeps_the_connection() -> None:
    async with (
        running(
            rate_fps=5000, send_buffer_frames=64, switches=Switches(overflow="error25")
        ) as server,
        client(server) as c,
    ):
        await server.quiesce()
        server.resume()
        sid_frames = await c.command(
            "subscribe",
            {
                "channels": ["orderbook_delta"],
                "market_tickers": list(server.tape.market_tickers()),
            },
        )
        # Read nothing for a while: the 64-frame queue overflows.
        await asyncio.sleep(0.5)
        errors = []
        async with asyncio.timeout(10):
            while not errors:
                frame = await c.recv()
                if frame.get("type") == "error":
                    errors.append(frame)
        assert errors[0]["msg"]["code"] == 25 and sid_frames == 1
        assert (await c.sync())["msg"] == []


async def test_a_client_frame_over_the_limit_closes_with_1009() -> None:
    async with (
        running(rate_fps=0, switches=Switches(max_client_frame_bytes=4096)) as server,
        websockets.connect(server.url) as ws,
    ):
        await ws.send("x" * 10_000)
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_stopping_the_server_closes_clients_with_1001() -> None:
    server = SimServer(ServerConfig(auth="open", rate_fps=100))
    await server.start()
    async with websockets.connect(server.url) as ws:
        await server.stop()
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
