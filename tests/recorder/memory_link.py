"""An in-memory link for driving the live client where a socket adds nothing.

`MemoryExchange.open` is a `recorder.link.connection.LinkOpener`: pass it as
`LiveSession(opener=...)` and each connection attempt makes a `MemorySocket`
(or fails, as scripted). The test plays the server on each socket: it reads
the commands the client sent, pushes frames, closes with a code, or drops.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from recorder.link.opener import AttemptFailed
from recorder.link.policies import CloseVerdict
from recorder.link.sockets import CloseFrame, SocketClosed


class MemorySocket:
    """A `recorder.link.sockets.Socket` whose other end is the test."""

    def __init__(self) -> None:
        self._incoming: asyncio.Queue[tuple[bytes, bool] | SocketClosed] = asyncio.Queue()
        self._sent: asyncio.Queue[bytes] = asyncio.Queue()
        self._closed: SocketClosed | None = None

    # the client's side (recorder.link.sockets.Socket)
    async def recv(self) -> tuple[bytes, bool]:
        item = await self._incoming.get()
        if isinstance(item, SocketClosed):
            self._incoming.put_nowait(item)  # every later recv() sees the end too
            raise item
        return item

    async def send(self, raw: bytes) -> None:
        if self._closed is not None:
            raise self._closed
        self._sent.put_nowait(raw)

    async def close(self, code: int, reason: str) -> None:
        frame = CloseFrame(code, reason)
        self._end(SocketClosed(frame, frame, rcvd_then_sent=False))  # the server echoes it

    def abort(self) -> None:
        self._end(SocketClosed(None, None, False, ConnectionResetError("aborted")))

    # the server's side (the test)
    def push(self, frame: dict[str, Any] | bytes, binary: bool = False) -> None:
        raw = frame if isinstance(frame, bytes) else json.dumps(frame).encode()
        self._incoming.put_nowait((raw, binary))

    async def command(self) -> dict[str, Any]:
        """The next command the client sent."""
        return json.loads(await self._sent.get())  # type: ignore[no-any-return]

    def server_close(self, code: int, reason: str = "") -> None:
        frame = CloseFrame(code, reason)
        self._end(SocketClosed(frame, frame, rcvd_then_sent=True))

    def drop(self) -> None:
        self._end(SocketClosed(None, None, False, ConnectionResetError("network")))

    def _end(self, closed: SocketClosed) -> None:
        if self._closed is None:
            self._closed = closed
            self._incoming.put_nowait(closed)


class MemoryExchange:
    """Makes a `MemorySocket` per connection attempt; refuses attempts while `refuse` is set."""

    def __init__(self) -> None:
        self.sockets: list[MemorySocket] = []
        self.attempts = 0
        self.refuse: CloseVerdict | None = None
        self._opened = asyncio.Condition()

    async def open(self, url: str, path: str, limits: Any, **_: Any) -> MemorySocket:
        self.attempts += 1
        if self.refuse is not None:
            raise AttemptFailed(ConnectionRefusedError("refused"), self.refuse, None)
        socket = MemorySocket()
        async with self._opened:
            self.sockets.append(socket)
            self._opened.notify_all()
        return socket

    async def connection(self, n: int) -> MemorySocket:
        """The n-th socket opened (from 1), once it is."""
        async with self._opened:
            await self._opened.wait_for(lambda: len(self.sockets) >= n)
        return self.sockets[n - 1]
