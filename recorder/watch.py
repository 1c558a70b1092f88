"""The timers of a live connection: engine ticks, staleness, age, alerts, policies, windows.

This module owns the background loops the connection manager runs beside its
receive loops. Housekeeping ticks the engine (subscribe-ack timeouts, resync
fallback, standby timeout, checkpoints), judges every subscription's staleness
against its own rate (`recorder.policies.Staleness`: a quiet market never
qualifies) and rotates make-before-break when one that used to flow went
silent, rotates before the maximum connection age (minus its margin), and
flushes held disconnect alerts. Beside it, `should_disconnect` is polled while
connected (the first check one interval after the connection opened), and each
cron window (an APScheduler trigger, read against the wall clock) rotates or
reconnects. Durations run on the monotonic clock. It decides nothing about
reconnecting: it asks the manager (`request_rotation`, `disconnect`).
"""

# mypy: disable-error-code="misc"
# (the Watchdogs methods are typed `self: LiveSource`, the class they are mixed into)
from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import TYPE_CHECKING, Final

from apscheduler.triggers.base import BaseTrigger

from recorder.control import next_window
from recorder.plumbing import now as _now
from recorder.policies import DisconnectReason, effective_max_age_s

if TYPE_CHECKING:
    from recorder.connection import LiveSource

__all__ = ["Watchdogs"]

NS: Final = 1_000_000_000
_R = DisconnectReason


class Watchdogs:
    """Mixin of `recorder.connection.LiveSource`: its background loops."""

    async def _housekeeping(self: LiveSource) -> None:
        lim = self.limits
        stale_every_ns = int(lim.stale_check_interval_s * NS)
        next_stale_ns = 0
        max_age_s = effective_max_age_s(lim.max_connection_age_s, lim.disconnect_margin_s)
        while True:
            await asyncio.sleep(lim.tick_interval_s)
            recv_ns, mono_ns = _now()
            self._engine.tick(recv_ns, mono_ns)
            rotating = self._rotation is not None and not self._rotation.done()
            active = self._active
            if mono_ns >= next_stale_ns:
                next_stale_ns = mono_ns + stale_every_ns
                stale = self._staleness.observe(self._engine.subscription_activity(), mono_ns)
                for sub in stale:
                    self.stats.stale += 1
                    self._report(
                        "stale",
                        f"{sub.channel} sid {sub.sid} silent {sub.silent_s:.2f} s "
                        f"(threshold {sub.threshold_s:.2f} s, mean gap {sub.mean_gap_s:.3f} s)",
                        recv_ns,
                        sub.conn,
                        sub.sid,
                        sub.channel,
                    )
                if stale and not rotating:
                    self.request_rotation(_R.STALE)
                    rotating = True
            if (
                max_age_s is not None
                and active is not None
                and not rotating
                and mono_ns >= self._rotation_retry_ns
                and mono_ns - active.opened_mono_ns >= max_age_s * NS
            ):
                self.request_rotation(_R.CONNECTION_LIMIT)
            alert = self._alerts.flush(mono_ns)
            if alert is not None:
                await self._hook(self.settings.on_disconnect_alert, alert)
            await self._pump()

    async def _poll_should_disconnect(self: LiveSource) -> None:
        policy = self.settings.should_disconnect
        assert policy is not None
        interval_s = self.limits.disconnect_check_interval_s
        while True:
            await asyncio.sleep(interval_s)
            c = self._active
            if c is None or self._stopping:
                continue
            if time.monotonic_ns() - c.opened_mono_ns < interval_s * NS:
                continue  # the first check comes one interval after connecting
            if await self._ask(policy) and self._active is c:
                await self.disconnect(_R.CALLBACK_TRIGGERED, None)

    async def _window(self: LiveSource, trigger: BaseTrigger) -> None:
        previous: dt.datetime | None = None
        fire: dt.datetime | None = None
        while True:
            now = dt.datetime.now(dt.UTC)
            if fire is None:
                fire = next_window(trigger, previous, now)
                if fire is None:
                    return
            delay_s = (fire - now).total_seconds()
            if delay_s > 0:
                await asyncio.sleep(min(delay_s, 60.0))  # re-read the wall clock (clock steps)
                continue
            previous, fire = fire, None
            self._scheduled(_R.SCHEDULED)
