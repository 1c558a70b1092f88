"""The simulated exchange as a running server: the listener, connections, market pump, API.

This module owns the running server: a TCP listener whose every connection is a
`ServerSocket` (`replay.server.sockets`, websockets' sans-I/O protocol driven by
our own asyncio protocol), each upgrade answered as the `Gate` decides
(`replay.server.handshake`), one `Connection` per accepted client, and one pump
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
        server.inject("gap", channel="orderbook_delta")  # next book frame of every connection
        await server.quiesce()               # market paused, every queue drained
        server.book("KX...")                 # the true book
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from replay.server.config import ServerConfig
from replay.server.connection import Connection
from replay.server.faults import FaultKind, FaultSpec, parse_fault
from replay.server.handshake import Gate
from replay.server.market import SyntheticMarket
from replay.server.pump import TICK_S, Pump
from replay.server.sockets import ServerSocket
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
        self._gate = Gate(config, self.truth)
        self._faults: tuple[FaultSpec, ...] = tuple(config.faults)
        self._conns: dict[int, Connection] = {}
        self._sockets: dict[ServerSocket, asyncio.Task[Any]] = {}  # each with its handler
        self._listener: asyncio.Server | None = None
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
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: ServerSocket(
                self._serve,
                max_size=cfg.switches.max_client_frame_bytes,
                close_timeout_s=cfg.close_timeout_s,
            ),
            cfg.host,
            cfg.port,
        )
        self.port = self._listener.sockets[0].getsockname()[1]
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
        if self._listener is not None:
            self._listener.close()
            sockets = dict(self._sockets)
            timeout_s = self.config.close_timeout_s
            await asyncio.gather(*(s.close(1001, "", timeout_s) for s in sockets))
            for handler in sockets.values():
                handler.cancel()  # every connection is over: only their cleanup is left
            await asyncio.gather(*sockets.values(), return_exceptions=True)
            await self._listener.wait_closed()
            self._listener = None
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
        channel: str | None = None,
    ) -> int:
        """Fire a fault now on one open connection (or all); returns how many got it.

        Connection faults (close, drop, stall, no_pong) act at once; frame faults arm
        and act on the next sequenced data frame (of `channel` if given, such as
        "orderbook_delta": a gap there makes a client resync, one on trade does not).
        Handshake faults: use `add_fault`.
        """
        fault = FaultKind(kind)
        if fault is FaultKind.CLOSE and code is None:
            code = 1011
        if fault is FaultKind.STALL and duration_s is None:
            duration_s = 3.0
        channels = None if channel is None else frozenset({channel})
        spec = FaultSpec(kind=fault, code=code, duration_s=duration_s, after_frames=0,
                         channels=channels)  # fmt: skip
        targets = [c for c in self._conns.values() if conn_no is None or c.conn_no == conn_no]
        for conn in targets:
            conn.inject(spec)
        return len(targets)

    # -- one TCP connection ---------------------------------------------------------------

    async def _serve(self, socket: ServerSocket) -> None:
        """One TCP connection until it ends: the upgrade as the gate decides, then the client."""
        handler = asyncio.current_task()
        assert handler is not None
        self._sockets[socket] = handler
        try:
            request = await socket.request()
            if request is not None:
                admission = await self._gate.admit(request.path, request.headers, self._faults)
                if admission.status is not None:
                    socket.reject(admission.status)
                elif not socket.accept(request):
                    pass  # not a WebSocket upgrade: websockets' own answer went out
                elif admission.close_code is not None:
                    reason, timeout_s = admission.close_reason, self.config.close_timeout_s
                    await socket.close(admission.close_code, reason, timeout_s)
                else:
                    await self._run(
                        socket, admission.conn_no, admission.authenticated, admission.tag
                    )
            await socket.wait_closed()  # a refused client reads its answer, then hangs up
        finally:
            self._sockets.pop(socket, None)

    async def _run(
        self, socket: ServerSocket, conn_no: int, authenticated: bool, tag: str | None = None
    ) -> None:
        conn = Connection(
            socket,
            conn_no,
            config=self.config,
            router=self.router,
            tape=self.tape,
            truth=self.truth,
            faults=self._faults,
            authenticated=authenticated,
            tag=tag,
        )
        self._conns[conn_no] = conn
        if self.truth is not None:
            self.truth.connection(conn_no, "open", authenticated=authenticated, tag=tag)
        conn.start()
        try:
            while (raw := await socket.recv()) is not None:
                conn.session.handle(raw)
        finally:
            conn.session.close()
            await conn.stop()
            self._conns.pop(conn_no, None)
            if self.truth is not None:
                self.truth.connection(
                    conn_no, "close", code=socket.close_code, reason=socket.close_reason
                )
