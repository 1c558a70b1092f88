"""The simulated exchange as a running server: handshake, market pump, connections, API.

This module owns the websockets server: the upgrade (`process_request`: the path,
handshake faults, the auth check of docs/protocol.md section 2 answered per
`Switches.auth_reject`), one `Connection` per client, and one pump
(`replay.server.pump`) that moves the tape and fans its events out through the
shared router, so every connection sees the same market. It also owns the
in-process API tests use: start on port 0, inject and schedule faults, pause and
quiesce the market, read the true books and the truth. The tape is the synthetic
market by default, or any other `Tape`, such as a recorded capture:

    async with SimServer(ServerConfig(auth="open"), CaptureTape("data/", speed=None)) as s:
        ...

    async with SimServer(ServerConfig(auth="open", rate_fps=500)) as server:
        ...connect to server.url...
        server.inject("gap")                 # next sequenced frame of every connection
        await server.quiesce()               # market paused, every queue drained
        server.book("KX...")                 # the true book
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from replay.server.auth import KEY_HEADER, HeaderVerifier
from replay.server.config import ServerConfig
from replay.server.connection import Connection, FaultableConnection
from replay.server.faults import FaultKind, FaultSpec, handshake_faults, parse_fault
from replay.server.market import SyntheticMarket
from replay.server.pump import TICK_S, Pump
from replay.server.subscriptions import Router
from replay.server.tape import AsyncTape, BookView, Tape
from replay.server.truth import Truth

__all__ = ["SimServer"]


class SimServer:
    """A Kalshi-protocol WebSocket server over a tape (the synthetic market by default).

    Args:
        config: the whole configuration.
        tape: the event source; None builds `SyntheticMarket(config, epoch_ms)`. An
            `AsyncTape` (a capture) is started and stopped with the server.

    Use `async with SimServer(cfg) as server` (or `await start()` / `await stop()`),
    then connect a client to `server.url`.
    """

    def __init__(self, config: ServerConfig, tape: Tape | None = None) -> None:
        self.config = config
        epoch_ms = config.epoch_ms if config.epoch_ms is not None else time.time_ns() // 1_000_000
        self.tape: Tape = tape if tape is not None else SyntheticMarket(config, epoch_ms)
        self.router = Router()
        self.truth: Truth | None = None
        if config.truth_enabled:
            self.truth = Truth(config.truth_path, keep=config.record_truth)
        self._verifier: HeaderVerifier | None = None
        if config.auth != "open" and config.public_keys:
            self._verifier = HeaderVerifier(
                config.public_keys, config.path, int(config.freshness_s * 1000)
            )
        self._faults: tuple[FaultSpec, ...] = tuple(config.faults)
        self._handshake_rng = random.Random(config.seed * 31 + 7)
        self._attempts = 0
        self._conns: dict[int, Connection] = {}
        self._server: Server | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._running = asyncio.Event()
        self._running.set()
        self.port = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind, start serving and start the market."""
        cfg = self.config
        if isinstance(self.tape, AsyncTape):
            await self.tape.start()
        self._server = await serve(
            self._handler,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            create_connection=FaultableConnection,
            ping_interval=None,  # our own pinger sends the `heartbeat` payload
            close_timeout=cfg.close_timeout_s,
            max_size=cfg.switches.max_client_frame_bytes,
            compression=None,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        pump = Pump(self.tape, self.router, self._conns, cfg, self.truth, self._running)
        self._pump_task = asyncio.get_running_loop().create_task(pump.run())

    async def stop(self) -> None:
        """Stop the market, close every connection (1001) and the listener; flush the truth."""
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
            self._pump_task = None
        if isinstance(self.tape, AsyncTape):
            await self.tape.stop()
        if self._server is not None:
            self._server.close(close_connections=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), self.config.close_timeout_s + 1)
            self._server = None
        if self.truth is not None:
            self.truth.books(self.tape.books())
            self.truth.close()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The `ws://host:port/trade-api/ws/v2` URL clients connect to."""
        return f"ws://{self.config.host}:{self.port}{self.config.path}"

    # -- the market ----------------------------------------------------------------------

    def pause(self) -> None:
        """Stop market activity (the tape's time stops too); connections stay open."""
        self._running.clear()

    def resume(self) -> None:
        """Resume market activity where it stopped."""
        self._running.set()

    async def quiesce(self, timeout_s: float = 10.0) -> None:
        """Pause the market and wait until every connection's queue is written out.

        After this, every frame sent is in the kernel or the client; a client that
        reads until it sees the reply to a command it sends now has seen them all.
        """
        self.pause()
        await asyncio.sleep(TICK_S * 2)  # let a pump iteration in progress finish
        async with asyncio.timeout(timeout_s):
            while not all(c.idle for c in self._conns.values()):  # noqa: ASYNC110 - polls many senders
                await asyncio.sleep(0.002)

    def book(self, ticker: str) -> dict[str, Any] | None:
        """The true book of a market now.

        Returns `{"market_ticker", "clock", "yes": {price: count}, "no": {...}}` in
        wire strings, or None for an unknown market.
        """
        view = self.tape.book(ticker)
        return None if view is None else view.as_dict()

    def book_view(self, ticker: str) -> BookView | None:
        return self.tape.book(ticker)

    def write_books(self) -> None:
        """Append every market's true book to the truth file now."""
        if self.truth is not None:
            self.truth.books(self.tape.books())

    # -- connections and faults ----------------------------------------------------------------

    @property
    def connections(self) -> list[Connection]:
        """Open connections, oldest first."""
        return list(self._conns.values())

    def connection(self, conn_no: int) -> Connection | None:
        return self._conns.get(conn_no)

    def add_fault(self, spec: FaultSpec | str) -> None:
        """Schedule a fault (spec or `parse_fault` text) on connections opened from now on."""
        self._faults = (*self._faults, parse_fault(spec) if isinstance(spec, str) else spec)

    def inject(
        self,
        kind: str | FaultKind,
        conn_no: int | None = None,
        *,
        code: int | None = None,
        duration_s: float | None = None,
    ) -> int:
        """Fire a fault now on one open connection (or all); returns how many got it.

        Connection faults (close, drop, stall, no_pong) act at once; frame faults arm
        and act on the next sequenced data frame. Handshake faults: use `add_fault`.
        """
        fault = FaultKind(kind)
        if fault is FaultKind.CLOSE and code is None:
            code = 1011
        if fault is FaultKind.STALL and duration_s is None:
            duration_s = 3.0
        spec = FaultSpec(kind=fault, code=code, duration_s=duration_s, after_frames=0)
        targets = [c for c in self._conns.values() if conn_no is None or c.conn_no == conn_no]
        for conn in targets:
            conn.inject(spec)
        return len(targets)

    # -- handshake and connection handler ------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        assert isinstance(connection, FaultableConnection)
        self._attempts += 1
        conn_no = connection.conn_no = self._attempts
        if urlsplit(request.path).path != self.config.path:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        for spec in handshake_faults(self._faults, conn_no, self._handshake_rng):
            if self.truth is not None:
                self.truth.fault(
                    conn_no, spec.kind.value, status=spec.status, duration_s=spec.duration_s
                )
            if spec.kind is FaultKind.SLOW_HANDSHAKE:
                await asyncio.sleep(spec.duration_s or 0.0)
            elif spec.kind is FaultKind.REJECT:
                assert spec.status is not None
                status = HTTPStatus(spec.status)
                return connection.respond(status, f"{status.phrase}\n")
        return self._authenticate(connection, request.headers, conn_no)

    def _authenticate(
        self, connection: FaultableConnection, headers: Headers, conn_no: int
    ) -> Response | None:
        mode = self.config.auth
        if mode == "open":
            connection.authenticated = True
            return None
        if mode == "public" and KEY_HEADER not in headers:
            return None  # an unsigned public connection: private channels answer error 9
        result = (
            self._verifier.verify(headers, time.time_ns() // 1_000_000) if self._verifier else None
        )
        if result is not None and result.ok:
            connection.authenticated = True
            return None
        if self.truth is not None:
            self.truth.connection(
                conn_no, "auth_failed", reason=result.reason if result else "no keys"
            )
        if self.config.switches.auth_reject == "close4001":
            connection.auth_close = True  # open question 1: accept, then close 4001
            return None
        return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")

    async def _handler(self, ws: ServerConnection) -> None:
        assert isinstance(ws, FaultableConnection)
        if ws.auth_close:
            await ws.close(4001, "authentication failed")
            return
        conn = Connection(self, ws, self._faults)
        self._conns[conn.conn_no] = conn
        if self.truth is not None:
            self.truth.connection(conn.conn_no, "open", authenticated=ws.authenticated)
        conn.start()
        try:
            while True:
                raw = await ws.recv(decode=False)
                conn.session.handle(raw)
        except ConnectionClosed:
            pass
        finally:
            conn.session.close()
            await conn.stop()
            self._conns.pop(conn.conn_no, None)
            if self.truth is not None:
                self.truth.connection(
                    conn.conn_no, "close", code=ws.close_code, reason=ws.close_reason
                )
