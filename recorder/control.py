"""Proactive connection control: the methods a `LiveSession` adds to the Session API.

This module owns what a user can ask of a live connection beyond subscribing:
disconnect now and hold, or come back after a delay (`request_disconnect`), a
make-before-break rotation (`rotate`, or `request_disconnect(reconnect_after=0)`),
a scheduled reconnect (`schedule_reconnect`), waiting for a reconnect window,
a simulated reactive drop (`kill`), and the liveness properties (`is_dead`,
`is_recoverable`, `wait_connected`...). It also owns how policy callbacks are
called (sync or async alike: `call_policy`), the cron reconnect windows
(APScheduler triggers), and the socket side of all this (`LinkControl`, mixed
into `recorder.connection.LiveSource`: disconnects, make-before-break rotations,
kill, scheduled reconnects). The reconnect loop is `recorder.connection`'s; the
lifecycle (`close`, `shutdown`, `force_close`) is `recorder.live`'s.

Semantics, per method:
    request_disconnect(reconnect_after=None)  close now (code 1000), DISCONNECTED,
        iterators stay open; `should_reconnect`, `schedule_reconnect`, a window or
        `reconnect()` brings it back (with fresh snapshots).
    request_disconnect(reconnect_after=X > 0) close now, reconnect after X seconds
        (the gap is what was asked for).
    request_disconnect(reconnect_after=0) == rotate(): no gap, no lost frame.
    schedule_reconnect(d)  connected: rotate in d seconds; held: reconnect in d.
    kill()  abort the socket (no close frame) as a network drop would; KILLED is
        reactive: it reconnects with backoff unless auto_reconnect is off.
"""

# mypy: disable-error-code="misc"
# (the LinkControl methods are typed `self: LiveSource`, the class they are mixed into)
from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from recorder.link import AttemptFailed, Intent, Link
from recorder.policies import DisconnectReason, interpret_reconnect_answer
from schemas.errors import ConfigError
from schemas.record import Event
from stream.state import ConnectionState

if TYPE_CHECKING:
    from recorder.connection import LiveSource

__all__ = [
    "LinkControl",
    "Policy",
    "ProactiveControl",
    "call_policy",
    "next_window",
    "parse_windows",
]

#: A should_disconnect / should_reconnect callback: no arguments, sync or async.
Policy = Callable[[], Any]
NS: Final = 1_000_000_000
_R = DisconnectReason
_S = ConnectionState
_CONNECTED = (_S.CONNECTED, _S.STREAMING)


async def call_policy(fn: Policy) -> Any:
    """Call a policy callback and await its result if it is awaitable (sync or async alike)."""
    result = fn()
    if inspect.isawaitable(result):
        result = await result
    return result


def parse_windows(
    windows: Iterable[str | BaseTrigger], timezone: str = "UTC"
) -> tuple[BaseTrigger, ...]:
    """Crontab strings ("0 4 * * *") or APScheduler triggers, as triggers.

    Raises:
        ConfigError: a crontab string that does not parse, naming it.
    """
    triggers = []
    for window in windows:
        if isinstance(window, BaseTrigger):
            triggers.append(window)
            continue
        try:
            triggers.append(CronTrigger.from_crontab(window, timezone=timezone))
        except ValueError as exc:
            raise ConfigError(
                "reconnect_windows",
                f"{window!r} is not a crontab expression ({exc})",
                "write five fields: minute hour day month weekday, e.g. '0 4 * * *'",
            ) from None
    return tuple(triggers)


def next_window(
    trigger: BaseTrigger, previous: dt.datetime | None, now: dt.datetime
) -> dt.datetime | None:
    """The trigger's next fire time after `previous`; windows missed by more than a second
    (the machine slept, the clock stepped) are skipped rather than fired in a burst."""
    fire: dt.datetime | None = trigger.get_next_fire_time(previous, now)
    if fire is not None and (now - fire).total_seconds() > 1.0:
        fire = trigger.get_next_fire_time(None, now)
    return fire


