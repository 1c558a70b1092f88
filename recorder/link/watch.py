"""The timers of a live connection: engine ticks, staleness, age, alerts, policies, windows.

`Watchdogs` owns the background loops the connection manager runs beside its
receive loops. Housekeeping ticks the engine (subscribe-ack timeouts, resync
fallback, standby timeout, checkpoints), judges every subscription's staleness
against its own rate (`recorder.link.policies.Staleness`: a quiet market never
qualifies) and rotates make-before-break when one that used to flow went
silent, rotates before the maximum connection age (minus its margin), and
flushes held disconnect alerts. Beside it, `should_disconnect` is polled while
connected (the first check one interval after the connection opened), and each
cron window (an APScheduler trigger, read against the wall clock) rotates or
reconnects. Durations run on the monotonic clock. It decides nothing about
reconnecting: it asks proactive control (`recorder.link.control.LinkControl`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Final

from apscheduler.triggers.base import BaseTrigger

from recorder.link.alerts import DisconnectAlerts
from recorder.link.control import LinkControl, next_window
from recorder.link.limits import Limits
from recorder.link.opener import Links
from recorder.link.plumbing import Hook, Plumbing, Policy
from recorder.link.plumbing import now as _now
from recorder.link.policies import DisconnectReason, Staleness, effective_max_age_s
from recorder.link.stats import LiveStats

__all__ = ["Watchdogs"]

NS: Final = 1_000_000_000
_R = DisconnectReason


class Watchdogs:
    """The live link's background loops (see the module docstring)."""

    def __init__(
        self,
        control: LinkControl,
        links: Links,
        plumbing: Plumbing,
        limits: Limits,
        stats: LiveStats,
        alerts: DisconnectAlerts,
        on_alert: Hook | None,
    ) -> None:
        self._control = control
        self._links = links
        self._plumbing = plumbing
        self._limits = limits
        self._stats = stats
        self._alerts = alerts
        self._on_alert = on_alert
        self._staleness = Staleness(
            floor_s=limits.stale_floor_s,
            multiplier=limits.stale_multiplier,
            min_observations=limits.stale_min_observations,
        )

    async def housekeeping(self) -> None:
        """Tick the engine; rotate a stale or an old connection; flush disconnect alerts."""
        lim, plumbing, control = self._limits, self._plumbing, self._control
        stale_every_ns = int(lim.stale_check_interval_s * NS)
        next_stale_ns = 0
        max_age_s = effective_max_age_s(lim.max_connection_age_s, lim.disconnect_margin_s)
        while True:
            await asyncio.sleep(lim.tick_interval_s)
            recv_ns, mono_ns = _now()
            engine = plumbing.engine
            engine.tick(recv_ns, mono_ns)
            rotating = control.rotating
            active = self._links.active
            if mono_ns >= next_stale_ns:
                next_stale_ns = mono_ns + stale_every_ns
                own = self._links.conns  # across feeds, each watches its own connections
                activity = [a for a in engine.subscription_activity() if a[0] in own]
                stale = self._staleness.observe(activity, mono_ns)
                for sub in stale:
                    self._stats.stale += 1
                    plumbing.report(
                        "stale",
                        f"{sub.channel} sid {sub.sid} silent {sub.silent_s:.2f} s "
                        f"(threshold {sub.threshold_s:.2f} s, mean gap {sub.mean_gap_s:.3f} s)",
                        recv_ns,
                        sub.conn,
                        sub.sid,
                        sub.channel,
                    )
                if stale and not rotating:
                    control.request_rotation(_R.STALE)
                    rotating = True
            if (
                max_age_s is not None
                and active is not None
                and not rotating
                and mono_ns >= control.retry_ns
                and mono_ns - active.opened_mono_ns >= max_age_s * NS
            ):
                control.request_rotation(_R.CONNECTION_LIMIT)
            alert = self._alerts.flush(mono_ns)
            if alert is not None:
                await plumbing.hook(self._on_alert, alert)
            await plumbing.pump()

    async def poll_should_disconnect(self, policy: Policy) -> None:
        """Ask `policy` every interval while connected; a truthy answer disconnects and holds."""
        interval_s = self._limits.disconnect_check_interval_s
        while True:
            await asyncio.sleep(interval_s)
            c = self._links.active
            if c is None or self._links.stopping:
                continue
            if time.monotonic_ns() - c.opened_mono_ns < interval_s * NS:
                continue  # the first check comes one interval after connecting
            if await self._plumbing.ask(policy) and self._links.active is c:
                await self._control.disconnect(_R.CALLBACK_TRIGGERED, None)

    async def window(self, trigger: BaseTrigger) -> None:
        """At each fire time of a cron window: rotate if connected, reconnect if held."""
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
            self._control.scheduled(_R.SCHEDULED)
