"""One WebSocket connection of the live client: opening it, and how it ended.

This module owns a single socket's life at its two edges. `open_link` performs
the handshake (freshly signed headers, the keep-alive, close and open timeouts,
`max_frame_bytes`, TLS, a proxy, permessage-deflate if asked, our redacting
logger) on a `recorder.link.sockets` socket. It turns
each way a handshake can fail into an `AttemptFailed` carrying its `CloseVerdict`
(docs/protocol.md section 9.6; HTTP 429/503 with Retry-After). `end_of`
classifies how an open connection ended into a `LinkEnd`: a close we
asked for (its `Intent`), a server close with its code (1000 and 1001 are
noticed, not missed), a keep-alive timeout, a protocol violation (1009 for a
frame over `max_frame_bytes`: recorded and retried, behaviour 19), or a network
drop. It knows nothing of the engine, reconnect policy or sessions.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl as ssl_module
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import picows

from recorder.link.auth import Credentials
from recorder.link.limits import Limits
from recorder.link.policies import (
    CloseVerdict,
    DisconnectReason,
    classify_close,
    classify_handshake,
)
from recorder.link.sockets import Socket, SocketClosed, connect_picows, proxy_for

__all__ = [
    "AttemptFailed",
    "Intent",
    "Link",
    "LinkEnd",
    "Links",
    "SocketClosed",
    "end_of",
    "open_link",
    "retry_after_s",
]

_R = DisconnectReason


@dataclass(frozen=True, slots=True)
class Intent:
    """Why we close a connection ourselves, and what comes next.

    then: "hold" (stay disconnected), "reconnect" (after `after_s`, proactive),
    "react" (treat as a reactive loss: kill, a stale fallback), "retire" (switched
    away from), "abandon" (a standby not ready), "stop" (the session ends).
    """

    reason: DisconnectReason
    then: str
    after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class LinkEnd:
    """How a connection ended."""

    reason: DisconnectReason
    code: int | None
    text: str
    initiator: str  # "server" or "client"
    verdict: CloseVerdict
    intent: Intent | None = None
    error: BaseException | None = None


class Link:
    """One open socket and what we know of it."""

    __slots__ = ("ended", "intent", "no", "opened_mono_ns", "reader", "settled", "ws")

    def __init__(self, no: int, ws: Socket, opened_mono_ns: int) -> None:
        self.no = no
        self.ws = ws
        self.opened_mono_ns = opened_mono_ns
        self.intent: Intent | None = None
        self.reader: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()  # its end was reported to the engine
        self.settled = asyncio.Event()  # as a standby: switched to, or gone

    def abort(self) -> None:
        """Drop the socket at once: no close handshake (the peer sees a reset)."""
        self.ws.abort()


class Links:
    """The connections of one run: each open one by number, the one delivering (active),
    a make-before-break replacement being readied (standby), and whether the run ends.

    Shared by the connection manager and its collaborators (proactive control, the
    watchdogs); only the manager opens and ends links.
    """

    __slots__ = ("_numbers", "abort", "active", "conns", "standby", "stopping")

    def __init__(self, numbers: Iterator[int] | None = None) -> None:
        self.conns: dict[int, Link] = {}
        self.active: Link | None = None
        self.standby: Link | None = None
        # Connections are numbered from 1, a standby too; the feeds of one run share
        # the numbers (`numbers`), so a number names one connection of the run.
        self._numbers = numbers if numbers is not None else itertools.count(1)
        self.stopping = False  # the run is ending: nothing new is opened
        self.abort = False  # end without close handshakes (force_close)

    def number(self) -> int:
        """The number of the next connection to open."""
        return next(self._numbers)


class AttemptFailed(Exception):
    """A handshake failed; `verdict` says whether retrying can help, `status` is the HTTP
    status of a rejected upgrade (None for other failures)."""

    def __init__(
        self,
        error: BaseException,
        verdict: CloseVerdict,
        retry_after_s: float | None,
        status: int | None = None,
    ):
        super().__init__(str(error))
        self.error = error
        self.verdict = verdict
        self.retry_after_s = retry_after_s
        self.status = status


async def open_link(
    url: str,
    path: str,
    limits: Limits,
    *,
    credentials: Credentials | None,
    ssl: ssl_module.SSLContext | None,
    compression: str | None,
    proxy: str | Literal[True] | None,
    logger: logging.Logger,
    local_address: str | None = None,
) -> Socket:
    """Open one WebSocket connection, signing the upgrade afresh (from `local_address`,
    if given).

    Never a library's reconnecting iterator: our own loop decides retries.

    Raises:
        AttemptFailed: the handshake failed (refused, timed out, rejected with a status,
            a certificate that does not verify), with its verdict.
    """
    headers = list(credentials.headers(path).items()) if credentials is not None else []
    headers.append(("User-Agent", "kalshi-tape"))
    tls = ssl if url.startswith("wss:") else None
    try:
        return await connect_picows(
            url, headers=headers, ssl=tls, proxy=proxy_for(url, proxy),
            open_timeout_s=limits.open_timeout_s, ping_interval_s=limits.ping_interval_s,
            ping_timeout_s=limits.ping_timeout_s, close_timeout_s=limits.close_timeout_s,
            max_frame_bytes=limits.max_frame_bytes, logger=logger, compression=compression,
            local_address=local_address,
        )  # fmt: skip
    except asyncio.CancelledError:
        raise
    except picows.WSInvalidStatusError as exc:
        response = exc.response
        status = int(response.status) if response is not None else 0
        header = response.headers.get("Retry-After") if response is not None else None
        raise _rejected(exc, status, header) from None
    except ssl_module.SSLCertVerificationError as exc:
        raise AttemptFailed(exc, CloseVerdict.PERMANENT, None) from None
    except Exception as exc:  # refused, reset, DNS, open timeout, a bad upgrade answer
        raise AttemptFailed(exc, CloseVerdict.RETRY, None) from None


def _rejected(exc: Exception, status: int, retry_after: str | None) -> AttemptFailed:
    """An upgrade the server answered with an HTTP status other than 101."""
    error = HandshakeStatus(status, str(exc))
    return AttemptFailed(error, classify_handshake(status), retry_after_s(retry_after), status)


class HandshakeStatus(Exception):
    """The server answered the upgrade with HTTP `status` (the cause of an AttemptFailed)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"server rejected WebSocket connection: HTTP {status}")
        self.status = status
        self.detail = detail


