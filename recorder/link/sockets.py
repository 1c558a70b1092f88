"""The live client's WebSocket: frames in and out of one socket, and how it closed.

`Socket` is the small surface the connection manager uses: `recv()` a whole
message as its exact bytes and whether it came as a binary frame, `send()` a
command, `close()` with the close handshake, `abort()`. When the connection is
over, `recv()` and `send()` raise `SocketClosed`, which carries the close frames
received and sent (and in which order) or the network error: what
`recorder.link.opener.end_of` classifies.

`PicowsSocket` is the implementation: picows parses frames in compiled code,
several times faster than websockets' receive path (see
docs/performance.md section 4.17). It keeps each message's opcode, never decodes text (a frame with
bad UTF-8 is a malformed frame to store, not a reason to drop the socket),
answers pings, pings every `ping_interval_s` and closes with 1011 "keepalive ping
timeout" when no pong comes within `ping_timeout_s` (as websockets does), closes
with 1009 a message over `max_frame_bytes`, and pauses reading while its queue
holds `_QUEUE_HIGH` messages (flow control, as websockets' `max_queue`). With
`compression="deflate"` it asks for permessage-deflate (RFC 7692) and inflates the
messages the server compresses (`_Inflate`, on the standard library's zlib;
commands go uncompressed, which the extension allows).

Nothing here knows of engines, sessions or reconnect policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as ssl_module
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.request import getproxies, proxy_bypass

import picows

__all__ = [
    "DEFLATE_OFFER",
    "CloseFrame",
    "PicowsSocket",
    "Socket",
    "SocketClosed",
    "proxy_for",
]

#: The Sec-WebSocket-Extensions offer made with `compression="deflate"`.
DEFLATE_OFFER: Final = "permessage-deflate; client_max_window_bits"
#: The bytes RFC 7692 strips from the end of each compressed message.
_DEFLATE_TAIL: Final = b"\x00\x00\xff\xff"

#: Messages queued before reading pauses, and where it resumes.
_QUEUE_HIGH: Final = 4096
_QUEUE_LOW: Final = 1024
_MSG = picows.WSMsgType


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """A close frame's code and reason."""

    code: int
    reason: str


class SocketClosed(Exception):
    """The connection is over: the close frames exchanged, or the error that ended it.

    Attributes:
        rcvd, sent: the close frame received from the server / sent by us, if any.
        rcvd_then_sent: the server closed first (we answered).
        cause: the network error, when the socket dropped without a close handshake.
    """

    def __init__(
        self,
        rcvd: CloseFrame | None,
        sent: CloseFrame | None,
        rcvd_then_sent: bool,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(_describe(rcvd, sent, cause))
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        self.cause = cause


def _describe(rcvd: CloseFrame | None, sent: CloseFrame | None, cause: BaseException | None) -> str:
    parts = []
    if rcvd is not None:
        parts.append(f"received {rcvd.code} ({rcvd.reason})")
    if sent is not None:
        parts.append(f"sent {sent.code} ({sent.reason})")
    if not parts:
        parts.append(f"dropped: {cause!r}" if cause is not None else "no close frame")
    return ", ".join(parts)


class Socket(Protocol):
    """One open WebSocket connection, as the live client uses it."""

    async def recv(self) -> tuple[bytes, bool]:
        """The next message: its exact bytes, and True if it came as binary.

        Raises:
            SocketClosed: the connection is over (after every queued message).
        """
        ...

    async def send(self, raw: bytes) -> None:
        """Send one text message.

        Raises:
            SocketClosed: the connection is over.
        """
        ...

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame, wait up to the close timeout for the server's, then drop."""
        ...

    def abort(self) -> None:
        """Drop the socket at once, no close handshake (the server sees a reset)."""
        ...


def proxy_for(url: str, proxy: str | bool | None) -> str | None:
    """The proxy URL for `url`: `proxy` itself, or with True the environment's
    (`https_proxy` for wss, `http_proxy` for ws, none for hosts `no_proxy` lists)."""
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, str):
        return proxy
    secure = url.startswith("wss:")
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    if proxy_bypass(host.split(":")[0]):
        return None
    found = getproxies()
    return found.get("wss" if secure else "ws") or found.get("https" if secure else "http")


class _Inflate:
    """permessage-deflate, receiving side: inflate the messages the server compressed."""

    def __init__(self, response_header: str) -> None:
        params = _deflate_params(response_header)
        self._wbits = -int(params.get("server_max_window_bits") or 15)
        self._takeover = "server_no_context_takeover" not in params
        self._decoder = zlib.decompressobj(self._wbits)

    def message(self, payload: bytes, limit: int) -> bytes:
        """The inflated message.

        Raises:
            ValueError: it inflates past `limit` bytes, or it is not valid deflate data.
        """
        if not self._takeover:
            self._decoder = zlib.decompressobj(self._wbits)
        try:
            data = self._decoder.decompress(payload + _DEFLATE_TAIL, limit + 1)
        except zlib.error as exc:
            raise ValueError(f"bad compressed message: {exc}") from None
        if len(data) > limit:
            raise ValueError(f"message inflates past {limit} bytes")
        return data