class ProactiveControl:
    """Proactive control methods; mixed into `recorder.live.LiveSession`."""

    _live: LiveSource
    _shut: bool
    _state_evt: asyncio.Event
    should_reconnect: Policy | None
    state: ConnectionState  # stream.Session's property

    # ------------------------------------------------------------------ properties

    @property
    def is_connected(self) -> bool:
        """True while a connection is open (CONNECTED or STREAMING)."""
        return self.state in _CONNECTED

    @property
    def is_dead(self) -> bool:
        """True when not connected and not trying to (DISCONNECTED or CLOSED)."""
        return self.state in (_S.DISCONNECTED, _S.CLOSED)

    @property
    def is_shutdown(self) -> bool:
        """True after shutdown() or force_close(): this object will not connect again."""
        return self._shut

    @property
    def is_recoverable(self) -> bool:
        """Dead but not shut down: a watchdog may call `reconnect()` or `open()`."""
        return self.is_dead and not self._shut

    # ------------------------------------------------------------------ disconnect and reconnect

    async def request_disconnect(
        self,
        *,
        reconnect_after: float | None = None,
        reason: DisconnectReason = DisconnectReason.USER_REQUESTED,
    ) -> bool:
        """Disconnect on purpose (a proactive reason); see the module docstring.

        Returns:
            False if there was no open connection (nothing happened), else True.
        """
        if not reason.is_proactive:
            raise ValueError(f"{reason} is a reactive reason; use kill() to simulate a drop")
        if reconnect_after is not None and reconnect_after < 0:
            raise ValueError("reconnect_after must be >= 0 seconds, or None")
        if reconnect_after == 0:
            return await self._live.rotate(reason)
        return await self._live.disconnect(reason, reconnect_after)

    async def rotate(self, reason: DisconnectReason = DisconnectReason.USER_REQUESTED) -> bool:
        """Replace the connection make-before-break: open and subscribe a new one, switch
        once its snapshots are in, then close the old one. No frame is lost.

        Returns:
            True if the switch happened, False if not connected or the new connection
            could not be made ready (the old one stays; a stale one is replaced reactively).
        """
        return await self._live.rotate(reason)

    async def schedule_reconnect(
        self, delay_s: float, reason: DisconnectReason = DisconnectReason.SCHEDULED
    ) -> None:
        """In `delay_s`: rotate if connected, reconnect if held disconnected. Returns at once;
        `close()` cancels it."""
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self._live.schedule(delay_s, reason)

    async def reconnect(self) -> None:
        """Reconnect now if disconnected (held, or waiting out a backoff); no-op if connected."""
        self._live.reconnect_now()

    async def kill(self) -> None:
        """Simulate a reactive drop: abort the socket (really closed, nothing leaks).

        Reported as KILLED; reconnects with backoff unless auto_reconnect is off. No-op
        when not connected.
        """
        await self._live.kill()

    async def wait_for_reconnect_window(
        self,
        should_reconnect: Policy | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - kstlib's signature, kept
    ) -> bool:
        """Wait until `should_reconnect` (or the instance's) says yes; never connects by itself.

        True returns True; a positive number waits that long and asks again; anything
        else asks again after reconnect_check_interval_s.

        Returns:
            True when the callback said yes; False at the timeout, or with no callback.
        """
        policy = should_reconnect or self.should_reconnect
        if policy is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        interval = self._live.limits.reconnect_check_interval_s
        while True:
            answer = interpret_reconnect_answer(await call_policy(policy))
            if answer == 0.0:
                return True
            pause = interval if answer is None else answer
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                pause = min(pause, remaining)
            await asyncio.sleep(pause)

    # ------------------------------------------------------------------ waiting on state

    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """True once connected (at once if already); False at the timeout."""
        return await self._wait_state(_CONNECTED, timeout)

    async def wait_disconnected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """True once not connected (at once if already); False at the timeout."""
        return await self._wait_state((_S.DISCONNECTED, _S.RECONNECTING, _S.CLOSED), timeout)

    async def _wait_state(
        self,
        states: tuple[ConnectionState, ...],
        timeout: float | None,  # noqa: ASYNC109
    ) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while self.state not in states:
                    self._state_evt.clear()
                    await self._state_evt.wait()
        except TimeoutError:
            return False
        return True


