"""The exchange's own socket: whole messages in, the upgrade, the close."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from replay.server import ServerConfig, parse_fault
from replay.server.handshake import Gate
from tests.replay.server.conftest import client, running


def _upgrade_request(path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


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
