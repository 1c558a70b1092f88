"""The live connection manager: the `stream.Source` of a `LiveSession`.

This module owns the sockets and the receive loops. `LiveSource` is one object
that owns its collaborators, each with its own module and interface:

    Links         recorder.link.opener       the run's connections: active, standby
    Plumbing      recorder.link.plumbing   the sink, reports, hooks, the pump lock, tasks
    LinkControl   recorder.link.control    proactive control: disconnect, rotate, kill, timers
    Watchdogs     recorder.link.watch      engine ticks, staleness, age, alerts, windows
    LinkState     recorder.link.lifecycle  the reconnect lifecycle: state, table, `step`

Theory of operation. The supervisor is our own loop (never a library's
reconnecting iterator, whose backoff resets on every opened connection and
storms). It keeps one `LinkState` and carries out the action `lifecycle.step`
decides for each event: open a connection (`recorder.link.opener`, freshly signed
headers every attempt), serve it, wait a backoff (`recorder.link.policies`: full
jitter, the attempt rate limit, 1013 and HTTP 429/503, the stable-connection
reset) or a requested delay, hold, or give up with the last error, which ends
every iterator and reaches `on_error`. The loss of the active connection is
decided once, when its receive loop ends: the decision says whether the session
will reconnect (recorded with the close event) and what the supervisor does.

Each receive loop reads whole messages as bytes, stamps both clocks, counts
them, hands them to the sink (write first), then to the engine (interpret
second), and pumps the session when it has outputs. Every connection event goes
to the sink, with both clocks, just before the engine hears of it, so a replay
of the log drives the engine the same way. The engine's requests are carried
out here (`Switched`: close the old connection; `CloseConnection`: drop a
standby). Connection numbers count opened connections from 1 (a standby gets
its own); events before an open carry 0. CancelledError always propagates.

Sockets come from an opener (`LinkOpener`, `recorder.link.opener.open_link` by default):
tests may pass one that makes in-memory links, as httpx takes a transport.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Final, Literal
from urllib.parse import urlsplit

from apscheduler.triggers.base import BaseTrigger

from recorder.errors import AuthenticationFailed, HandshakeRejected, PermanentClose, ReconnectGaveUp
from recorder.link.alerts import DisconnectAlert, DisconnectAlerts
from recorder.link.auth import Credentials
from recorder.link.control import LinkControl
from recorder.link.lifecycle import (
    Action,
    Backoff,
    Connect,
    Fail,
    Finish,
    GaveUp,
    Hold,
    LinkState,
    Lost,
    Opened,
    Released,
    Serve,
    Start,
    Stop,
    WaitOver,
    WaitThenConnect,
    step,
    will_reconnect,
)
from recorder.link.lifecycle import AttemptFailed as AttemptFailedEvent
from recorder.link.lifecycle import Event as LinkEvent
from recorder.link.limits import Limits
from recorder.link.logfilter import WS_LOGGER_NAME, install_redaction
from recorder.link.opener import (
    AttemptFailed,
    Intent,
    Link,
    LinkEnd,
    Links,
    SocketClosed,
    end_of,
    open_link,
)
from recorder.link.plumbing import Hook, Plumbing, Policy, PumpGate, now
from recorder.link.policies import (
    AttemptLimiter,
    CloseVerdict,
    DisconnectReason,
    ReconnectStrategy,
    RetryPlan,
    interpret_reconnect_answer,
)
from recorder.link.sink import Sink
from recorder.link.sockets import Socket
from recorder.link.stats import LiveStats, frame_type
from recorder.link.watch import Watchdogs
from schemas import events as recorded
from stream.decode import FRAME_TAGS
from stream.events import (
    BinaryMessage,
    Checkpoint,
    CloseConnection,
    GapDetected,
    Output,
    ResyncRequested,
    Switched,
)
from stream.session import Session, Source

__all__ = ["LinkOpener", "LiveSettings", "LiveSource"]

log = logging.getLogger("kalshi_tape.recorder.connection")
NS: Final = 1_000_000_000
_R = DisconnectReason
#: Decoded frame class -> its envelope type as bytes (the key of `types_received`).
_TYPE_BYTES: Final = {cls: type_.encode() for cls, type_ in FRAME_TAGS.items()}

#: Opens one connection: (url, path, limits, credentials=, ssl=, compression=, proxy=,
#: logger=) -> a `recorder.link.sockets.Socket`, raising `recorder.link.opener.AttemptFailed`.
LinkOpener = Callable[..., Awaitable[Socket]]


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
    opener: LinkOpener = open_link
    #: Which feed of a redundant session this source is (`recorder.link.feeds`): its
    #: engine group, the `feed` of every record it writes.
    feed: int = 0
    #: The local IP address its connections are made from (None: the system's choice).
    local_address: str | None = None


class LiveSource(Source):
    """Feeds a session's engine from live Kalshi connections (see the module docstring)."""

    owns_wire = True

    def __init__(
        self,
        settings: LiveSettings,
        stats: LiveStats,
        rng: random.Random,
        *,
        numbers: Iterator[int] | None = None,
        gate: PumpGate | None = None,
    ) -> None:
        """`numbers` and `gate`: the connection numbers and the pump the feeds of one
        session share (`recorder.link.feeds`); a single feed makes its own."""
        self.settings = settings
        self.feed = feed = settings.feed
        self.limits = lim = settings.limits
        self.stats = stats
        self._url = settings.url
        self._path = urlsplit(settings.url).path or "/"
        install_redaction()
        self._ws_logger = logging.getLogger(WS_LOGGER_NAME)
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
        self._alerts = DisconnectAlerts(
            lim.disconnect_alert_interval_s, include_proactive=settings.alert_proactive
        )
        self.links = Links(numbers)
        self.plumbing = Plumbing(settings.sink, feed=feed, gate=gate)
        self.control = LinkControl(self, self.links, self.plumbing, lim, stats)
        self.watchdogs = Watchdogs(
            self.control, self.links, self.plumbing, lim, stats, self._alerts,
            settings.on_disconnect_alert,
        )  # fmt: skip
        self.link_state = LinkState.IDLE
        self._wake = asyncio.Event()
        self._skip_wait = False
        #: The action decided when the active link was lost (None: the run stops).
        self._loss: asyncio.Future[Action | None] | None = None
        self._hold: DisconnectReason | None = None
        self._last_failure: AttemptFailed | None = None
        self._last_error: BaseException | str | None = None
        self.final_error: BaseException | None = None

    # ------------------------------------------------------------------ Source

    def now(self) -> tuple[int, int]:
        return now()

    @property
    def active_conn(self) -> int | None:
        """The number of the connection delivering now, or None."""
        active = self.links.active
        return None if active is None else active.no

    @property
    def connection_age_s(self) -> float:
        """Seconds the active connection has been open (0.0 when none)."""
        active = self.links.active
        return 0.0 if active is None else (time.monotonic_ns() - active.opened_mono_ns) / NS

    async def run(self, session: Session) -> None:
        self.plumbing.session = session
        spawn, dogs = self.plumbing.spawn, self.watchdogs
        helpers = [spawn(dogs.housekeeping())]
        if self.settings.should_disconnect is not None:
            helpers.append(spawn(dogs.poll_should_disconnect(self.settings.should_disconnect)))
        helpers += [spawn(dogs.window(trigger)) for trigger in self.settings.windows]
        try:
            await self._supervise()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.final_error = exc
            raise
        finally:
            self.links.stopping = True
            for task in helpers:
                task.cancel()
            self.control.cancel_timers()
            await self._shutdown_connections()

    async def send(self, conn: int, raw: bytes) -> None:
        c = self.links.conns.get(conn)
        if c is None:
            return  # that connection is gone; its state went with it
        recv_ns, mono_ns = now()
        self.plumbing.command_out(conn, recv_ns, mono_ns, raw)
        # Reported before the write completes: a write may yield (drain), and the reply
        # must never reach the engine before the engine knows the command.
        self.plumbing.engine.command_sent(raw, recv_ns, mono_ns, conn)
        self.stats.sent(raw, recv_ns)
        try:
            await c.ws.send(raw)
        except SocketClosed:
            pass  # the receive loop reports the close

    async def handle(self, output: Output) -> None:
        match output:
            case Switched(old_conn=old_no, new_conn=new_no, recv_ns=recv_ns, mono_ns=mono_ns):
                self.control.switched(old_no, new_no, recv_ns, mono_ns)
            case CloseConnection(conn=no):
                c = self.links.conns.get(no)
                if c is not None:
                    intent = Intent(self.control.rotation_reason, "abandon")
                    self.plumbing.spawn(self.close(c, intent))
            case Checkpoint() as checkpoint:
                sink = self.plumbing.sink
                if sink is not None:
                    try:
                        sink.checkpoint(checkpoint)
                    except Exception as exc:
                        self.plumbing.sink_failed("checkpoint", exc, checkpoint.recv_ns)
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
        links = self.links
        links.stopping = True
        self._hold = None
        self._wake.set()
        if self._loss is not None and not self._loss.done():
            self._loss.set_result(None)
        self.control.cancel_timers()
        for c in list(links.conns.values()):
            if links.abort:
                c.intent = c.intent or Intent(_R.USER_REQUESTED, "stop")
                c.abort()
            else:
                self.plumbing.spawn(self.close(c, Intent(_R.USER_REQUESTED, "stop")))

    def force(self) -> None:
        """Make the coming stop abort sockets without a close handshake."""
        self.links.abort = True

    def reconnect_now(self) -> None:
        """Leave a hold, or cut a backoff wait short."""
        self._hold = None
        if self.links.active is None:
            self._skip_wait = True
            self._wake.set()

    # ------------------------------------------------------------------ the supervisor

    def _advance(self, event: LinkEvent) -> Action:
        """One step of the lifecycle: the new state, and the action to carry out."""
        self.link_state, action = step(self.link_state, event)
        return action

    async def _supervise(self) -> None:
        """Carry out the lifecycle's actions until it finishes (see the module docstring)."""
        action = self._advance(Start())
        while not isinstance(action, Finish):
            if isinstance(action, Connect):
                action = await self._connect()
            elif isinstance(action, Serve):
                decided = await self._wait_lost()
                action = decided if decided is not None else self._advance(Stop())
            elif isinstance(action, WaitThenConnect):
                self._emit_wait(action.delay_s, "reconnect_after")
                await self._wait(action.delay_s)
                action = self._advance(Stop() if self.links.stopping else WaitOver())
            elif isinstance(action, Backoff):
                action = await self._backoff(action)
            elif isinstance(action, Hold):
                self._hold = action.reason
                await self._held()
                action = self._advance(Stop() if self.links.stopping else Released())
            elif isinstance(action, Fail):
                raise self._failure(action)

    async def _connect(self) -> Action:
        """One connection attempt (the rate limit first); its outcome, as the next action."""
        await self._rate_limit()
        if self.links.stopping:
            return self._advance(Stop())
        if self.links.active is not None:
            return self._advance(Opened())  # a rotation's standby took over meanwhile
        try:
            await self._open(standby=False)  # advances to OPEN as the link becomes active
        except AttemptFailed as failed:
            stopping = self.links.stopping
            may_retry = self.settings.auto_reconnect and self._plan.can_retry(failed.verdict)
            self._last_failure = failed
            await self.attempt_failed(failed, will_retry=may_retry and not stopping)
            event = AttemptFailedEvent(failed.verdict, failed.retry_after_s, may_retry, stopping)
            return self._advance(event)
        return Serve()

    async def _backoff(self, action: Backoff) -> Action:
        """Wait the retry plan's delay (the policy's, if it controls reconnects)."""
        delay = await self._retry_delay(action.verdict, action.retry_after_s)
        if delay is None:
            return self._advance(GaveUp())
        if delay > 0:
            unavailable = action.verdict is CloseVerdict.SERVER_UNAVAILABLE
            self._emit_wait(delay, "server_unavailable" if unavailable else "backoff")
            await self._wait(delay)
        return self._advance(Stop() if self.links.stopping else WaitOver())

    async def _retry_delay(self, verdict: CloseVerdict, retry_after: float | None) -> float | None:
        delay = self._plan.next_delay(verdict, retry_after)
        policy = self.settings.should_reconnect
        if delay is None or self.settings.strategy is not ReconnectStrategy.CALLBACK_CONTROLLED:
            return delay
        if policy is None:
            return delay
        while not self.links.stopping:  # the callback decides when
            answer = interpret_reconnect_answer(await self.plumbing.ask(policy))
            if answer is not None:
                return max(delay, answer)
            await self._wait(self.limits.reconnect_check_interval_s)
        return delay

    def _failure(self, fail: Fail) -> Exception:
        """The error a failed lifecycle ends the session with: the last attempt's (a
        refused key, a rejected upgrade, no retry left), or the lost connection's."""
        failed = self._last_failure
        if failed is not None:
            status = failed.status
            if failed.verdict is CloseVerdict.PERMANENT and status is not None:
                if status in (401, 403):
                    return AuthenticationFailed(status, self._url)
                return HandshakeRejected(status, self._url)
            return ReconnectGaveUp(self._plan.attempts + 1, failed.error)
        if fail.permanent:
            return PermanentClose(fail.code, fail.text)
        return ReconnectGaveUp(self._plan.attempts + 1, self._last_error)

    async def _held(self) -> None:
        """Stay disconnected until released; poll should_reconnect after a proactive hold."""
        reason = self._hold
        policy = self.settings.should_reconnect
        poll = policy is not None and reason is not None and reason.is_proactive
        while self._hold is not None and not self.links.stopping:
            if not poll or policy is None:
                await self._wait(3600.0)
                continue
            await self._wait(self.limits.reconnect_check_interval_s)
            if self._hold is None or self.links.stopping:
                return
            answer = interpret_reconnect_answer(await self.plumbing.ask(policy))
            if answer is not None:
                if answer > 0:
                    self._emit_wait(answer, "callback")
                    await self._wait(answer)
                self._hold = None

    async def _wait_lost(self) -> Action | None:
        if self._loss is None:
            self._loss = asyncio.get_running_loop().create_future()
        try:
            return await self._loss
        finally:
            self._loss = None

    async def _wait(self, delay_s: float) -> None:
        """Sleep, cut short by stop() or reconnect_now()."""
        if delay_s <= 0 or self.links.stopping:
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

    async def rate_limit(self) -> None:
        """At most attempts_per_window handshakes per window; only stop() cuts this short."""
        await self._rate_limit()

    async def _rate_limit(self) -> None:
        while not self.links.stopping:
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

    async def open_standby(self) -> Link:
        """A make-before-break standby (or the active link, if the old one ended meanwhile)."""
        return await self._open(standby=True)

    async def _open(self, *, standby: bool) -> Link:
        links, plumbing = self.links, self.plumbing
        recv_ns, mono_ns = now()
        self._limiter.record(mono_ns)
        self.stats.attempt()
        plumbing.emit(
            0, recv_ns, mono_ns,
            recorded.Attempt(url=self._url, attempt=self._plan.attempts + 1, standby=standby),
        )  # fmt: skip
        plumbing.engine.connection_attempt(recv_ns, mono_ns, group=self.feed, feed=self.feed)
        await plumbing.pump()
        ws = await self.settings.opener(
            self._url,
            self._path,
            self.limits,
            credentials=self.settings.credentials,
            ssl=self.settings.ssl,
            compression=self.settings.compression,
            proxy=self.settings.proxy,
            logger=self._ws_logger,
            **({"local_address": self.settings.local_address}
               if self.settings.local_address else {}),
        )  # fmt: skip
        if not standby and links.active is not None:
            await ws.close(1000, "kalshi-tape: not needed")  # a standby took over meanwhile
            return links.active
        recv_ns, mono_ns = now()
        no = links.number()
        is_standby = standby and links.active is not None
        c = Link(no, ws, mono_ns)
        links.conns[no] = c
        plumbing.emit(no, recv_ns, mono_ns, recorded.Opened(url=self._url, standby=is_standby))
        plumbing.engine.connection_opened(
            no, recv_ns, mono_ns, standby=is_standby, group=self.feed, feed=self.feed
        )
        self.stats.connected(recv_ns, mono_ns, active=not is_standby)
        if is_standby:
            links.standby = c
        else:
            links.active = c
            self._last_failure = None
            if self.link_state is LinkState.CONNECTING:
                self._advance(Opened())
        c.reader = plumbing.spawn(self._read(c))
        await plumbing.pump()
        await plumbing.hook(self.settings.on_connect, no)
        return c

    async def attempt_failed(self, failed: AttemptFailed, will_retry: bool) -> None:
        """Record a failed handshake: an `error` event, the engine, `on_error`."""
        recv_ns, mono_ns = now()
        self.stats.attempt_failed()
        self._last_error = failed.error
        text = f"{type(failed.error).__name__}: {failed.error}"
        failure = recorded.AttemptFailed(error=text, will_retry=will_retry)
        self.plumbing.emit(0, recv_ns, mono_ns, failure)
        self.plumbing.engine.attempt_failed(
            recv_ns, mono_ns, will_retry=will_retry, group=self.feed, feed=self.feed
        )
        self.plumbing.report("connection_error", f"connection attempt failed: {text}", recv_ns)
        await self.plumbing.pump()

    async def _read(self, c: Link) -> None:
        """The receive loop of one connection: bytes in, stamped, written, interpreted.

        It does only what must happen per frame, in this order: stamp both clocks,
        count, hand the bytes to the sink (write first; the sink's decode is reused),
        feed the engine, and pump only when the engine or a callback has work.
        """
        ws, no = c.ws, c.no
        plumbing = self.plumbing
        session = plumbing.session
        assert session is not None
        feed = session.engine.frame_received
        outbox, blocking, callbacks = session.pump_signals()
        stats = self.stats
        types = stats.types_received
        sink = plumbing.sink
        frame_in = None
        if sink is not None:
            frame_in = sink.frame_in if not self.feed else partial(sink.frame_in, feed=self.feed)
        time_ns, mono = time.time_ns, time.monotonic_ns
        received = 0
        try:
            while True:
                raw, binary = await ws.recv()  # bytes: bad UTF-8 must not close the socket
                if binary:  # the opcode travels with the bytes (rare: Kalshi sends text)
                    raw = BinaryMessage(raw)
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
                if frame_in is not None:
                    try:
                        decoded = frame_in(no, recv_ns, mono_ns, raw)
                    except Exception as exc:
                        plumbing.sink_failed("frame_in", exc, recv_ns)
                if decoded is None:
                    types[frame_type(raw)] += 1
                else:
                    types[_TYPE_BYTES[type(decoded)]] += 1
                feed(raw, recv_ns, mono_ns, no, decoded)
                if outbox or blocking or callbacks:
                    await plumbing.pump()
        except SocketClosed as exc:
            end = end_of(c, exc)
        except asyncio.CancelledError:
            c.abort()
            cancelled = LinkEnd(_R.USER_REQUESTED, 1006, "cancelled", "client", CloseVerdict.RETRY)
            self._ended_now(c, cancelled)
            raise
        except Exception as exc:  # a bug past the engine's guards: drop this socket, go on
            log.exception("receive loop of connection %d failed", no)
            plumbing.report("internal_error", f"receive loop failed: {exc!r}", time.time_ns(), no)
            c.abort()
            c.intent = c.intent or Intent(_R.PROTOCOL_ERROR, "react")
            verdict = CloseVerdict.RETRY
            end = LinkEnd(_R.PROTOCOL_ERROR, 1011, repr(exc), "client", verdict, c.intent, exc)
        await self._ended(c, end)

    def _ended_now(self, c: Link, end: LinkEnd) -> DisconnectAlert | None:
        """Report a connection's end to the sink and the engine (synchronously, exactly once).

        The loss of the active connection, with nothing to take over, is decided here,
        once (`lifecycle.step`): whether the session reconnects is recorded with the
        close, and the supervisor carries out the same decision. Returns an alert to
        send, if one is due.
        """
        links = self.links
        if links.conns.pop(c.no, None) is None:
            return None
        recv_ns, mono_ns = now()
        lived_s = (mono_ns - c.opened_mono_ns) / NS
        was_active = c is links.active
        if c is links.standby:
            links.standby = None
        lost = False
        if was_active:
            links.active, links.standby = links.standby, None  # a standby takes over at once
            lost = links.active is None
            self.stats.active_changed(None if lost else links.active.opened_mono_ns)  # type: ignore[union-attr]
        decided: Action | None = None
        if lost and self.link_state is LinkState.OPEN:
            if not links.stopping:
                self._plan.connection_lost(lived_s)
            may_retry = self._plan.can_retry(end.verdict)
            lost_event = Lost(end, self.settings.auto_reconnect, may_retry, links.stopping)
            decided = self._advance(lost_event)
            reconnects = will_reconnect(decided)
        else:
            reconnects = not links.stopping
        self.plumbing.emit(c.no, recv_ns, mono_ns, recorded.Closed(
            code=end.code, reason=end.text, disconnect_reason=end.reason.value,
            will_reconnect=reconnects, initiator=end.initiator,
        ))  # fmt: skip
        self.plumbing.engine.connection_closed(
            c.no, recv_ns, mono_ns, code=end.code, reason=end.text, will_reconnect=reconnects
        )
        self.stats.disconnected(end.reason, end.code, recv_ns)
        if end.reason.is_reactive and end.intent is None:
            self._last_error = end.error or end.text
            self.plumbing.report(
                "connection_lost",
                f"connection {c.no} lost ({end.reason.value}, code {end.code}: {end.text})",
                recv_ns,
                c.no,
                code=end.code,
            )
        c.ended.set()
        c.settled.set()
        if links.active is not None:
            links.active.settled.set()
        if decided is not None:
            if self._loss is None:
                self._loss = asyncio.get_running_loop().create_future()
            if not self._loss.done():
                self._loss.set_result(decided)
        return self._alerts.record(end.reason, mono_ns)

    async def _ended(self, c: Link, end: LinkEnd) -> None:
        alert = self._ended_now(c, end)
        await self.plumbing.pump()
        await self.plumbing.hook(self.settings.on_disconnect, end.reason)
        if alert is not None:
            await self.plumbing.hook(self.settings.on_disconnect_alert, alert)

    async def close(self, c: Link, intent: Intent, code: int = 1000) -> None:
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
        links, plumbing = self.links, self.plumbing
        conns = list(links.conns.values())
        for c in conns:
            c.intent = c.intent or Intent(_R.USER_REQUESTED, "stop")
            if links.abort:
                c.abort()
            else:
                plumbing.spawn(self.close(c, c.intent))
        readers = [c.reader for c in conns if c.reader is not None]
        if readers:
            _, pending = await asyncio.wait(readers, timeout=self.limits.close_timeout_s + 1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for task in list(plumbing.tasks):
            if task is not asyncio.current_task():
                task.cancel()

    def _emit_wait(self, delay_s: float, reason: str) -> None:
        recv_ns, mono_ns = now()
        self.plumbing.emit(0, recv_ns, mono_ns, recorded.ReconnectWait(
            delay_s=round(delay_s, 6), attempt=self._plan.attempts, reason=reason
        ))  # fmt: skip

    def emit(self, conn: int, recv_ns: int, mono_ns: int, event: recorded.ConnectionEvent) -> None:
        """Write a connection event to the sink (LiveSession writes `state` events here)."""
        self.plumbing.emit(conn, recv_ns, mono_ns, event)
