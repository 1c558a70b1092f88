"""Throttled disconnect alerts: at most one per interval, none lost.

This module owns the throttle. The first disconnect alerts at once; later ones
within `interval_s` of the last alert are held and counted; the next disconnect
after the interval, or the flush timer the connection manager runs (`flush`
when `next_flush_ns` passes), sends one alert carrying the held count and a
count per reason, so a burst of drops never floods an alert channel and never
goes unreported. Times are monotonic ns handed in: nothing here reads a clock
(an alert is never swallowed because the machine booted recently). By default
only reactive disconnects alert: a planned rotation is not an incident.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from recorder.link.policies import DisconnectReason

__all__ = ["DisconnectAlert", "DisconnectAlerts"]

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class DisconnectAlert:
    """One alert.

    Attributes:
        reason: the latest disconnect's reason.
        count: disconnects this alert covers.
        suppressed: of those, how many were held back when they happened.
        reasons: count per reason of the disconnects covered.
        mono_ns: when the alert was raised.
    """

    reason: DisconnectReason
    count: int
    suppressed: int
    reasons: Mapping[DisconnectReason, int] = field(hash=False)
    mono_ns: int


class DisconnectAlerts:
    """The throttle. Call `record` per disconnect and `flush` when `next_flush_ns` passes."""

    def __init__(self, interval_s: float, *, include_proactive: bool = False) -> None:
        self._interval_ns = int(interval_s * _NS)
        self._include_proactive = include_proactive
        self._last_alert_ns: int | None = None
        self._held: Counter[DisconnectReason] = Counter()
        self._held_last: DisconnectReason | None = None

    @property
    def held(self) -> int:
        """Disconnects counted but not alerted yet."""
        return sum(self._held.values())

    @property
    def next_flush_ns(self) -> int | None:
        """When held disconnects must be flushed (None: nothing held)."""
        if not self._held or self._last_alert_ns is None:
            return None
        return self._last_alert_ns + self._interval_ns

    def record(self, reason: DisconnectReason, mono_ns: int) -> DisconnectAlert | None:
        """A disconnect happened: the alert to send now, or None (held, or not alerting)."""
        if reason.is_proactive and not self._include_proactive:
            return None
        last = self._last_alert_ns
        if last is not None and mono_ns - last < self._interval_ns:
            self._held[reason] += 1
            self._held_last = reason
            return None
        suppressed = self.held
        reasons = self._held + Counter({reason: 1})
        return self._emit(reason, suppressed + 1, suppressed, reasons, mono_ns)

    def flush(self, mono_ns: int) -> DisconnectAlert | None:
        """The alert for the held disconnects if the interval has passed, else None."""
        due = self.next_flush_ns
        if due is None or mono_ns < due or self._held_last is None:
            return None
        held = self.held
        return self._emit(self._held_last, held, held, Counter(self._held), mono_ns)

    def _emit(
        self,
        reason: DisconnectReason,
        count: int,
        suppressed: int,
        reasons: Counter[DisconnectReason],
        mono_ns: int,
    ) -> DisconnectAlert:
        self._last_alert_ns = mono_ns
        self._held.clear()
        self._held_last = None
        return DisconnectAlert(reason, count, suppressed, MappingProxyType(dict(reasons)), mono_ns)
