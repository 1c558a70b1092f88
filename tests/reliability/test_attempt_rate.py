"""Against an exchange that closes every connection with 1013, at most 10 attempts a minute.

Why a few seconds can prove a per-minute rate. Two mechanisms bound the recorder's
connection attempts, and both are written in configured durations:

1. after a close 1013 ("try again later") the reconnect loop waits
   `max(backoff, server_unavailable_delay_s)` (30 s by default) before the next
   attempt (`recorder.link.policies.RetryPlan.next_delay`);
2. whatever the waits, the attempt limiter admits at most `attempts_per_window` (10)
   handshakes in any sliding window of `attempt_window_s` (60 s)
   (`recorder.link.policies.AttemptLimiter`), and only a stop cuts its wait short.

Every wait is a configured duration (times a jitter factor that does not depend on the
clock); the handshake and the server's close only add time. Scaling every duration by
k therefore scales the earliest possible attempt times by k, and "at most 10 attempts
in any window of 60·k s, durations scaled by k" is the same statement as "at most 10
in any 60 s" with the defaults. So:

* the default durations scaled by k = 1/30 run three scaled minutes in 6 s: the 1013
  wait alone spaces attempts at least 30·k s apart, far under the limit;
* the limiter alone (1013 wait and backoff at their 0.01 s minimum, a 1 s window,
  i.e. k = 1/60) holds a loop that would otherwise storm to 10 per window;
* a soak test runs the real defaults for a real minute and more.

Attempts are counted twice: the TCP connections the proxy accepted (an observer
independent of the recorder) and the recorder's own `attempt` events. The observer sees
each connection some time after the recorder starts it, and on a busy machine that
delay varies by more than any fixed slack (once, 11 connections in 0.98 s). The bound the
proxy's count must keep is therefore derived from what the limiter guarantees and the
observer's own measured delays (`observed_window_s`), not from scheduling luck.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path
from typing import Any

import pytest

from recorder.link.limits import Limits
from replay.server import parse_fault

from ..results import ResultLog
from .capture_facts import timed_events
from .rig import behind_proxy

pytestmark = pytest.mark.timeout(60)

NS = 1_000_000_000
ALWAYS_1013 = (parse_fault("close:1013@at=0s"),)  # every connection, as soon as it opens
_DURATIONS = ("server_unavailable_delay_s", "attempt_window_s", "reconnect_delay_s",
              "max_reconnect_delay_s", "stable_connection_s")  # fmt: skip


def scaled_defaults(k: float) -> dict[str, float]:
    """The default limits that time reconnects, every duration multiplied by `k`."""
    defaults = Limits()
    return {name: getattr(defaults, name) * k for name in _DURATIONS}


def observer_spread_s(accepted_ns: list[int], attempts_ns: list[int]) -> float:
    """How much the proxy's delay in seeing a connection varied: the latest minus the
    earliest of (accepted - attempt), pairing the n-th connection with the n-th attempt
    (the recorder makes one attempt at a time; a last attempt cut by the stop may never
    reach the proxy)."""
    assert abs(len(accepted_ns) - len(attempts_ns)) <= 1, (len(accepted_ns), len(attempts_ns))
    lags = [a - t for a, t in zip(accepted_ns, attempts_ns, strict=False)]
    return (max(lags) - min(lags)) / NS if lags else 0.0


def observed_window_s(window_s: float, spread_s: float) -> float:
    """The window in which the proxy must see at most the limit.

    If the attempts keep at most N in any window W, and the proxy sees each one between
    L and L + J after it, then N + 1 connections seen within W - J would put N + 1
    attempts within W: so the proxy keeps at most N in any window of W - J. J is measured
    (`observer_spread_s`); it must leave most of the window for the check to say anything.
    """
    assert spread_s < window_s / 2, f"the observer's delay varied by {spread_s:.3f} s"
    return window_s - spread_s


def most_in_window(times_ns: list[int], window_s: float) -> int:
    """The largest number of times within any half-open window [t, t + window_s)."""
    times, window_ns, best, start = sorted(times_ns), int(window_s * NS), 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_ns:
            start += 1
        best = max(best, end - start + 1)
    return best


async def record_against_1013(
    tmp_path: Path, live: dict[str, float], run_s: float
) -> dict[str, Any]:
    """Run the recorder through the proxy against an always-1013 exchange for `run_s`."""
    async with behind_proxy(tmp_path, live=live, faults=ALWAYS_1013) as (_, proxy, rig):
        started_ns = time.monotonic_ns()
        await asyncio.sleep(run_s)
        running = rig.running
        await rig.stop()
        accepted = [t for t in proxy.accepted_mono_ns if t >= started_ns - NS]
    events = timed_events(tmp_path / "capture")
    attempts = [e.mono_ns for e in events if e.type == "attempt"]
    closes = [e.event for e in events if e.type == "close"]
    waits = [e.event for e in events if e.type == "reconnect_wait"]
    gaps_s = [(b - a) / NS for a, b in itertools.pairwise(accepted)]
    return {"running": running, "accepted": accepted, "attempts": attempts, "closes": closes,
            "waits": waits, "min_gap_s": min(gaps_s, default=None), "run_s": run_s}  # fmt: skip


async def test_default_limits_scaled_make_at_most_10_attempts_a_minute_against_1013(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest
) -> None:
    k = 1 / 30
    live = scaled_defaults(k)
    minute_s, unavailable_s = 60 * k, live["server_unavailable_delay_s"]
    run = await record_against_1013(tmp_path, live, 3 * minute_s)
    per_minute = most_in_window(run["attempts"], minute_s)
    spread_s = observer_spread_s(run["accepted"], run["attempts"])
    seen_per_minute = most_in_window(run["accepted"], observed_window_s(minute_s, spread_s))
    results.add("attempt_rate", {
        "case": "1013 always, default limits x 1/30", "scale": k, "scaled_minute_s": minute_s,
        "attempts": len(run["attempts"]), "tcp_connections": len(run["accepted"]),
        "max_per_minute": per_minute, "max_per_minute_seen_by_proxy": seen_per_minute,
        "min_gap_s": run["min_gap_s"], "min_gap_scaled_back_s": (run["min_gap_s"] or 0) / k,
        "observer_delay_spread_s": spread_s, "run_s": run["run_s"],
    }, request)  # fmt: skip
    assert run["running"], "the recorder gave up: it must keep trying, slowly"
    assert len(run["accepted"]) == len(run["attempts"]) >= 4
    assert per_minute <= 10 and seen_per_minute <= 10
    attempt_gaps_s = [(b - a) / NS for a, b in itertools.pairwise(run["attempts"])]
    assert min(attempt_gaps_s) >= unavailable_s  # the 1013 wait spaces them
    assert run["min_gap_s"] >= unavailable_s - spread_s  # and the proxy sees it so
    assert all(c.code == 1013 and c.disconnect_reason == "server_closed"
               for c in run["closes"])  # fmt: skip
    assert [w.reason for w in run["waits"]].count("server_unavailable") >= len(run["closes"]) - 1


async def test_the_attempt_limiter_alone_holds_a_storm_to_10_per_window(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest
) -> None:
    window_s = 1.0  # the 60 s window at k = 1/60
    live = {"server_unavailable_delay_s": 0.01, "reconnect_delay_s": 0.01,
            "max_reconnect_delay_s": 0.01, "attempts_per_window": 10,
            "attempt_window_s": window_s}  # fmt: skip
    run = await record_against_1013(tmp_path, live, 3.2)
    per_window = most_in_window(run["attempts"], window_s)
    spread_s = observer_spread_s(run["accepted"], run["attempts"])
    seen_per_window = most_in_window(run["accepted"], observed_window_s(window_s, spread_s))
    limited = sum(1 for w in run["waits"] if w.reason == "rate_limit")
    results.add("attempt_rate", {
        "case": "1013 always, limiter alone (waits at 0.01 s), 1 s window", "scale": 1 / 60,
        "scaled_minute_s": window_s, "attempts": len(run["attempts"]),
        "tcp_connections": len(run["accepted"]), "max_per_minute": per_window,
        "max_per_minute_seen_by_proxy": seen_per_window, "rate_limit_waits": limited,
        "min_gap_s": run["min_gap_s"], "observer_delay_spread_s": spread_s,
        "run_s": run["run_s"],
    }, request)  # fmt: skip
    assert run["running"]
    assert per_window <= 10 and seen_per_window <= 10
    assert len(run["attempts"]) >= 25  # it did storm against the limit: the limit held it
    assert limited >= 2


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_the_real_default_limits_make_at_most_10_attempts_in_a_real_minute(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest
) -> None:
    run_s = float(os.environ.get("KT_SOAK_RATE_S", "65"))
    run = await record_against_1013(tmp_path, scaled_defaults(1.0), run_s)
    per_minute = most_in_window(run["attempts"], 60.0)
    results.add("attempt_rate", {
        "case": "1013 always, real default limits", "scale": 1.0, "scaled_minute_s": 60.0,
        "attempts": len(run["attempts"]), "tcp_connections": len(run["accepted"]),
        "max_per_minute": per_minute, "min_gap_s": run["min_gap_s"], "run_s": run_s,
    }, request)  # fmt: skip
    assert run["running"]
    assert per_minute <= 10
    spread_s = observer_spread_s(run["accepted"], run["attempts"])
    assert run["min_gap_s"] is None or run["min_gap_s"] >= 30.0 - spread_s
