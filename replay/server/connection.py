"""One client connection of the simulated exchange: a bounded send queue, a sender, pings, faults.

This module owns what happens between the protocol layer and the socket for one
connection: every frame (replies and data, in one order) goes into a bounded queue,
each with whether it goes as a binary message (a recorded binary frame) or as text
(everything else: Kalshi sends text); one sender task drains it in batches through
the connection's `ServerSocket`; a pinger sends `heartbeat` pings
(docs/protocol.md section 3); the fault scheduler's verdicts are applied here
(close codes, TCP drop, stall, no pong, and the frame faults on the next sequenced
data frame). A client
whose queue fills is disconnected (or its subscriptions end with error 25), so
memory stays bounded. It knows nothing of how markets move, how commands are
parsed or how an upgrade is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from typing import Any

from replay.server.config import ServerConfig
from replay.server.faults import CONNECTION_KINDS, FaultKind, FaultScheduler, FaultSpec
from replay.server.protocol import Session
from replay.server.sockets import Outgoing, ServerSocket
from replay.server.subscriptions import Router
from replay.server.tape import Tape
from replay.server.truth import Truth
from schemas.channels import channel_of_type
from schemas.envelope import decode_envelope
from schemas.errors import EnvelopeError

__all__ = ["Connection"]

_CONTROL = frozenset({"ok", "error", "unsubscribed", "subscribed"})
_OVERSIZE_PAD = b"x" * ((1 << 20) + 64)
#: Frames per transport write; small enough to keep latency and fault timing tight.
_BATCH_FRAMES = 256


class Connection:
    """The exchange's side of one open WebSocket connection.

    Args:
        socket: the accepted connection the frames go out on.
        conn_no: the connection's number (its handshake attempt, from 1).
        config: the queue bound, the switches, the close timeout, the seed.
        router, tape: what its session subscribes through and reads books from.
        truth: where frames sent and faults are recorded, or None.
        faults: the fault specs scheduled on connections.
        authenticated: private channels are allowed (else they answer error 9).

    Attributes:
        conn_no: connection number (handshake attempts counted from 1).
        session: the protocol state (subscriptions, sids, seqs).
        data_frames_sent: frames taken from the queue so far (data and replies); the
            `after=N` fault trigger counts these.
        max_queued: the most frames ever waiting in the send queue.
    """

    def __init__(
        self,
        socket: ServerSocket,
        conn_no: int,
        *,
        config: ServerConfig,
        router: Router,
        tape: Tape,
        truth: Truth | None,
        faults: tuple[FaultSpec, ...],
        authenticated: bool,
        tag: str | None = None,
    ) -> None:
        self._socket = socket
        self.conn_no = conn_no
        self._config = config
        self._bound = config.send_buffer_frames
        self._queue: deque[Outgoing] = deque()
        self._wake = asyncio.Event()
        self._dead = False
        self._sending = False
        self._truth = truth
        self.session = Session(router, tape, config, self.enqueue, authenticated=authenticated)
        self._scheduler = FaultScheduler(
            faults, conn_no, random.Random(config.seed * 1_000_003 + conn_no), tag
        )
        self._armed: list[FaultSpec] = []
        self._now: list[FaultSpec] = []
        self._opened = time.monotonic()
        self.data_frames_sent = 0
        self.max_queued = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- queue ------------------------------------------------------------------------

    def enqueue(self, frame: bytes, binary: bool) -> None:
        """Queue a frame for the client, as a binary message or as text (the session's sink,
        called by the protocol layer and the router)."""
        if self._dead:
            return
        queue = self._queue
        if len(queue) >= self._bound:
            self._dead = True
            # Handled outside the router's fan-out loop, which must not change under it.
            asyncio.get_running_loop().call_soon(self._overflow)
            return
        queue.append((frame, binary))
        self._wake.set()

    @property
    def idle(self) -> bool:
        """True when nothing is queued or being written."""
        return not self._queue and not self._sending

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def flushed(self) -> bool:
        """Everything queued is written and out of the transport (or the transport is closing)."""
        return self.idle and self._socket.flushed

    def _overflow(self) -> None:
        self.max_queued = max(self.max_queued, len(self._queue))
        policy = self._config.switches.overflow
        self._record("overflow", queued=len(self._queue), policy=policy)
        if policy == "close":
            self._queue.clear()
            self._spawn(self.close(1008, "send buffer overflow"))
            return
        # error25: every subscription ends with the terminal error 25 (docs/protocol.md section 5).
        self._queue.clear()
        self._dead = False
        for sid in list(self.session.subscriptions):
            self.session.end_subscription(sid, 25)

    # -- tasks --------------------------------------------------------------------------

    def start(self) -> None:
        self._spawn(self._sender())
        interval = self._config.switches.ping_interval_s
        if interval > 0:
            self._spawn(self._pinger(interval))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)

    async def stop(self) -> None:
        self._dead = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _pinger(self, interval_s: float) -> None:
        payload = self._config.switches.ping_payload
        while True:
            await asyncio.sleep(interval_s)
            if not self._socket.ping(payload):
                return

    # -- faults ---------------------------------------------------------------------------

    def inject(self, spec: FaultSpec) -> None:
        """Fire `spec` now (its triggers are ignored); frame faults arm for the next frame.

        Close and drop act at once, even while the sender waits on a full socket;
        stall and no_pong go through the sender, between two frames.
        """
        if spec.kind in (FaultKind.CLOSE, FaultKind.DROP):
            self._spawn(self._apply_connection_fault(spec))
        elif spec.kind in CONNECTION_KINDS:
            self._now.append(spec)
        else:
            self._armed.append(spec)
        self._wake.set()

    def _record(self, fault: str, **detail: Any) -> None:
        if self._truth is not None:
            self._truth.fault(self.conn_no, fault, **detail)

    def _elapsed_s(self) -> float:
        return time.monotonic() - self._opened

    async def close(self, code: int, reason: str) -> None:
        """Close with `code`, nothing more queued; abort the TCP connection if the client does
        not finish the close handshake within `close_timeout_s`."""
        self._dead = True
        await self._socket.close(code, reason, self._config.close_timeout_s)

    async def _apply_connection_fault(self, spec: FaultSpec) -> None:
        self._record(spec.kind.value, code=spec.code, duration_s=spec.duration_s)
        if spec.kind is FaultKind.CLOSE:
            assert spec.code is not None
            await self.close(spec.code, "simulated fault")
        elif spec.kind is FaultKind.DROP:
            self._dead = True
            self._socket.abort()
        elif spec.kind is FaultKind.STALL:
            await asyncio.sleep(spec.duration_s or 0.0)
        elif spec.kind is FaultKind.NO_PONG:
            socket = self._socket
            socket.answers_pings = False
            if spec.duration_s is not None:
                asyncio.get_running_loop().call_later(
                    spec.duration_s, setattr, socket, "answers_pings", True
                )

    def _fire(self, specs: list[FaultSpec]) -> None:
        for spec in specs:
            if spec.kind in CONNECTION_KINDS:
                self._now.append(spec)
            else:
                self._armed.append(spec)

    def _frame_fault(self, entry: Outgoing) -> list[Outgoing]:
        """Apply the first armed frame fault if the frame is eligible; the frames to send
        (a changed frame goes as the same kind of message as the one it replaces)."""
        frame, binary = entry
        try:
            env = decode_envelope(frame)
        except EnvelopeError:
            return [entry]
        if env.sid is None or env.type in _CONTROL:
            return [entry]
        spec = self._armed[0]
        kind = spec.kind
        needs_seq = kind not in (FaultKind.UNSUBSCRIBED, FaultKind.ERROR25)
        if needs_seq and env.seq is None:
            return [entry]
        if kind is FaultKind.REORDER and not self._queue:
            return [entry]  # nothing to swap with yet: keep it armed
        if spec.channels is not None and channel_of_type(env.type) not in spec.channels:
            return [entry]  # another channel's frame: keep it armed
        self._armed.pop(0)
        self._record(kind.value, sid=env.sid, seq=env.seq, type=env.type)
        if kind is FaultKind.GAP:
            return []
        if kind is FaultKind.DUP:
            return [entry, entry]
        if kind is FaultKind.REORDER:
            return [self._queue.popleft(), entry]
        if kind is FaultKind.MALFORMED:
            return [(frame[: len(frame) // 2], binary)]
        if kind is FaultKind.BAD_UTF8:
            return [(frame[:-1] + b',"note":"\xff\xfe\xfd"}', binary)]
        if kind is FaultKind.OVERSIZED:
            return [(frame[:-1] + b',"padding":"' + _OVERSIZE_PAD + b'"}', binary)]
        if kind is FaultKind.BINARY:
            return [(frame, True)]
        # unsubscribed / error25: the frame goes out, then the server ends its sid.
        # Frames of that sid already queued still follow (stale-sid frames).
        before = len(self._queue)
        self.session.end_subscription(env.sid, 25 if kind is FaultKind.ERROR25 else None)
        if len(self._queue) > before:
            self._queue.appendleft(self._queue.pop())
        return [entry]

    # -- sender ------------------------------------------------------------------------------

    async def _wait_for_work(self) -> None:
        self._wake.clear()
        next_due = self._scheduler.next_due_s()
        if next_due is None:
            await self._wake.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, next_due - self._elapsed_s())):
                await self._wake.wait()

    async def _sender(self) -> None:
        socket = self._socket
        queue = self._queue
        scheduler = self._scheduler
        per_frame = scheduler.has_frame_triggers
        truth = self._truth
        try:
            while True:
                if not queue and not self._now:
                    await self._wait_for_work()
                next_due = scheduler.next_due_s()
                if next_due is not None and self._elapsed_s() >= next_due:
                    self._fire(scheduler.due(self._elapsed_s()))
                    next_due = scheduler.next_due_s()
                while self._now:
                    await self._apply_connection_fault(self._now.pop(0))
                    if self._dead:
                        return
                while queue:
                    if len(queue) > self.max_queued:
                        self.max_queued = len(queue)
                    batch: list[Outgoing] = []
                    interrupted = False
                    while queue and len(batch) < _BATCH_FRAMES:
                        entry = queue.popleft()
                        if self._armed:
                            batch.extend(self._frame_fault(entry))
                        else:
                            batch.append(entry)
                        self.data_frames_sent += 1
                        if per_frame:
                            self._fire(scheduler.on_frame(self.data_frames_sent))
                        if self._now or (next_due is not None and self._elapsed_s() >= next_due):
                            interrupted = True  # a fault is due: it acts between frames
                            break
                    # One transport write per batch: `send()` per frame costs a system
                    # call each, which caps a Python server near 100k frames/s
                    # (docs/performance.md section 4.14). The frames on the wire are the same.
                    self._sending = True
                    if not socket.send(batch):
                        self._dead = True
                        return
                    if truth is not None:
                        for frame, _binary in batch:
                            truth.sent(self.conn_no, frame)
                    await socket.drain()
                    self._sending = False
                    if interrupted:
                        break
        finally:
            self._sending = False
