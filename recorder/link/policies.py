"""Reconnect and liveness policies of the live edge, as pure functions and small classes.

This module owns the decisions the connection manager consumes: the delays of each
`ReconnectStrategy`, the close-code and handshake-status classification of
docs/protocol.md section 9.6, the retry budget with its stable-connection reset, the
attempt rate limit, the per-subscription staleness judgement and the maximum
connection age. Nothing here sleeps, reads a clock or touches a socket: times are
passed in (seconds or monotonic ns), so every policy is tested without waiting
(docs/architecture.md section 9.6). It knows nothing of websockets or of the engine.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "PERMANENT_CLOSE_CODES",
    "AttemptLimiter",
    "CloseVerdict",
    "DisconnectReason",
    "ReconnectStrategy",
    "RetryPlan",
    "StaleSubscription",
    "Staleness",
    "backoff",
    "classify_close",
    "classify_handshake",
    "effective_max_age_s",
    "interpret_reconnect_answer",
]

NS: Final = 1_000_000_000


class ReconnectStrategy(StrEnum):
    """How long to wait before each reconnect attempt."""

    IMMEDIATE = "immediate"  # no wait (the attempt rate limit still applies)
    FIXED_DELAY = "fixed_delay"  # reconnect_delay_s every time
    EXPONENTIAL_BACKOFF = "exponential_backoff"  # full jitter, capped (the default)
    CALLBACK_CONTROLLED = "callback_controlled"  # `should_reconnect` decides


class DisconnectReason(StrEnum):
    """Why a connection ended. Proactive reasons are ours to choose; reactive ones happen to us."""

    USER_REQUESTED = "user_requested"  # request_disconnect(), rotate(), close()
    SCHEDULED = "scheduled"  # schedule_reconnect() or a cron reconnect window
    CALLBACK_TRIGGERED = "callback_triggered"  # should_disconnect() said so
    CONNECTION_LIMIT = "connection_limit"  # max connection age (minus the margin) reached
    SERVER_CLOSED = "server_closed"  # the server sent a close frame (any code)
    NETWORK_ERROR = "network_error"  # the TCP connection ended without a close frame
    PING_TIMEOUT = "ping_timeout"  # no pong within ping_timeout_s
    PROTOCOL_ERROR = "protocol_error"  # a frame broke the protocol or our max_frame_bytes
    STALE = "stale"  # a subscription that used to flow went silent (socket alive)
    KILLED = "killed"  # kill(): a simulated reactive drop

    @property
    def is_proactive(self) -> bool:
        return self in _PROACTIVE

    @property
    def is_reactive(self) -> bool:
        return self not in _PROACTIVE


_PROACTIVE: Final = frozenset(
    {
        DisconnectReason.USER_REQUESTED,
        DisconnectReason.SCHEDULED,
        DisconnectReason.CALLBACK_TRIGGERED,
        DisconnectReason.CONNECTION_LIMIT,
    }
)


class CloseVerdict(StrEnum):
    """What a close code or a refused handshake means for reconnecting."""

    RETRY = "retry"  # reconnect with backoff and resubscribe
    PERMANENT = "permanent"  # stop: retrying cannot help (no reconnect storm)
    SERVER_UNAVAILABLE = "server_unavailable"  # wait server_unavailable_delay_s, then retry


#: docs/protocol.md section 9.6: codes after which reconnecting cannot help. 4000-4999 too.
PERMANENT_CLOSE_CODES: Final = frozenset({1002, 1003, 1007, 1008, 1009, 1010})


def classify_close(code: int | None) -> CloseVerdict:
    """Classify a close code the *server* sent (docs/protocol.md section 9.6).

    1013 (try again later) waits before reconnecting; 1002, 1003, 1007-1010 and
    4000-4999 (application codes, e.g. 4001 auth) are permanent; everything else
    (1000, 1001, 1006, 1011, 1012, None...) reconnects.
    """
    if code is None:
        return CloseVerdict.RETRY
    if code == 1013:
        return CloseVerdict.SERVER_UNAVAILABLE
    if code in PERMANENT_CLOSE_CODES or 4000 <= code <= 4999:
        return CloseVerdict.PERMANENT
    return CloseVerdict.RETRY


def classify_handshake(status: int) -> CloseVerdict:
    """Classify an HTTP status refusing the upgrade.

    429 and 503 mean "not now" (wait, honouring Retry-After); 408 and other 5xx
    are transient; any other 4xx (401, 403, 404...) will not change by retrying.
    """
    if status in (429, 503):
        return CloseVerdict.SERVER_UNAVAILABLE
    if status == 408 or status >= 500:
        return CloseVerdict.RETRY
    if 400 <= status < 500:
        return CloseVerdict.PERMANENT
    return CloseVerdict.RETRY


def backoff(
    strategy: ReconnectStrategy, base_s: float, cap_s: float, rng: random.Random
) -> Iterator[float]:
    """Yield the delay before each successive reconnect attempt.

    EXPONENTIAL_BACKOFF is full jitter: attempt n (from 0) waits
    uniform(0, min(cap_s, base_s * 2**n)) (docs/protocol.md section 9.7). FIXED_DELAY
    waits base_s; IMMEDIATE and CALLBACK_CONTROLLED (whose callback adds its own
    wait) yield 0.
    """
    n = 0
    while True:
        if strategy is ReconnectStrategy.EXPONENTIAL_BACKOFF:
            ceiling = cap_s if n >= 62 else min(cap_s, base_s * (1 << n))
            yield rng.uniform(0.0, ceiling)
            n += 1
        elif strategy is ReconnectStrategy.FIXED_DELAY:
            yield base_s
        else:
            yield 0.0


class RetryPlan:
    """The reactive retry budget: how many attempts are left and how long to wait.

    The counter counts reconnect attempts since the last *stable* connection (one
    that stayed open `stable_s`); a handshake alone does not reset it, so a server
    that accepts and then closes at once meets a growing backoff and, after
    `max_attempts`, a final error instead of a storm. After a stable connection
    is lost the first attempt is immediate (a single loss is not a storm, and a
    dead connection is replaced within the keep-alive bounds); the following ones
    back off. Proactive reconnects never spend this budget.
    """

    def __init__(
        self,
        strategy: ReconnectStrategy,
        *,
        base_s: float,
        cap_s: float,
        max_attempts: int,
        stable_s: float,
        server_unavailable_s: float,
        rng: random.Random,
    ) -> None:
        self._strategy = strategy
        self._base_s = base_s
        self._cap_s = cap_s
        self.max_attempts = max_attempts
        self._stable_s = stable_s
        self._unavailable_s = server_unavailable_s
        self._rng = rng
        self.attempts = 0
        self._fresh = False
        self._delays = backoff(strategy, base_s, cap_s, rng)

    def reset(self) -> None:
        """Forget past failures (a stable connection was reached)."""
        self.attempts = 0
        self._fresh = True
        self._delays = backoff(self._strategy, self._base_s, self._cap_s, self._rng)

    def connection_lost(self, lived_s: float) -> None:
        """A connection that lived `lived_s` ended: reset the budget if it was stable."""
        if lived_s >= self._stable_s:
            self.reset()

    def can_retry(self, verdict: CloseVerdict) -> bool:
        """Whether `next_delay(verdict)` would allow another attempt."""
        return verdict is not CloseVerdict.PERMANENT and self.attempts < self.max_attempts

    def next_delay(self, verdict: CloseVerdict, retry_after_s: float | None = None) -> float | None:
        """Spend one attempt and return the wait before it, or None to give up.

        Args:
            verdict: the classification of the last close or refused handshake.
            retry_after_s: the server's Retry-After, if it sent one (used instead of
                server_unavailable_s for SERVER_UNAVAILABLE).
        """
        if not self.can_retry(verdict):
            return None
        self.attempts += 1
        delay = next(self._delays)
        if self._fresh:
            self._fresh = False
            delay = 0.0
        if verdict is CloseVerdict.SERVER_UNAVAILABLE:
            wait = self._unavailable_s if retry_after_s is None else retry_after_s
            delay = max(delay, wait)
        return delay


class AttemptLimiter:
    """At most `max_attempts` handshakes in any sliding window of `window_s` seconds."""

    def __init__(self, max_attempts: int, window_s: float) -> None:
        self.max_attempts = max_attempts
        self._window_ns = int(window_s * NS)
        self._starts: deque[int] = deque()

    def wait_s(self, mono_ns: int) -> float:
        """Seconds to wait from `mono_ns` before the next attempt is allowed (0: now)."""
        starts = self._starts
        while starts and mono_ns - starts[0] >= self._window_ns:
            starts.popleft()
        if len(starts) < self.max_attempts:
            return 0.0
        return (starts[0] + self._window_ns - mono_ns) / NS

    def record(self, mono_ns: int) -> None:
        """An attempt starts at `mono_ns`."""
        self._starts.append(mono_ns)


@dataclass(frozen=True, slots=True)
class StaleSubscription:
    """A subscription that used to flow and has been silent for longer than its threshold."""

    conn: int
    sid: int
    channel: str
    silent_s: float
    threshold_s: float
    mean_gap_s: float


class _Track:
    __slots__ = ("ewma_gap_ns", "frames", "last_ns", "observations", "reported")

    def __init__(self, frames: int, last_ns: int | None) -> None:
        self.frames = frames
        self.last_ns = last_ns
        self.ewma_gap_ns: float | None = None
        self.observations = 0
        self.reported = False


class Staleness:
    """Judges each subscription against its own observed message rate.

    Feed it `Engine.subscription_activity()` at a regular interval. For each
    subscription it keeps an exponentially weighted mean of the gap between
    frames, learnt from the frames that arrive between two observations (n frames
    over t seconds count as n gaps of t/n). The frames already there at the first
    observation (the snapshot burst of a subscribe) only seed it. A subscription
    is stale when it has at least `min_observations` learnt gaps and has been
    silent longer than max(floor_s, multiplier * mean gap). So a quiet market
    never qualifies (too few observations, or a long mean gap), and only data
    that stopped while it used to flow is reported, once per silence.
    """

    def __init__(
        self, *, floor_s: float, multiplier: float, min_observations: int, alpha: float = 0.1
    ) -> None:
        self._floor_ns = floor_s * NS
        self._multiplier = multiplier
        self._min_obs = min_observations
        self._alpha = alpha
        self._tracks: dict[tuple[int, int], _Track] = {}

    def observe(
        self, activity: Iterable[tuple[int, int, str, int, int | None]], mono_ns: int
    ) -> list[StaleSubscription]:
        """Update from (conn, sid, channel, frames, last_mono_ns) rows; return the newly stale."""
        seen: set[tuple[int, int]] = set()
        stale = []
        keep = 1.0 - self._alpha
        for conn, sid, channel, frames, last_ns in activity:
            key = (conn, sid)
            seen.add(key)
            track = self._tracks.get(key)
            if track is None:
                self._tracks[key] = _Track(frames, last_ns)
                continue
            new = frames - track.frames
            if new > 0 and last_ns is not None:
                if track.last_ns is not None:
                    gap = (last_ns - track.last_ns) / new
                    if track.ewma_gap_ns is None:
                        track.ewma_gap_ns = gap
                    else:
                        weight = keep**new  # n equal gaps, applied at once
                        track.ewma_gap_ns = track.ewma_gap_ns * weight + gap * (1.0 - weight)
                    track.observations += new
                track.frames, track.last_ns, track.reported = frames, last_ns, False
            mean = track.ewma_gap_ns
            if (
                track.reported
                or mean is None
                or track.last_ns is None
                or track.observations < self._min_obs
            ):
                continue
            threshold = max(self._floor_ns, self._multiplier * mean)
            silent = mono_ns - track.last_ns
            if silent > threshold:
                track.reported = True
                stale.append(
                    StaleSubscription(conn, sid, channel, silent / NS, threshold / NS, mean / NS)
                )
        for key in [k for k in self._tracks if k not in seen]:
            del self._tracks[key]
        return stale


def effective_max_age_s(max_age_s: float, margin_s: float) -> float | None:
    """When to rotate a connection a platform would cut at `max_age_s` (0: no limit).

    Leave `margin_s` before the limit; a margin as large as the limit itself
    would rotate constantly, so the rotation never comes before half the limit.
    """
    if max_age_s <= 0:
        return None
    return max(max_age_s - margin_s, max_age_s / 2)


def interpret_reconnect_answer(answer: object) -> float | None:
    """What a `should_reconnect` answer means: seconds to wait before reconnecting, or None.

    True means now (0.0); a positive number means after that many seconds;
    anything else (False, None, 0, a negative number) means "not yet, ask again".
    """
    if answer is True:
        return 0.0
    if isinstance(answer, bool) or not isinstance(answer, int | float):
        return None
    return float(answer) if answer > 0 else None
