"""The exchange's WebSocket: one accepted TCP connection, driving websockets' sans-I/O protocol.

`ServerSocket` is the asyncio `Protocol` the server's listener makes for each TCP
connection. It feeds the bytes it reads to a `websockets.server.ServerProtocol`
(the public sans-I/O layer: `receive_data`, `events_received`, `data_to_send`)
and writes out what that protocol asks, so framing, the opening and closing
handshakes, pongs and the protocol's errors (1009 for a command over `max_size`)
are websockets' and every byte written is this module's. It offers the small
surface the exchange needs:

* `request()` the upgrade request, then `accept()` or `reject(status)` it;
* `recv()` each whole message the client sends;
* `send(frames)` a batch of frames, each as a text or a binary message, framed
  by the protocol and handed to the transport in one write; `drain()` waits
  while the transport's buffer is over its high-water mark;
* `ping(payload)`, `close(code, reason, timeout_s)` (the close handshake, then an
  abort if the client never finishes it), `abort()` (TCP dropped, no close frame);
* `answers_pings`: while False, the pongs the protocol writes in answer to the
  client's pings are not written (the `no_pong` fault); commands and the close
  handshake are served as usual.

It knows nothing of subscriptions, faults or markets.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from http import HTTPStatus
from typing import Any, Final

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

__all__ = ["Outgoing", "ServerSocket"]

#: A frame for the client and whether it goes as a binary message (else text).
Outgoing = tuple[bytes, bool]

#: The transport's high-water mark, as websockets' own asyncio server sets it.
_WRITE_LIMIT: Final = 1 << 15

_log = logging.getLogger(__name__)


class ServerSocket(asyncio.Protocol):
    """One client's TCP connection, spoken to through websockets' `ServerProtocol`.

    Args:
        handler: run as a task once the TCP connection is made; it reads the upgrade
            request, answers it and serves the connection (the server's `_serve`).
        max_size: the largest message the client may send; a larger one closes 1009.
        close_timeout_s: how long the client may take to end the TCP connection after
            the server has said its last word (a rejected upgrade, a close frame).
    """

    def __init__(
        self,
        handler: Callable[[ServerSocket], Coroutine[Any, Any, None]],
        *,
        max_size: int,
        close_timeout_s: float,
    ) -> None:
        self._handler = handler
        self._close_timeout_s = close_timeout_s
        # permessage-deflate when a client asks for it, as a WebSocket server offers it.
        self._protocol = ServerProtocol(
            max_size=max_size, extensions=[ServerPerMessageDeflateFactory()]
        )
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._request: asyncio.Future[Request | None] = loop.create_future()
        self._lost: asyncio.Future[None] = loop.create_future()
        self._messages: deque[bytes] = deque()
        self._fragments: list[bytes] = []
        self._message_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._eof_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        #: False while the `no_pong` fault lasts: pings go unanswered.
        self.answers_pings = True

    # -- the upgrade ---------------------------------------------------------------------

    async def request(self) -> Request | None:
        """The client's upgrade request, or None if it left (or sent no valid one)."""
        return await asyncio.shield(self._request)

    def accept(self, request: Request) -> bool:
        """Answer the upgrade with 101; False if the request is no valid WebSocket upgrade
        (then websockets' own 4xx answer was sent instead) or the client has left."""
        protocol = self._protocol
        if protocol.state is not State.CONNECTING or self._lost.done():
            return False
        response = protocol.accept(request)
        protocol.send_response(response)
        self._flush(protocol.data_to_send())
        return response.status_code == 101

    def reject(self, status: HTTPStatus) -> None:
        """Refuse the upgrade with `status` and a one-line body, then end the connection."""
        protocol = self._protocol
        if protocol.state is not State.CONNECTING or self._lost.done():
            return
        protocol.send_response(protocol.reject(status, f"{status.phrase}\n"))
        self._flush(protocol.data_to_send())

    # -- messages --------------------------------------------------------------------------

    async def recv(self) -> bytes | None:
        """The next whole message from the client, or None once the connection is over."""
        while not self._messages:
            if self._lost.done():
                return None
            waiter = self._message_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._message_waiter = None
        return self._messages.popleft()

    def send(self, frames: Iterable[Outgoing]) -> bool:
        """Frame each message as text or binary and hand the batch to the transport at once.

        Returns False, sending nothing, once the connection is closing or closed.
        """
        protocol = self._protocol
        transport = self._transport
        if protocol.state is not State.OPEN or transport is None or transport.is_closing():
            return False
        send_text = protocol.send_text
        send_binary = protocol.send_binary
        for frame, binary in frames:
            if binary:
                send_binary(frame)
            else:
                send_text(frame)
        transport.write(b"".join(protocol.data_to_send()))
        return True

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its low-water mark (or the end)."""
        if self._paused and not self._lost.done():
            waiter = self._drain_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None

    def ping(self, payload: bytes) -> bool:
        """Send a ping; False once the connection is closing or closed."""
        if self._protocol.state is not State.OPEN or self._lost.done():
            return False
        self._protocol.send_ping(payload)
        self._flush(self._protocol.data_to_send())
        return True

    # -- the end ---------------------------------------------------------------------------

    async def close(self, code: int, reason: str, timeout_s: float) -> None:
        """Close with `code` after the frames already written; wait for the TCP connection to
        end, and abort it if that takes over `timeout_s` (a client that stopped reading never
        sees the close frame). Before the upgrade was answered, the connection is aborted."""
        protocol = self._protocol
        if protocol.state is State.OPEN:
            protocol.send_close(code, reason)
            self._flush(protocol.data_to_send())
        elif protocol.state is State.CONNECTING:
            self.abort()
        try:
            async with asyncio.timeout(timeout_s):
                await self.wait_closed()
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once: no close frame, unsent data discarded."""
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection has ended."""
        await asyncio.shield(self._lost)

    @property
    def flushed(self) -> bool:
        """Everything written is out of the transport (or the transport is closing)."""
        transport = self._transport
        return transport is None or transport.is_closing() or not transport.get_write_buffer_size()

    @property
    def close_code(self) -> int | None:
        """The close code the client sent (1006 if none came); None while open."""
        return self._protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason the client sent; None while open."""
        return self._protocol.close_reason

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.set_write_buffer_limits(_WRITE_LIMIT)
        self._transport = transport
        self._task = self._loop.create_task(self._handler(self))
        self._task.add_done_callback(self._handler_done)

    def data_received(self, data: bytes) -> None:
        protocol = self._protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        out = protocol.data_to_send()
        # Every send above flushes at once, so `out` is what these bytes made the protocol
        # answer. While the connection stays open that can only be pongs (a close frame,
        # ours or an echo, moves it to CLOSING): the `no_pong` fault withholds them.
        if out and (self.answers_pings or protocol.state is not State.OPEN):
            self._flush(out)
        for event in events:
            if isinstance(event, Frame):
                self._on_frame(event)
            elif isinstance(event, Request) and not self._request.done():
                self._request.set_result(event)

    def eof_received(self) -> None:
        self._protocol.receive_eof()
        self._flush(self._protocol.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self._protocol.receive_eof()  # idempotent: the state becomes CLOSED, the code known
        self._protocol.data_to_send()  # nowhere to send it now
        if self._eof_timer is not None:
            self._eof_timer.cancel()
        if not self._request.done():
            self._request.set_result(None)
        self._lost.set_result(None)
        for waiter in (self._message_waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- inside ------------------------------------------------------------------------------

    def _flush(self, chunks: list[bytes]) -> None:
        """Write what the protocol asked; its empty chunk means: half-close the connection."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        for chunk in chunks:
            if chunk:
                transport.write(chunk)
            else:
                # The server has said its last word; the client ends the TCP connection
                # (RFC 6455 7.1.1), or it is aborted after the close timeout.
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()
                self._eof_timer = self._loop.call_later(self._close_timeout_s, self.abort)

    def _on_frame(self, frame: Frame) -> None:
        """Collect data frames into whole messages (the protocol checks their order)."""
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                parts, self._fragments = self._fragments, []
                self._messages.append(parts[0] if len(parts) == 1 else b"".join(parts))
                waiter = self._message_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            _log.error("connection handler failed", exc_info=task.exception())
            self.abort()
