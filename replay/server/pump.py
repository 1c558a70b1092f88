"""The exchange's pump: events from the tape to the router, paced or as fast as clients read.

This module owns the loop that moves a tape forward. A paced tape (the synthetic
market, a capture at a speed) is pulled every 2 ms with the seconds elapsed, so it
flows whatever the clients do, as a live exchange does: a reader too slow for it
fills its bounded queue and is cut off. An unpaced tape (a capture at `--speed
max`) is drained only while every connection's send queue is below half its
bound, in batches no queue can overflow from, so nothing is dropped and no slow
reader is cut off. A tape that `waits_for_subscriber` starts once a client has
subscribed (and, unpaced, holds while nobody is subscribed), so a client that
connects after the server starts misses nothing.

A close event from the tape (a recorded disconnect) ends its batch: the events
before it are published, every connection's queue is written out, then every
connection is closed with the recorded code (or its TCP connection dropped, for
1006), and only then does the tape move on. It knows nothing of commands or
payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Final

from websockets.exceptions import ProtocolError
from websockets.frames import Close

from replay.server.faults import FaultKind, FaultSpec
from replay.server.tape import CLOSE_CHANNEL, AsyncTape, Tape, TapeEvent

if TYPE_CHECKING:
    from replay.server.config import ServerConfig
    from replay.server.connection import Connection
    from replay.server.subscriptions import Router
    from replay.server.truth import Truth

__all__ = ["TICK_S", "Pump"]

#: The pacing loop's period: small batches, low latency, few wake-ups.
TICK_S: Final = 0.002
#: Unpaced: the most events one take() asks for.
_MAX_TAKE: Final = 1024
#: After the first subscription, how long a waiting tape still waits: the other
#: subscribes of a client that sends one command per channel land first.
_SUBSCRIBE_GRACE_S: Final = 0.1


class Pump:
    """Moves one tape for one server.

    Args:
        tape: the source of events.
        router: the routing table shared by the connections.
        conns: the server's open connections (the live dict, read each time).
        config: the bound of the send queues, the close timeout.
        truth: where the closes it makes are recorded, or None.
        running: cleared while the server is paused (the tape's time stops too).
    """

    def __init__(
        self,
        tape: Tape,
        router: Router,
        conns: dict[int, Connection],
        config: ServerConfig,
        truth: Truth | None,
        running: asyncio.Event,
    ) -> None:
        self._tape = tape
        self._router = router
        self._conns = conns
        self._config = config
        self._truth = truth
        self._running = running
        self._async = tape if isinstance(tape, AsyncTape) else None

    def _subscribed(self) -> bool:
        return any(c.session.subscriptions for c in self._conns.values())

    async def _first_subscriber(self) -> None:
        while not self._subscribed():  # noqa: ASYNC110 - polled at the pump's own tick
            await asyncio.sleep(TICK_S)
        await asyncio.sleep(_SUBSCRIBE_GRACE_S)

    async def run(self) -> None:
        tape = self._async
        if tape is not None and tape.waits_for_subscriber:
            await self._first_subscriber()
        if tape is not None and not tape.paced:
            await self._run_unpaced(tape)
        else:
            await self._run_paced()

    async def _run_paced(self) -> None:
        start = time.monotonic()
        paused_s = 0.0
        truth_every = self._config.truth_books_every_s
        next_books = truth_every
        while True:
            if not self._running.is_set():
                t0 = time.monotonic()
                await self._running.wait()
                paused_s += time.monotonic() - t0
            elapsed = time.monotonic() - start - paused_s
            events = self._tape.pull(elapsed)
            if events:
                await self._publish(events)
            if next_books is not None and self._truth is not None and elapsed >= next_books:
                self._truth.books(self._tape.books())
                next_books = elapsed + (truth_every or 0.0)
            await asyncio.sleep(TICK_S)

    async def _run_unpaced(self, tape: AsyncTape) -> None:
        truth, every_s = self._truth, self._config.truth_books_every_s
        next_books = None if every_s is None or truth is None else time.monotonic() + every_s
        while True:
            await self._running.wait()
            if next_books is not None and time.monotonic() >= next_books:
                assert truth is not None
                assert every_s is not None
                truth.books(tape.books())
                next_books += every_s
            room = self._room()
            events = tape.take(room) if room else []
            if not events:
                await asyncio.sleep(TICK_S)
                continue
            await self._publish(events)
            await asyncio.sleep(0)  # let the senders write before the next batch

    def _room(self) -> int:
        """How many events every connection can take now without reaching half its bound
        (each event reaches each subscription of a connection at most once)."""
        half = self._config.send_buffer_frames // 2
        room = _MAX_TAKE
        subscribed = False
        for conn in self._conns.values():
            subs = len(conn.session.subscriptions)
            if not subs:
                continue
            subscribed = True
            room = min(room, (half - conn.queued) // subs)
            if room <= 0:
                return 0
        return room if subscribed else 0

    async def _publish(self, events: list[TapeEvent]) -> None:
        last = events[-1]
        if last.channel != CLOSE_CHANNEL:
            self._router.publish(events)
            return
        self._router.publish(events[:-1])
        await self.close_all(last.payload.get("code"), str(last.payload.get("reason") or ""))
        if self._async is not None and not self._async.paced:
            await self._first_subscriber()  # the clients reconnect before the tape goes on

    async def close_all(self, code: int | None, reason: str) -> None:
        """Close every connection after the frames already queued for it: with `code`,
        or (None, 1006 or a code no close frame may carry) by dropping TCP."""
        conns = list(self._conns.values())
        if not conns:
            return
        limit_s = max(2.0, self._config.close_timeout_s)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit_s):
                while not all(c.flushed for c in conns):  # noqa: ASYNC110 - many senders
                    await asyncio.sleep(TICK_S)
        frame = _close_frame(code, reason)
        await asyncio.gather(*(self._close(c, frame) for c in conns))

    async def _close(self, conn: Connection, frame: Close | None) -> None:
        if frame is None:
            # As the `drop` fault does: the truth records it, TCP is aborted, no close frame.
            conn.inject(FaultSpec(kind=FaultKind.DROP, after_frames=0))
        else:
            if self._truth is not None:
                self._truth.fault(conn.conn_no, "close", code=frame.code, source="capture")
            await conn.close(frame.code, frame.reason)
        conn.session.close()  # route nothing more to it, whenever its handler notices


def _close_frame(code: int | None, reason: str) -> Close | None:
    """The close frame a recorded close becomes, or None when there was none to send."""
    if code is None:
        return None
    frame = Close(code, reason.encode()[:123].decode(errors="ignore"))
    try:
        frame.check()  # 1005, 1006, 1015 and unassigned codes never go on the wire
    except ProtocolError:
        return None
    return frame