def _deflate_params(header: str) -> dict[str, str | None]:
    """The parameters of the permessage-deflate extension a server accepted."""
    for extension in header.split(","):
        name, *params = (part.strip() for part in extension.split(";"))
        if name == "permessage-deflate":
            return {k.strip(): (v.strip().strip('"') if v else None)
                    for k, _, v in (p.partition("=") for p in params if p)}  # fmt: skip
    raise ValueError(f"no permessage-deflate in {header!r}")


class PicowsSocket(picows.WSListener):  # type: ignore[misc]
    """A `Socket` on picows (see the module docstring). Made by `connect_picows`."""

    def __init__(
        self, *, ping_interval_s: float, ping_timeout_s: float, close_timeout_s: float,
        max_frame_bytes: int, inflate: _Inflate | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self._inflate = inflate
        self._parts_compressed = False
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._close_timeout_s = close_timeout_s
        self._max = max_frame_bytes
        self._messages: deque[tuple[bytes, bool]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._parts: list[bytes] = []
        self._parts_binary = False
        self._transport: Any = None
        self._paused = False
        self._done = False
        self._disconnected = asyncio.get_running_loop().create_future()
        self._pong = asyncio.Event()
        self._keepalive: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None

    @property
    def compressed(self) -> bool:
        """permessage-deflate is on for this connection."""
        return self._inflate is not None

    # ---- picows callbacks (the event loop's thread, never concurrently) -------------

    def on_ws_connected(self, transport: Any) -> None:
        self._transport = transport
        self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        kind = frame.msg_type
        if kind == _MSG.TEXT or kind == _MSG.BINARY:  # picows refuses frames over the max
            if frame.rsv1:
                self._compressed_start(frame, kind == _MSG.BINARY)
            elif frame.fin:  # the common case, inline: queue it, wake the reader
                messages = self._messages
                messages.append((frame.get_payload_as_bytes(), kind == _MSG.BINARY))
                if self._waiter is not None:
                    self._wake()
                if len(messages) >= _QUEUE_HIGH and not self._paused:
                    self._pause()
            else:
                self._parts = [frame.get_payload_as_bytes()]
                self._parts_binary = kind == _MSG.BINARY
                self._parts_compressed = False
        elif kind == _MSG.CONTINUATION:
            self._parts.append(frame.get_payload_as_bytes())
            if sum(map(len, self._parts)) > self._max:
                self._fail(1009, f"message over {self._max} bytes")
            elif frame.fin:
                self._whole(b"".join(self._parts), self._parts_binary, self._parts_compressed)
                self._parts = []
        elif kind == _MSG.PONG:
            self._pong.set()
        elif kind == _MSG.CLOSE:
            # picows has recorded it; answer with the same code, then drop the socket.
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        # PING: picows answers it (enable_auto_pong).

    def on_ws_disconnected(self, transport: Any) -> None:
        self._done = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        # picows keeps the error that ended a connection (a frame over the size limit)
        # for whoever waits for the end: take it, the close frames already tell it.
        self._reaper = asyncio.get_running_loop().create_task(_reap(transport))
        if not self._disconnected.done():
            self._disconnected.set_result(None)
        self._wake()

    # ---- the Socket surface ----------------------------------------------------------

    async def recv(self) -> tuple[bytes, bool]:
        messages = self._messages
        if messages and not self._paused:
            return messages.popleft()  # the common case: queued, reading not paused
        while not messages:
            if self._done:
                raise self._closed()
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        message = messages.popleft()
        if self._paused and len(messages) <= _QUEUE_LOW:
            self._paused = False
            self._transport.underlying_transport.resume_reading()
        return message

    async def send(self, raw: bytes) -> None:
        transport = self._transport
        if self._done or transport.is_close_frame_sent:
            raise self._closed()
        transport.send(_MSG.TEXT, raw)

    async def close(self, code: int, reason: str) -> None:
        transport = self._transport
        if not self._done:
            if not transport.is_close_frame_sent:
                transport.send_close(code, reason.encode())
            try:
                async with asyncio.timeout(self._close_timeout_s):
                    await asyncio.shield(self._disconnected)
            except TimeoutError:
                pass
        self.abort()

    def abort(self) -> None:
        if self._transport is not None and not self._done:
            self._transport.underlying_transport.abort()

    # ---- inside ------------------------------------------------------------------------

    def _compressed_start(self, frame: Any, binary: bool) -> None:
        """The first frame of a compressed message (RSV1): whole, or the start of one."""
        if self._inflate is None:
            self._fail(1002, "compressed frame without permessage-deflate")
            return
        payload = frame.get_payload_as_bytes()
        if frame.fin:
            self._whole(payload, binary, compressed=True)
        else:
            self._parts, self._parts_binary, self._parts_compressed = [payload], binary, True

    def _whole(self, payload: bytes, binary: bool, compressed: bool) -> None:
        """A whole message: inflated if it was compressed, then queued."""
        if compressed:
            assert self._inflate is not None
            try:
                payload = self._inflate.message(payload, self._max)
            except ValueError as exc:
                self._fail(1009 if "past" in str(exc) else 1007, str(exc))
                return
        self._queue(payload, binary)

    def _queue(self, raw: bytes, binary: bool) -> None:
        self._messages.append((raw, binary))
        if len(self._messages) >= _QUEUE_HIGH and not self._paused:
            self._pause()
        self._wake()

    def _pause(self) -> None:
        """Stop reading from the socket until `recv()` drains the queue to `_QUEUE_LOW`."""
        self._paused = True
        self._transport.underlying_transport.pause_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, code: int, reason: str) -> None:
        """A frame broke our rules: say why in a close frame and drop the socket."""
        transport = self._transport
        if not transport.is_close_frame_sent:
            transport.send_close(code, reason.encode())
        transport.disconnect(False)

    async def _keep_alive(self) -> None:
        """Ping every interval; no pong in time ends the connection (1011, as websockets)."""
        transport = self._transport
        while not self._done:
            await asyncio.sleep(self._ping_interval_s)
            self._pong.clear()
            transport.send_ping(b"kalshi-tape")
            try:
                async with asyncio.timeout(self._ping_timeout_s):
                    await self._pong.wait()
            except TimeoutError:
                self._fail(1011, "keepalive ping timeout")
                return

    def _closed(self) -> SocketClosed:
        handshake = self._transport.close_handshake if self._transport is not None else None
        rcvd = sent = None
        rcvd_then_sent = False
        if handshake is not None:
            if handshake.recv is not None:
                rcvd = CloseFrame(int(handshake.recv.code), handshake.recv.reason or "")
            if handshake.sent is not None:
                sent = CloseFrame(int(handshake.sent.code), handshake.sent.reason or "")
            rcvd_then_sent = bool(handshake.recv_then_sent)
        cause = None if rcvd or sent else ConnectionResetError("connection lost")
        return SocketClosed(rcvd, sent, rcvd_then_sent, cause)


async def _reap(transport: Any) -> None:
    with contextlib.suppress(Exception):
        await transport.wait_disconnected()


async def connect_picows(
    url: str,
    *,
    headers: list[tuple[str, str]],
    ssl: ssl_module.SSLContext | None,
    proxy: str | None,
    open_timeout_s: float,
    ping_interval_s: float,
    ping_timeout_s: float,
    close_timeout_s: float,
    max_frame_bytes: int,
    logger: logging.Logger,
    compression: str | None = None,
    local_address: str | None = None,
) -> PicowsSocket:
    """Open a `PicowsSocket` within `open_timeout_s` (TCP, TLS and the upgrade); with
    `compression="deflate"`, offer permessage-deflate; with `local_address`, from that
    local IP address (a second network path for a redundant feed).

    The TCP socket is made here (picows' socket factory hook), so that an attempt
    cancelled in the middle (a timeout, a rotation called off) shuts it down instead
    of leaving a half-open connection behind. Handshake errors are picows' own.
    """
    loop = asyncio.get_running_loop()
    made: list[socket.socket] = []

    async def make_socket(target: Any) -> socket.socket:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        error: OSError = OSError(f"no address for {target.host}")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            made.append(sock)
            try:
                if local_address is not None:
                    sock.bind((local_address, 0))
                await loop.sock_connect(sock, address)
            except OSError as exc:
                error = exc
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise error

    if compression == "deflate":
        headers = [*headers, ("Sec-WebSocket-Extensions", DEFLATE_OFFER)]

    def listener(request: Any, response: Any) -> PicowsSocket:
        accepted = response.headers.get("Sec-WebSocket-Extensions")
        inflate = _Inflate(accepted) if compression == "deflate" and accepted else None
        return PicowsSocket(
            ping_interval_s=ping_interval_s, ping_timeout_s=ping_timeout_s,
            close_timeout_s=close_timeout_s, max_frame_bytes=max_frame_bytes, inflate=inflate,
        )  # fmt: skip

    try:
        async with asyncio.timeout(open_timeout_s):
            _, ws = await picows.ws_connect(
                listener, url, ssl_context=ssl, websocket_handshake_timeout=open_timeout_s,
                enable_auto_ping=False, enable_auto_pong=True, max_frame_size=max_frame_bytes,
                extra_headers=headers, max_redirects=0, proxy=proxy,
                # An adapter, not the logger: picows would log on an unfiltered child of
                # a Logger, and its lowest level shows the upgrade request's headers.
                logger_name=logging.LoggerAdapter(logger, {}),
                socket_factory=make_socket,
                use_aiofastnet=False,  # asyncio's own transport: stdlib TLS and its errors
            )  # fmt: skip
    except BaseException:
        for sock in made:  # the transport, if any, sees the end and closes its side
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise
    assert isinstance(ws, PicowsSocket)
    return ws