def end_of(c: Link, exc: SocketClosed) -> LinkEnd:
    """Classify how a connection ended (kstlib missed clean 1000/1001 closes: not us)."""
    rcvd, sent, intent = exc.rcvd, exc.sent, c.intent
    if intent is not None:
        code = sent.code if sent is not None else rcvd.code if rcvd is not None else 1006
        text = sent.reason if sent is not None else intent.reason.value
        return LinkEnd(intent.reason, code, text, "client", CloseVerdict.RETRY, intent, exc)
    if rcvd is not None and (sent is None or exc.rcvd_then_sent):
        verdict = classify_close(rcvd.code)
        return LinkEnd(_R.SERVER_CLOSED, rcvd.code, rcvd.reason, "server", verdict, None, exc)
    if sent is not None:
        # We closed it unasked: a keep-alive timeout, or a frame that broke the protocol
        # or max_frame_bytes (1009: recorded and retried, docs/protocol.md section 9.19).
        timeout = sent.code == 1011 and "keepalive" in sent.reason
        reason = _R.PING_TIMEOUT if timeout else _R.PROTOCOL_ERROR
        return LinkEnd(reason, sent.code, sent.reason, "client", CloseVerdict.RETRY, None, exc)
    cause = exc.cause
    text = f"{type(cause).__name__}: {cause}" if cause else "connection lost"
    return LinkEnd(_R.NETWORK_ERROR, 1006, text, "server", CloseVerdict.RETRY, None, exc)


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is not honoured), clamped to 600."""
    if value is None:
        return None
    try:
        return min(max(float(value.strip()), 0.0), 600.0)
    except ValueError:
        return None
