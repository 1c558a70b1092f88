"""The exchange's own socket: opcodes per frame, whole messages in, the upgrade, the close."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
import websockets

from replay.server import ServerConfig, SimServer, SyntheticMarket, TapeEvent, parse_fault
from replay.server.handshake import Gate
from tests.replay.server.conftest import client, running


def _upgrade_request(path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class _BinaryTrades(SyntheticMarket):
    """The synthetic market with every trade marked as recorded in a binary message."""

    def pull(self, elapsed_s: float) -> list[TapeEvent]:
        events = super().pull(elapsed_s)
        for event in events:
            event.binary = event.type == "trade"
        return events


async def test_a_frame_marked_binary_reaches_the_client_as_binary_and_the_others_as_text() -> None:
    config = ServerConfig(auth="open", markets=4, rate_fps=2000, seed=3, epoch_ms=1_790_000_000_000)
    async with (
        SimServer(config, _BinaryTrades(config, 1_790_000_000_000)) as server,
        websockets.connect(server.url) as ws,
    ):
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"]}}))
        await ws.send(json.dumps({"id": 2, "cmd": "subscribe", "params": {"channels": ["ticker"]}}))
        kinds: dict[str, set[type]] = {}
        async with asyncio.timeout(10):
            while len(kinds.get("trade", ())) == 0 or len(kinds.get("ticker", ())) == 0:
                message = await ws.recv()  # str for a text message, bytes for a binary one
                kinds.setdefault(json.loads(message)["type"], set()).add(type(message))
    assert kinds["trade"] == {bytes}
    assert kinds["ticker"] == {str}
    assert kinds["subscribed"] == {str}


async def test_a_command_sent_in_fragments_is_answered_as_one_message() -> None:
    async with running(rate_fps=0) as server, client(server) as c:
        await c.ws.send(
            ['{"id": 7, ', '"cmd": "list_subscriptions"}']
        )  # a text frame, a continuation
        assert await c.reply(7) == {"id": 7, "type": "ok", "msg": []}


async def test_a_request_that_is_no_websocket_upgrade_gets_websockets_own_refusal() -> None:
    async with running(rate_fps=0) as server:
        reader, writer = await asyncio.open_connection(server.config.host, server.port)
        writer.write(f"GET {server.config.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # no Upgrade
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert status_line.split()[1] == b"426"  # Upgrade Required
        async with client(server) as c:  # the server is unharmed
            assert (await c.sync())["type"] == "ok"


async def test_a_client_that_leaves_during_a_slow_handshake_harms_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running(rate_fps=0, faults=(parse_fault("slow_handshake:200ms@conn=1"),)) as server:
        reader, writer = await asyncio.open_connection(server.config.host, server.port)
        writer.write(_upgrade_request(server.config.path))
        writer.close()  # gone before the answer
        await asyncio.sleep(0.3)
        async with client(server) as c:
            assert (await c.sync())["type"] == "ok"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_client_close_is_echoed_and_the_truth_records_its_code_and_reason(
    tmp_path: Path,
) -> None:
    truth_path = tmp_path / "truth.ndjson"
    async with running(rate_fps=200, truth_path=truth_path) as server, client(server) as c:
        await c.subscribe(["ticker"])
        await c.ws.close(4000, "bye")
        assert c.ws.close_code == 4000  # the server's echo came back
    lines = [json.loads(line) for line in truth_path.read_text().splitlines()]
    conns = [(r["event"], r.get("code"), r.get("reason")) for r in lines if r["kind"] == "conn"]
    assert conns == [("open", None, None), ("close", 4000, "bye")]


async def test_the_gate_numbers_every_attempt_and_answers_each_without_a_socket() -> None:
    gate = Gate(ServerConfig(auth="open"), None)
    wrong = await gate.admit("/elsewhere", {}, ())
    right = await gate.admit("/trade-api/ws/v2?x=1", {}, ())
    assert (wrong.conn_no, wrong.status) == (1, 404)
    assert (right.conn_no, right.status, right.authenticated) == (2, None, True)
