"""The fault proxy itself: it forwards faithfully, and each fault does what it says.

The network-fault tests trust the proxy; these tests earn that trust against a plain
asyncio echo server on loopback.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from .proxy import BOTH, DOWN, UP, FaultProxy

pytestmark = pytest.mark.timeout(30)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with FaultProxy("127.0.0.1", port) as fault_proxy:
        yield fault_proxy
    server.close()


async def _round_trip(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, data: bytes
) -> float:
    started = time.monotonic()
    writer.write(data)
    await writer.drain()
    await reader.readexactly(len(data))
    return time.monotonic() - started


async def test_bytes_pass_through_unchanged_both_ways(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    payload = os.urandom(300_000)
    writer.write(payload)
    await writer.drain()
    assert await reader.readexactly(len(payload)) == payload
    assert len(proxy.accepted_mono_ns) == 1
    writer.close()


async def test_latency_delays_every_chunk_in_each_direction(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    assert await _round_trip(writer, reader, b"x") < 0.05
    proxy.set_faults(latency_s=0.1)
    assert await _round_trip(writer, reader, b"y") >= 0.2  # 0.1 s up and 0.1 s down
    proxy.set_faults(latency_dir=UP)
    assert 0.1 <= await _round_trip(writer, reader, b"z") < 0.2
    writer.close()


async def test_a_bandwidth_cap_limits_the_bytes_per_second(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    await _round_trip(writer, reader, b"warm")
    proxy.set_faults(rate_bps=100_000, rate_dir=DOWN)
    elapsed_s = await _round_trip(writer, reader, b"b" * 50_000)
    assert 0.45 <= elapsed_s < 1.0  # 50 kB at 100 kB/s
    writer.close()


@pytest.mark.parametrize("way", [BOTH, UP, DOWN], ids=["both", "up", "down"])
async def test_a_blackhole_forwards_nothing_and_keeps_the_socket_open(
    proxy: FaultProxy, way: object
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    await _round_trip(writer, reader, b"ok")
    proxy.set_faults(blackhole=way)
    writer.write(b"lost")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(10), 0.3)  # no data and no EOF: a silent path
    assert proxy.connections[0].open
    proxy.heal()
    assert await _round_trip(writer, reader, b"again") < 0.2
    writer.close()


async def test_a_half_open_connection_still_carries_the_other_direction(
    proxy: FaultProxy,
) -> None:
    server_side: list[asyncio.StreamWriter] = []
    received: list[bytes] = []

    async def talker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_side.append(writer)
        while data := await reader.read(100):
            received.append(data)

    server = await asyncio.start_server(talker, "127.0.0.1", 0)
    async with FaultProxy("127.0.0.1", server.sockets[0].getsockname()[1]) as half:
        reader, writer = await asyncio.open_connection("127.0.0.1", half.port)
        while not server_side:
            await asyncio.sleep(0.01)
        half.set_faults(blackhole=UP)
        writer.write(b"to the server")
        await writer.drain()
        server_side[0].write(b"to the client")
        assert await asyncio.wait_for(reader.readexactly(13), 1.0) == b"to the client"
        await asyncio.sleep(0.2)
        assert received == []
        writer.close()
    server.close()


async def test_a_reset_sends_rst_to_both_peers(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    await _round_trip(writer, reader, b"ok")
    assert proxy.reset() == 1
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(10), 1.0)
    writer.close()


async def test_new_faults_apply_to_connections_accepted_later(proxy: FaultProxy) -> None:
    first_reader, first_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    proxy.new_faults = proxy.new_faults.__class__(blackhole=BOTH)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"x")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    assert await _round_trip(first_writer, first_reader, b"still fine") < 0.2
    assert len(proxy.accepted_mono_ns) == 2
    writer.close()
    first_writer.close()
