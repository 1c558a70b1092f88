"""The live connection manager: the `stream.Source` of a `LiveSession`.

This module owns the reconnect loop and the receive loops. `LiveSource.run` is
our own loop (never websockets' `async for ... in connect()`, whose backoff
resets on every opened connection and storms): it opens connections
(`recorder.link`, freshly signed headers every attempt), runs one receive loop
per connection, decides after every end what comes next, waits as
`recorder.policies` says (full-jitter backoff, the attempt rate limit, 1013 and
HTTP 429/503, the stable-connection reset), and gives up with the last error,
which ends every iterator and reaches `on_error`. It carries out the engine's
requests (`Switched`: close the old connection; `CloseConnection`: drop a
standby) and counts what happens (`recorder.stats`).

Theory of operation. Each receive loop reads frames as bytes, stamps both
clocks, counts them, hands them to the sink (write first), then to the engine
(interpret second), and pumps the session when it has outputs. Every
connection event goes to the sink, with both clocks, just before the engine
hears of it, so a replay of the log drives the engine the same way. The
supervisor waits for the active connection to be lost (a standby that takes
over is not a loss) and then holds, reconnects after a delay, backs off, or
stops. Rotations and proactive control are `recorder.control.LinkControl`'s;
the timers (engine ticks, staleness, age, alerts, policies, windows)
`recorder.watch.Watchdogs`'; reporting, hooks and the pump lock
`recorder.plumbing.EdgePlumbing`'s. Connection numbers count opened
connections from 1 (a standby gets its own); events before an open carry 0.
CancelledError always propagates.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
import time
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from apscheduler.triggers.base import BaseTrigger

from recorder.alerts import DisconnectAlert, DisconnectAlerts
from recorder.auth import Credentials
from recorder.control import LinkControl, Policy
from recorder.errors import AuthenticationFailed, HandshakeRejected, PermanentClose, ReconnectGaveUp
from recorder.limits import Limits
from recorder.link import (
    AttemptFailed,
    Intent,
    Link,
    LinkEnd,
    SocketClosed,
    end_of,
    open_link,
)
from recorder.logfilter import WS_LOGGER_NAME, install_redaction
from recorder.plumbing import EdgePlumbing, Hook
from recorder.plumbing import now as _now
from recorder.policies import (
    AttemptLimiter,
    CloseVerdict,
    DisconnectReason,
    ReconnectStrategy,
    RetryPlan,
    Staleness,
    interpret_reconnect_answer,
)
from recorder.sink import Sink
from recorder.stats import LiveStats, frame_type
from recorder.watch import Watchdogs
from schemas.record import Event
from stream.decode import FRAME_TAGS
from stream.events import (
    Checkpoint,
    CloseConnection,
    GapDetected,
    Output,
    ResyncRequested,
    Switched,
)
from stream.session import Session, Source

__all__ = ["LiveSettings", "LiveSource"]

log = logging.getLogger("kalshi_tape.recorder.connection")
#: Decoded frame class -> its envelope type as bytes (the key of `types_received`).
_TYPE_BYTES: Final = {cls: type_.encode() for cls, type_ in FRAME_TAGS.items()}
NS: Final = 1_000_000_000
_R = DisconnectReason


@dataclass(frozen=True)
class LiveSettings:
    """Everything a `LiveSource` needs; built once by `LiveSession`."""

    url: str
    limits: Limits
    credentials: Credentials | None = None
    strategy: ReconnectStrategy = ReconnectStrategy.EXPONENTIAL_BACKOFF
    auto_reconnect: bool = True
    ssl: ssl_module.SSLContext | None = None
    compression: str | None = None
    proxy: str | Literal[True] | None = True
    should_disconnect: Policy | None = None
    should_reconnect: Policy | None = None
    windows: tuple[BaseTrigger, ...] = ()
    on_connect: Hook | None = None
    on_disconnect: Hook | None = None
    on_disconnect_alert: Hook | None = None
    alert_proactive: bool = False
    sink: Sink | None = None


class LiveSource(LinkControl, Watchdogs, EdgePlumbing, Source):
    """Feeds a session's engine from live Kalshi connections (see the module docstring)."""

    owns_wire = True

    def __init__(self, settings: LiveSettings, stats: LiveStats, rng: random.Random) -> None:
        self.settings = settings
        self.limits = lim = settings.limits
        self.stats = stats
        self._url = settings.url
        self._path = urlsplit(settings.url).path or "/"
        install_redaction()
        self._ws_logger = logging.getLogger(WS_LOGGER_NAME)
        EdgePlumbing.__init__(self, settings.sink)
        self._plan = RetryPlan(
            settings.strategy,
            base_s=lim.reconnect_delay_s,
            cap_s=lim.max_reconnect_delay_s,
            max_attempts=lim.max_reconnect_attempts,
            stable_s=lim.stable_connection_s,
            server_unavailable_s=lim.server_unavailable_delay_s,
            rng=rng,
        )
        self._limiter = AttemptLimiter(lim.attempts_per_window, lim.attempt_window_s)
        self._staleness = Staleness(
            floor_s=lim.stale_floor_s,
            multiplier=lim.stale_multiplier,
            min_observations=lim.stale_min_observations,
        )
        self._alerts = DisconnectAlerts(
            lim.disconnect_alert_interval_s, include_proactive=settings.alert_proactive
        )
        self._conns: dict[int, Link] = {}
        self._active: Link | None = None
        self._standby: Link | None = None
        self._next_no = 1
        self._stopping = False
        self._abort = False
        self._wake = asyncio.Event()
        self._skip_wait = False
        self._loss: asyncio.Future[tuple[LinkEnd, bool] | None] | None = None
        self._hold: DisconnectReason | None = None
        self._rotation: asyncio.Task[bool] | None = None
        self._rotation_reason: DisconnectReason = _R.USER_REQUESTED
        self._rotation_retry_ns = 0
        self._timers: set[asyncio.Task[Any]] = set()
        self._last_error: BaseException | str | None = None
        self.final_error: BaseException | None = None

    # ------------------------------------------------------------------ Source

    def now(self) -> tuple[int, int]:
        return _now()

    @property
    def active_conn(self) -> int | None:
        """The number of the connection delivering now, or None."""
        return None if self._active is None else self._active.no

    @property
    def connection_age_s(self) -> float:
        """Seconds the active connection has been open (0.0 when none)."""
        active = self._active
        return 0.0 if active is None else (time.monotonic_ns() - active.opened_mono_ns) / NS

    async def run(self, session: Session) -> None:
        self._session = session
        helpers = [self._spawn(self._housekeeping())]
        if self.settings.should_disconnect is not None:
            helpers.append(self._spawn(self._poll_should_disconnect()))
        helpers += [self._spawn(self._window(trigger)) for trigger in self.settings.windows]
        try:
            await self._supervise()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.final_error = exc
            raise
        finally:
            self._stopping = True
            for task in helpers:
                task.cancel()
            self._cancel_timers()
            await self._shutdown_connections()

    async def send(self, conn: int, raw: bytes) -> None:
        c = self._conns.get(conn)
        if c is None:
            return  # that connection is gone; its state went with it
        recv_ns, mono_ns = _now()
        self._to_sink("command_out", conn, recv_ns, mono_ns, raw)
        # Reported before the write completes: a write may yield (drain), and the reply
        # must never reach the engine before the engine knows the command.
        self._engine.command_sent(raw, recv_ns, mono_ns, conn)
        self.stats.sent(raw, recv_ns)
        try:
            await c.ws.send(raw)
        except SocketClosed:
            pass  # the receive loop reports the close

    async def handle(self, output: Output) -> None:
        match output:
            case Switched(old_conn=old_no, new_conn=new_no, recv_ns=recv_ns, mono_ns=mono_ns):
                self._switched(old_no, new_no, recv_ns, mono_ns)
            case CloseConnection(conn=no):
                c = self._conns.get(no)
                if c is not None:
                    self._spawn(self._close(c, Intent(self._rotation_reason, "abandon")))
            case Checkpoint() as checkpoint:
                if self._sink is not None:
                    try:
                        self._sink.checkpoint(checkpoint)
                    except Exception as exc:
                        self._sink_failed("checkpoint", exc, checkpoint.recv_ns)
            case GapDetected(kind=kind):
                if kind == "gap":
                    self.stats.gaps += 1
                else:
                    self.stats.resets += 1
            case ResyncRequested():
                self.stats.resyncs += 1
            case _:
                pass

    async def stop(self) -> None:
        """End the run: cancel any pending reconnect or rotation, close every socket."""
        self._stopping = True
        self._hold = None
        self._wake.set()
        if self._loss is not None and not self._loss.done():
            self._loss.set_result(None)
        self._cancel_timers()
        for c in list(self._conns.values()):
            if self._abort:
                c.intent = c.intent or Intent(_R.USER_REQUESTED, "stop")
                c.abort()
            else:
                self._spawn(self._close(c, Intent(_R.USER_REQUESTED, "stop")))

    def force(self) -> None:
        """Make the coming stop abort sockets without a close handshake."""
        self._abort = True

    # ------------------------------------------------------------------ the supervisor

    async def _supervise(self) -> None:
        end: LinkEnd | None = None
        reactive = False
        while not self._stopping:
            if self._hold is not None:
                await self._held()
                end, reactive = None, False
                continue
            await self._establish(reactive, end)
            if self._stopping:
                return
            lost = await self._wait_lost()
            if lost is None or self._stopping:
                return
            end, will_reconnect = lost
            intent = end.intent
            if intent is not None and intent.then == "hold":
                self._hold = end.reason
            elif intent is not None and intent.then == "reconnect":
                if intent.after_s > 0:
                    self._emit_wait(intent.after_s, "reconnect_after")
                    await self._wait(intent.after_s)
                reactive = False
            elif end.verdict is CloseVerdict.PERMANENT:
                raise PermanentClose(end.code, end.text)
            elif not self.settings.auto_reconnect:
                self._hold = end.reason
            elif not will_reconnect:
                raise ReconnectGaveUp(self._plan.attempts + 1, self._last_error)
            else:
                reactive = True

    async def _establish(self, reactive: bool, end: LinkEnd | None) -> None:
        """Open the active connection: at once (first or proactive), or after a backoff."""
        verdict = end.verdict if end is not None else CloseVerdict.RETRY
        retry_after: float | None = None
        need_delay = reactive
        while not self._stopping:
            if need_delay:
                delay = await self._retry_delay(verdict, retry_after)
                if delay is None:
                    raise ReconnectGaveUp(self._plan.attempts + 1, self._last_error)
                if delay > 0:
                    unavailable = verdict is CloseVerdict.SERVER_UNAVAILABLE
                    self._emit_wait(delay, "server_unavailable" if unavailable else "backoff")
                    await self._wait(delay)
            await self._rate_limit()
            if self._stopping or self._active is not None:
                return  # stopped, or a rotation's standby took over meanwhile
            try:
                await self._open(standby=False)
                return
            except AttemptFailed as failed:
                verdict, retry_after = failed.verdict, failed.retry_after_s
                will_retry = (
                    not self._stopping
                    and self.settings.auto_reconnect
                    and self._plan.can_retry(verdict)
                )
                await self._attempt_failed(failed, will_retry)
                if self._stopping:
                    return
                if not will_retry:
                    raise self._final_error(failed) from failed.error
                need_delay = True

    async def _retry_delay(self, verdict: CloseVerdict, retry_after: float | None) -> float | None:
        delay = self._plan.next_delay(verdict, retry_after)
        policy = self.settings.should_reconnect
        if delay is None or self.settings.strategy is not ReconnectStrategy.CALLBACK_CONTROLLED:
            return delay
        if policy is None:
            return delay
        while not self._stopping:  # the callback decides when (PROTOCOL-independent policy)
            answer = interpret_reconnect_answer(await self._ask(policy))
            if answer is not None:
                return max(delay, answer)
            await self._wait(self.limits.reconnect_check_interval_s)
        return delay

    def _final_error(self, failed: AttemptFailed) -> Exception:
        status = failed.status
        if failed.verdict is CloseVerdict.PERMANENT and status is not None:
            if status in (401, 403):
                return AuthenticationFailed(status, self._url)
            return HandshakeRejected(status, self._url)
        return ReconnectGaveUp(self._plan.attempts + 1, failed.error)

    async def _held(self) -> None:
        """Stay disconnected until released; poll should_reconnect after a proactive hold."""
        reason = self._hold
        policy = self.settings.should_reconnect
        poll = policy is not None and reason is not None and reason.is_proactive
        while self._hold is not None and not self._stopping:
            if not poll or policy is None:
                await self._wait(3600.0)
                continue
            await self._wait(self.limits.reconnect_check_interval_s)
            if self._hold is None or self._stopping:
                return
            answer = interpret_reconnect_answer(await self._ask(policy))
            if answer is not None:
                if answer > 0:
                    self._emit_wait(answer, "callback")
                    await self._wait(answer)
                self._hold = None

    async def _wait_lost(self) -> tuple[LinkEnd, bool] | None:
        if self._loss is None:
            self._loss = asyncio.get_running_loop().create_future()
        try:
            return await self._loss
        finally:
            self._loss = None

    async def _wait(self, delay_s: float) -> None:
        """Sleep, cut short by stop() or reconnect_now()."""
        if delay_s <= 0 or self._stopping:
            return
        if self._skip_wait:
            self._skip_wait = False
            return
        self._wake.clear()
        try:
            async with asyncio.timeout(delay_s):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._skip_wait = False

    async def _rate_limit(self) -> None:
        """At most attempts_per_window handshakes per window; only stop() cuts this short."""
        while not self._stopping:
            wait_s = self._limiter.wait_s(time.monotonic_ns())
            if wait_s <= 0:
                return
            self._emit_wait(wait_s, "rate_limit")
            self._wake.clear()
            try:
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ one connection

    async def _open(self, *, standby: bool) -> Link:
        recv_ns, mono_ns = _now()
        self._limiter.record(mono_ns)
        self.stats.attempt()
        self._emit(
            0,
            recv_ns,
            mono_ns,
            Event.ATTEMPT,
            url=self._url,
            attempt=self._plan.attempts + 1,
            standby=standby,
        )
        self._engine.connection_attempt(recv_ns, mono_ns)
        await self._pump()
        ws = await open_link(
            self._url,
            self._path,
            self.limits,
            credentials=self.settings.credentials,
            ssl=self.settings.ssl,
            compression=self.settings.compression,
            proxy=self.settings.proxy,
            logger=self._ws_logger,
        )
        if not standby and self._active is not None:
            await ws.close(1000, "kalshi-tape: not needed")  # a standby took over meanwhile
            return self._active
        recv_ns, mono_ns = _now()
        no = self._next_no
        self._next_no += 1
        is_standby = standby and self._active is not None
        c = Link(no, ws, mono_ns)
        self._conns[no] = c
        self._emit(no, recv_ns, mono_ns, Event.OPEN, url=self._url, standby=is_standby)
        self._engine.connection_opened(no, recv_ns, mono_ns, standby=is_standby)
        self.stats.connected(recv_ns, mono_ns, active=not is_standby)
        if is_standby:
            self._standby = c
        else:
            self._active = c
        c.reader = self._spawn(self._read(c))
        await self._pump()
        await self._hook(self.settings.on_connect, no)
        return c

    async def _attempt_failed(self, failed: AttemptFailed, will_retry: bool) -> None:
        recv_ns, mono_ns = _now()
        self.stats.attempt_failed()
        self._last_error = failed.error
        text = f"{type(failed.error).__name__}: {failed.error}"
        self._emit(0, recv_ns, mono_ns, Event.ERROR, error=text, will_retry=will_retry)
        self._engine.attempt_failed(recv_ns, mono_ns, will_retry=will_retry)
        self._report("connection_error", f"connection attempt failed: {text}", recv_ns)
        await self._pump()

    async def _read(self, c: Link) -> None:
        """The receive loop of one connection: bytes in, stamped, written, interpreted.

        It does only what must happen per frame, in this order: stamp both clocks,
        count, hand the bytes to the sink (write first; the sink's decode is reused),
        feed the engine, and pump only when the engine or a callback has work.
        """
        ws, no = c.ws, c.no
        session = self._session
        assert session is not None
        feed = self._engine.frame_received
        outbox, blocking, callbacks = session.pump_signals()
        stats = self.stats
        types = stats.types_received
        sink = self._sink
        time_ns, mono = time.time_ns, time.monotonic_ns
        received = 0
        try:
            while True:
                raw, _binary = await ws.recv()  # bytes: bad UTF-8 must not close the socket
                received += 1
                if not received & 63:
                    # recv() does not suspend while frames are buffered: without this, a
                    # burst would run through before any consumer task got a turn.
                    await asyncio.sleep(0)
                recv_ns = time_ns()
                mono_ns = mono()
                stats.messages_received += 1
                stats.bytes_received += len(raw)
                stats.last_message_ns = recv_ns
                decoded = None
                if sink is not None:
                    try:
                        decoded = sink.frame_in(no, recv_ns, mono_ns, raw)
                    except Exception as exc:
                        self._sink_failed("frame_in", exc, recv_ns)
                if decoded is None:
                    types[frame_type(raw)] += 1
                else:
                    types[_TYPE_BYTES[type(decoded)]] += 1
                feed(raw, recv_ns, mono_ns, no, decoded)
                if outbox or blocking or callbacks:
                    await self._pump()
        except SocketClosed as exc:
            end = end_of(c, exc)
        except asyncio.CancelledError:
            c.abort()
            cancelled = LinkEnd(_R.USER_REQUESTED, 1006, "cancelled", "client", CloseVerdict.RETRY)
            self._ended_now(c, cancelled)
            raise
        except Exception as exc:  # a bug past the engine's guards: drop this socket, go on
            log.exception("receive loop of connection %d failed", no)
            self._report("internal_error", f"receive loop failed: {exc!r}", time.time_ns(), no)
            c.abort()
            c.intent = c.intent or Intent(_R.PROTOCOL_ERROR, "react")
            verdict = CloseVerdict.RETRY
            end = LinkEnd(_R.PROTOCOL_ERROR, 1011, repr(exc), "client", verdict, c.intent, exc)
        await self._ended(c, end)

    def _ended_now(self, c: Link, end: LinkEnd) -> tuple[bool, bool, DisconnectAlert | None]:
        """Report a connection's end to the sink and the engine (synchronously, exactly once).

        Returns (the active connection was lost with nothing to take over, will_reconnect, alert).
        """
        if self._conns.pop(c.no, None) is None:
            return False, False, None
        recv_ns, mono_ns = _now()
        lived_s = (mono_ns - c.opened_mono_ns) / NS
        was_active = c is self._active
        if c is self._standby:
            self._standby = None
        lost = False
        if was_active:
            self._active, self._standby = self._standby, None  # a standby takes over at once
            lost = self._active is None
            self.stats.active_changed(None if lost else self._active.opened_mono_ns)  # type: ignore[union-attr]
        will_reconnect = self._decide(end, lost, lived_s)
        self._emit(
            c.no,
            recv_ns,
            mono_ns,
            Event.CLOSE,
            code=end.code,
            reason=end.text,
            disconnect_reason=end.reason.value,
            will_reconnect=will_reconnect,
            initiator=end.initiator,
        )
        self._engine.connection_closed(
            c.no, recv_ns, mono_ns, code=end.code, reason=end.text, will_reconnect=will_reconnect
        )
        self.stats.disconnected(end.reason, end.code, recv_ns)
        if end.reason.is_reactive and end.intent is None:
            self._last_error = end.error or end.text
            self._report(
                "connection_lost",
                f"connection {c.no} lost ({end.reason.value}, code {end.code}: {end.text})",
                recv_ns,
                c.no,
                code=end.code,
            )
        c.ended.set()
        c.settled.set()
        if self._active is not None:
            self._active.settled.set()
        if lost:
            if self._loss is None:
                self._loss = asyncio.get_running_loop().create_future()
            if not self._loss.done():
                self._loss.set_result((end, will_reconnect))
        return lost, will_reconnect, self._alerts.record(end.reason, mono_ns)

    async def _ended(self, c: Link, end: LinkEnd) -> None:
        _, _, alert = self._ended_now(c, end)
        await self._pump()
        await self._hook(self.settings.on_disconnect, end.reason)
        if alert is not None:
            await self._hook(self.settings.on_disconnect_alert, alert)

    def _decide(self, end: LinkEnd, lost_active: bool, lived_s: float) -> bool:
        """Whether the session will connect again after this end (for the engine's state)."""
        if self._stopping:
            return False
        if not lost_active:
            return True
        self._plan.connection_lost(lived_s)
        intent = end.intent
        if intent is not None and intent.then in ("hold", "stop"):
            return False
        if intent is not None and intent.then == "reconnect":
            return True
        return self.settings.auto_reconnect and self._plan.can_retry(end.verdict)

    async def _close(self, c: Link, intent: Intent, code: int = 1000) -> None:
        """Close one connection on purpose (the close handshake, then abort after close_timeout)."""
        if c.intent is None:
            c.intent = intent
        try:
            await c.ws.close(code, f"kalshi-tape: {intent.reason.value}")
        except asyncio.CancelledError:
            c.abort()
            raise
        except Exception:
            c.abort()

    async def _shutdown_connections(self) -> None:
        conns = list(self._conns.values())
        for c in conns:
            c.intent = c.intent or Intent(_R.USER_REQUESTED, "stop")
            if self._abort:
                c.abort()
            else:
                self._spawn(self._close(c, c.intent))
        readers = [c.reader for c in conns if c.reader is not None]
        if readers:
            _, pending = await asyncio.wait(readers, timeout=self.limits.close_timeout_s + 1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    def _emit_wait(self, delay_s: float, reason: str) -> None:
        recv_ns, mono_ns = _now()
        self._emit(
            0,
            recv_ns,
            mono_ns,
            Event.RECONNECT_WAIT,
            delay_s=round(delay_s, 6),
            attempt=self._plan.attempts,
            reason=reason,
        )
