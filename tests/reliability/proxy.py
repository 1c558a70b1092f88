"""A small fault-injecting TCP proxy between a client and a server, for network-fault tests.

This module owns one thing: forwarding bytes between a client socket and an upstream
socket, with faults switched on and off while connections live. It knows nothing of
WebSocket, Kalshi or the recorder; the client connects to `proxy.port` instead of the
server's port, and every accepted connection opens its own upstream connection.

Faults, per direction (`UP`: client to server, `DOWN`: server to client):

* latency: every chunk is held `latency_s` before it is written (order kept);
* bandwidth cap: at most `rate_bps` bytes per second are written (a token bucket);
* blackhole: bytes are read and discarded, nothing is forwarded (not even a FIN), the
  sockets stay open (both directions: a dead path; one direction: a half-open
  connection);
* reset: both sockets are closed with SO_LINGER 0, so each peer gets a TCP RST.

`set_faults` changes the faults of every open connection (or one); `new_faults` are
the faults a connection starts with. `accepted_mono_ns` keeps the time of every TCP
connection accepted: an observer of connection attempts independent of the client.

    async with FaultProxy("127.0.0.1", server.port) as proxy:
        url = proxy.url_for(server.url)
        proxy.set_faults(blackhole=BOTH)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, replace
from enum import Flag
from urllib.parse import urlsplit, urlunsplit

__all__ = ["BOTH", "DOWN", "NONE", "UP", "Direction", "FaultProxy", "Faults", "ProxiedConnection"]

_CHUNK_BYTES = 64 * 1024


class Direction(Flag):
    """Which way bytes flow: UP (client to server), DOWN (server to client)."""

    NONE = 0
    UP = 1
    DOWN = 2


NONE, UP, DOWN = Direction.NONE, Direction.UP, Direction.DOWN
BOTH = UP | DOWN


@dataclass(frozen=True)
class Faults:
    """The faults of a connection. Each applies to the directions it names."""

    latency_s: float = 0.0
    latency_dir: Direction = BOTH
    rate_bps: float | None = None  # None: no cap
    rate_dir: Direction = BOTH
    blackhole: Direction = NONE

    def latency_for(self, way: Direction) -> float:
        return self.latency_s if way & self.latency_dir else 0.0

    def rate_for(self, way: Direction) -> float | None:
        return self.rate_bps if way & self.rate_dir else None


class _Pipe:
    """One direction of one connection: a reader task and a writer task joined by a queue."""

    def __init__(
        self, conn: ProxiedConnection, way: Direction, src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
    ) -> None:  # fmt: skip
        self.conn, self.way, self.src, self.dst = conn, way, src, dst
        self.queue: deque[tuple[float, bytes]] = deque()
        self.wake = asyncio.Event()
        self.eof = False
        self.bytes_forwarded = 0
        self.bytes_discarded = 0

    async def read(self) -> None:
        while True:
            data = await self.src.read(_CHUNK_BYTES)
            if not data:
                self.eof = True
                self.wake.set()
                return
            faults = self.conn.faults
            if faults.blackhole & self.way:
                self.bytes_discarded += len(data)
                continue
            self.queue.append((time.monotonic() + faults.latency_for(self.way), data))
            self.wake.set()

    async def write(self) -> None:
        sent_at = time.monotonic()  # the token bucket: when the bytes written so far may leave
        while True:
            if not self.queue:
                if self.eof:
                    if not self.conn.faults.blackhole & self.way:  # a blackhole loses the FIN too
                        with contextlib.suppress(OSError, RuntimeError):
                            self.dst.write_eof()
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            due, data = self.queue[0]
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            self.queue.popleft()
            if self.conn.faults.blackhole & self.way:
                self.bytes_discarded += len(data)  # switched on while it waited
                continue
            rate = self.conn.faults.rate_for(self.way)
            if rate is None:
                self.dst.write(data)
                self.bytes_forwarded += len(data)
                await self.dst.drain()
                sent_at = time.monotonic()
                continue
            piece = max(1, int(rate / 50))  # about 20 ms of the cap per write
            for start in range(0, len(data), piece):
                part = data[start : start + piece]
                sent_at = max(sent_at, time.monotonic())
                wait = sent_at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.dst.write(part)
                self.bytes_forwarded += len(part)
                await self.dst.drain()
                sent_at += len(part) / rate


class ProxiedConnection:
    """One client connection and its upstream connection."""

    def __init__(self, no: int, faults: Faults) -> None:
        self.no = no
        self.faults = faults
        self.accepted_mono_ns = time.monotonic_ns()
        self.closed_mono_ns: int | None = None
        self.client: asyncio.StreamWriter | None = None
        self.upstream: asyncio.StreamWriter | None = None
        self.pipes: list[_Pipe] = []
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def open(self) -> bool:
        return self.closed_mono_ns is None

    def bytes_forwarded(self, way: Direction) -> int:
        return sum(p.bytes_forwarded for p in self.pipes if p.way & way)

    def bytes_queued(self, way: Direction) -> int:
        """Bytes read and not yet written (held by latency or a bandwidth cap)."""
        return sum(len(data) for p in self.pipes if p.way & way for _, data in p.queue)

    def reset(self) -> None:
        """Close both sockets at once with a TCP RST (SO_LINGER on, timeout 0)."""
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """A TCP proxy on loopback in front of `upstream_host:upstream_port`.

    Args:
        upstream_host, upstream_port: the server to forward to.
        host, port: where the proxy listens (port 0: the OS chooses; read `port`).
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host, self.port = host, port
        self.new_faults = Faults()
        self.connections: list[ProxiedConnection] = []
        self.accepted_mono_ns: list[int] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            conn.reset()
        for conn in self.connections:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def url_for(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{self.host}:{self.port}"))

    @property
    def open_connections(self) -> list[ProxiedConnection]:
        return [c for c in self.connections if c.open]

    def set_faults(self, conn: ProxiedConnection | None = None, **changes: object) -> None:
        """Change the faults of one open connection, or of every open one (`Faults` fields)."""
        for target in [conn] if conn is not None else self.open_connections:
            target.faults = replace(target.faults, **changes)  # type: ignore[arg-type]

    def heal(self) -> None:
        """No fault on open connections nor on new ones."""
        self.new_faults = Faults()
        for conn in self.open_connections:
            conn.faults = Faults()

    def reset(self) -> int:
        """Reset (RST) every open connection; returns how many."""
        targets = self.open_connections
        for conn in targets:
            conn.reset()
        return len(targets)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ProxiedConnection(len(self.connections) + 1, self.new_faults)
        conn.client = writer
        self.connections.append(conn)
        self.accepted_mono_ns.append(conn.accepted_mono_ns)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            conn.reset()
            conn.closed_mono_ns = time.monotonic_ns()
            return
        conn.upstream = up_writer
        conn.pipes = [_Pipe(conn, UP, reader, up_writer), _Pipe(conn, DOWN, up_reader, writer)]
        loop = asyncio.get_running_loop()
        conn.tasks = [loop.create_task(f()) for p in conn.pipes for f in (p.read, p.write)]
        try:
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            if all(t.done() and not t.cancelled() and t.exception() is None for t in conn.tasks):
                for side in (writer, up_writer):  # both ways ended with a FIN: close quietly
                    side.close()
            else:
                conn.reset()  # a socket failed, or the proxy stops: RST whatever is left
            conn.closed_mono_ns = time.monotonic_ns()
