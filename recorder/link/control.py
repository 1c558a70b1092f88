"""Proactive connection control on the socket side: disconnects, rotations, kill, timers.

`LinkControl` carries out what a user (through `recorder.link.live.LiveSession`), a
watchdog or a reconnect window asks of the live link beyond reconnecting after a
loss: disconnect and hold, or come back after a delay; a make-before-break
rotation (one at a time: a standby is opened and subscribed by the engine, which
emits `Switched` once its acks and snapshots are in; then the old connection is
closed with 1000); kill (abort the socket, as a network drop would); scheduled
reconnects. A rotation that cannot be made ready leaves the old connection in
place and is retried later, except for a stale one, which is then replaced
reactively. `cancel_timers` (close) calls off what is pending.

It opens and closes links through a `Connector` (the connection manager, which
owns the sockets and the reconnect lifecycle) and reads the run's `Links`. The
cron windows' triggers (`parse_windows`, `next_window`) are here too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable
from typing import Any, Final, Protocol

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from recorder.link.limits import Limits
from recorder.link.opener import AttemptFailed, Intent, Link, Links
from recorder.link.plumbing import Plumbing
from recorder.link.policies import DisconnectReason
from recorder.link.stats import LiveStats
from schemas.errors import ConfigError
from schemas.events import Switched

__all__ = ["Connector", "LinkControl", "next_window", "parse_windows"]

NS: Final = 1_000_000_000
_R = DisconnectReason


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


class Connector(Protocol):
    """What proactive control needs of the connection manager."""

    async def open_standby(self) -> Link:
        """Open a make-before-break standby (or return the active link if it ended meanwhile).

        Raises:
            AttemptFailed: the handshake failed.
        """
        ...

    async def close(self, link: Link, intent: Intent, code: int = 1000) -> None:
        """Close one link on purpose, recording why and what comes next."""
        ...

    async def attempt_failed(self, failed: AttemptFailed, will_retry: bool) -> None:
        """Record a failed handshake."""
        ...

    async def rate_limit(self) -> None:
        """Wait until the attempt rate limit allows another handshake."""
        ...

    def reconnect_now(self) -> None:
        """Leave a hold, or cut a backoff wait short."""
        ...


class LinkControl:
    """Proactive control of the live link (see the module docstring).

    Attributes:
        rotation: the rotation in progress, if any (one at a time).
        rotation_reason: why the last rotation was asked for (recorded on the switch).
        retry_ns: a rotation that failed is not retried by a watchdog before this
            (monotonic ns).
    """

    def __init__(
        self,
        connector: Connector,
        links: Links,
        plumbing: Plumbing,
        limits: Limits,
        stats: LiveStats,
    ) -> None:
        self._connector = connector
        self._links = links
        self._plumbing = plumbing
        self._limits = limits
        self._stats = stats
        self.rotation: asyncio.Task[bool] | None = None
        self.rotation_reason: DisconnectReason = _R.USER_REQUESTED
        self.retry_ns = 0
        self._timers: set[asyncio.Task[Any]] = set()

    @property
    def rotating(self) -> bool:
        return self.rotation is not None and not self.rotation.done()

    async def disconnect(self, reason: DisconnectReason, reconnect_after: float | None) -> bool:
        """Close the active link on purpose: hold, or reconnect after `reconnect_after` s."""
        links = self._links
        c = links.active
        if c is None or links.stopping:
            return False
        standby = links.standby
        if self.rotating:
            assert self.rotation is not None
            self.rotation.cancel()  # a rotation in flight must not bring the link back
        in_pump = self._plumbing.in_pump()
        if standby is not None:
            await self._connector.close(standby, Intent(reason, "abandon"))
            if not in_pump:
                await standby.ended.wait()
        then = "hold" if reconnect_after is None else "reconnect"
        await self._connector.close(c, Intent(reason, then, reconnect_after or 0.0))
        if not in_pump:
            await c.ended.wait()
        return True

    async def rotate(self, reason: DisconnectReason) -> bool:
        """Rotate make-before-break and wait for the outcome (True: switched)."""
        task = self.request_rotation(reason)
        if task is None:
            return False
        if self._plumbing.in_pump():
            return True  # inside a hook: waiting here would wait on ourselves
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                return False  # the rotation was called off (disconnect, close), not us
            raise

    def request_rotation(self, reason: DisconnectReason) -> asyncio.Task[bool] | None:
        """Start a make-before-break rotation (one at a time); the task says if it switched."""
        if self._links.stopping or self._links.active is None:
            return None
        if self.rotation is not None and not self.rotation.done():
            return self.rotation
        self.rotation_reason = reason
        self.rotation = self._plumbing.spawn(self._rotate(reason))
        return self.rotation

    async def kill(self) -> None:
        """Abort the active socket (no close frame), reported as a reactive KILLED."""
        c = self._links.active
        if c is None or self._links.stopping:
            return
        c.intent = Intent(_R.KILLED, "react")
        c.abort()  # a real drop: the socket is gone, the server sees a reset
        if not self._plumbing.in_pump():
            await c.ended.wait()

    def schedule(self, delay_s: float, reason: DisconnectReason) -> None:
        """In `delay_s`: rotate if connected, reconnect if held."""

        async def later() -> None:
            await asyncio.sleep(delay_s)
            self.scheduled(reason)

        task = self._plumbing.spawn(later())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def cancel_timers(self) -> None:
        """Cancel pending scheduled reconnects and a rotation in progress (close() does this)."""
        current = asyncio.current_task()
        for task in [*self._timers, self.rotation]:
            if task is not None and task is not current and not task.done():
                task.cancel()

    def scheduled(self, reason: DisconnectReason) -> None:
        """A scheduled reconnect or a window is due: rotate if connected, else reconnect."""
        if self._links.active is not None:
            self.request_rotation(reason)
        else:
            self._connector.reconnect_now()

    # ------------------------------------------------------------------ make-before-break

    async def _rotate(self, reason: DisconnectReason) -> bool:
        links = self._links
        old = links.active
        if old is None:
            return False
        if not self._plumbing.engine.wire_subscriptions():
            # Nothing to carry over (no acknowledged subscription): break, then make at once.
            await self._connector.close(old, Intent(reason, "reconnect"))
            return True
        await self._connector.rate_limit()
        if links.stopping or links.active is not old:
            return False
        try:
            new = await self._connector.open_standby()
        except AttemptFailed as failed:
            await self._connector.attempt_failed(failed, will_retry=True)
            self._rotation_failed(reason, old)
            return False
        if new is links.active:
            return True  # the old one ended while we connected: nothing to switch
        await new.settled.wait()
        if new is links.active:
            return True
        self._rotation_failed(reason, old)
        return False

    def _rotation_failed(self, reason: DisconnectReason, old: Link) -> None:
        lim = self._limits
        delay_s = min(lim.max_reconnect_delay_s, lim.reconnect_delay_s * 4)
        self.retry_ns = time.monotonic_ns() + int(delay_s * NS)
        if reason is _R.STALE and old is self._links.active and not self._links.stopping:
            self._plumbing.spawn(self._connector.close(old, Intent(_R.STALE, "react")))

    def switched(self, old_no: int, new_no: int, recv_ns: int, mono_ns: int) -> None:
        """The engine switched delivery to the standby: make it active, retire the old one."""
        links = self._links
        new = links.conns.get(new_no)
        old = links.conns.get(old_no)
        if new is not None:
            links.active, links.standby = new, None
            self._stats.active_changed(new.opened_mono_ns)
            new.settled.set()
        self._stats.rotations += 1
        self._plumbing.emit(new_no, recv_ns, mono_ns, Switched(
            old_conn=old_no, new_conn=new_no, reason=self.rotation_reason.value
        ))  # fmt: skip
        if old is not None:
            self._plumbing.spawn(self._connector.close(old, Intent(self.rotation_reason, "retire")))