class LinkControl:
    """Mixin of `recorder.connection.LiveSource`: proactive control on the socket side.

    Disconnects (hold, or reconnect after a delay), make-before-break rotations (one
    at a time: the standby is opened and subscribed by the engine, which emits
    `Switched` once its acks and snapshots are in; then the old connection is
    closed with 1000), kill, scheduled reconnects. A rotation that cannot be made
    ready leaves the old connection in place and is retried later, except for a
    stale one, which is then replaced reactively. `close()` cancels what is pending.

    Its methods take `self: LiveSource`: the state they share is declared there.
    """

    _active: Link | None
    _standby: Link | None
    _hold: DisconnectReason | None
    _rotation: asyncio.Task[bool] | None
    _rotation_reason: DisconnectReason
    _rotation_retry_ns: int
    _skip_wait: bool

    async def disconnect(
        self: LiveSource, reason: DisconnectReason, reconnect_after: float | None
    ) -> bool:
        c = self._active
        if c is None or self._stopping:
            return False
        standby = self._standby
        if self._rotation is not None and not self._rotation.done():
            self._rotation.cancel()  # a rotation in flight must not bring the link back
        if standby is not None:
            await self._close(standby, Intent(reason, "abandon"))
            if not self._in_pump():
                await standby.ended.wait()
        then = "hold" if reconnect_after is None else "reconnect"
        await self._close(c, Intent(reason, then, reconnect_after or 0.0))
        if not self._in_pump():
            await c.ended.wait()
        return True

    async def rotate(self: LiveSource, reason: DisconnectReason) -> bool:
        task = self.request_rotation(reason)
        if task is None:
            return False
        if self._in_pump():
            return True  # inside a hook: waiting here would wait on ourselves
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                return False  # the rotation was called off (disconnect, close), not us
            raise

    def request_rotation(self: LiveSource, reason: DisconnectReason) -> asyncio.Task[bool] | None:
        """Start a make-before-break rotation (one at a time); the task says if it switched."""
        if self._stopping or self._active is None:
            return None
        if self._rotation is not None and not self._rotation.done():
            return self._rotation
        self._rotation_reason = reason
        self._rotation = self._spawn(self._rotate(reason))
        return self._rotation

    async def kill(self: LiveSource) -> None:
        c = self._active
        if c is None or self._stopping:
            return
        c.intent = Intent(_R.KILLED, "react")
        c.abort()  # a real drop: the socket is gone, the server sees a reset
        if not self._in_pump():
            await c.ended.wait()

    def reconnect_now(self: LiveSource) -> None:
        """Leave a hold, or cut a backoff wait short."""
        self._hold = None
        if self._active is None:
            self._skip_wait = True
            self._wake.set()

    def schedule(self: LiveSource, delay_s: float, reason: DisconnectReason) -> None:
        async def later() -> None:
            await asyncio.sleep(delay_s)
            self._scheduled(reason)

        task = self._spawn(later())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def _cancel_timers(self: LiveSource) -> None:
        """Cancel pending scheduled reconnects and a rotation in progress (close() does this)."""
        current = asyncio.current_task()
        pending = [*self._timers, self._rotation]
        for task in pending:
            if task is not None and task is not current and not task.done():
                task.cancel()

    def _scheduled(self: LiveSource, reason: DisconnectReason) -> None:
        if self._active is not None:
            self.request_rotation(reason)
        elif self._hold is not None:
            self.reconnect_now()

    # ------------------------------------------------------------------ make-before-break

    async def _rotate(self: LiveSource, reason: DisconnectReason) -> bool:
        old = self._active
        if old is None:
            return False
        if not self._engine.wire_subscriptions():
            # Nothing to carry over (no acknowledged subscription): break, then make at once.
            await self._close(old, Intent(reason, "reconnect"))
            return True
        await self._rate_limit()
        if self._stopping or self._active is not old:
            return False
        try:
            new = await self._open(standby=True)
        except AttemptFailed as failed:
            await self._attempt_failed(failed, will_retry=True)
            self._rotation_failed(reason, old)
            return False
        if new is self._active:
            return True  # the old one ended while we connected: nothing to switch
        await new.settled.wait()
        if new is self._active:
            return True
        self._rotation_failed(reason, old)
        return False

    def _rotation_failed(self: LiveSource, reason: DisconnectReason, old: Link) -> None:
        delay_s = min(self.limits.max_reconnect_delay_s, self.limits.reconnect_delay_s * 4)
        self._rotation_retry_ns = time.monotonic_ns() + int(delay_s * NS)
        if reason is _R.STALE and old is self._active and not self._stopping:
            self._spawn(self._close(old, Intent(_R.STALE, "react")))

    def _switched(self: LiveSource, old_no: int, new_no: int, recv_ns: int, mono_ns: int) -> None:
        new = self._conns.get(new_no)
        old = self._conns.get(old_no)
        if new is not None:
            self._active, self._standby = new, None
            self.stats.active_changed(new.opened_mono_ns)
            new.settled.set()
        self.stats.rotations += 1
        self._emit(
            new_no,
            recv_ns,
            mono_ns,
            Event.SWITCH,
            old_conn=old_no,
            new_conn=new_no,
            reason=self._rotation_reason.value,
        )
        if old is not None:
            self._spawn(self._close(old, Intent(self._rotation_reason, "retire")))
