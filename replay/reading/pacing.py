"""Replay pacing: when a record is due, given the replay speed (pure; no clock, no sleep).

A record's time is its merge key (`replay.reading.capture.merge_key`): the run's first
receive time plus monotonic time elapsed, so a wall-clock step inside a capture
does not distort pacing. At speed k, a record whose key is `d` ns after the first
paced record is due `d / k` ns after pacing started. Speed None means as fast as
the consumers read: never wait.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Pacer"]


@dataclass(slots=True)
class Pacer:
    """Turns record times into waits. Feed it the edge's monotonic clock."""

    speed: float | None
    _key0_ns: int | None = None
    _clock0_s: float = 0.0

    def __post_init__(self) -> None:
        if self.speed is not None and not self.speed > 0:
            raise ValueError(f"speed must be positive or None, not {self.speed!r}")

    def delay_s(self, key_ns: int, now_s: float) -> float:
        """Seconds to wait before delivering a record with time `key_ns` (0 if due)."""
        if self.speed is None:
            return 0.0
        if self._key0_ns is None:
            self._key0_ns, self._clock0_s = key_ns, now_s
            return 0.0
        due_s = self._clock0_s + (key_ns - self._key0_ns) / 1e9 / self.speed
        return max(0.0, due_s - now_s)
