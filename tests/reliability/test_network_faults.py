"""Network faults between the recorder and the exchange, through our own TCP proxy.

A dead path (blackhole), a half-open connection (one direction silent) and a dead
handshake are invisible to TCP; only the keep-alive notices them. With small limits
(`ping_interval_s` = `ping_timeout_s` = `close_timeout_s` = 0.2 s) the recorder must
notice a dead connection and replace it within `ping_interval_s + ping_timeout_s +
close_timeout_s` (`Limits.dead_connection_bound_s`): a ping goes out at most one
interval after the path died, its pong is missed after the timeout, and the close
handshake that cannot complete is abandoned after the close timeout. The first
reconnect after a stable connection is immediate. A reset (RST) is noticed at once.
Latency and a bandwidth cap slow the feed but lose nothing. Times are measured from
the moment the proxy's fault is switched on to the capture's own `close` and `open`
events (both on the monotonic clock), and go to `.results/network.json`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from schemas.events import Closed

from ..results import ResultLog
from .capture_facts import read_capture, server_sent, timed_events
from .proxy import BOTH, DOWN, UP, Direction, Faults
from .rig import Rig, behind_proxy

pytestmark = pytest.mark.timeout(60)

NS = 1_000_000_000
KEEPALIVE = {"ping_interval_s": 0.2, "ping_timeout_s": 0.2, "close_timeout_s": 0.2,
             "stable_connection_s": 0.5}  # fmt: skip
BOUND_S = 0.2 + 0.2 + 0.2
DETECT_MARGIN_S = 0.25  # event-loop scheduling on a shared 2-core machine
REPLACE_MARGIN_S = 0.4  # plus a handshake and the subscribe round trip


async def _warm_up(rig: Rig) -> None:
    await rig.wait_streaming()
    await rig.until(lambda: rig.session.stats.messages_received > 200, 10.0)
    await rig.until(lambda: rig.session.stats.connection_duration_s(time.monotonic_ns()) > 0.6, 5)


def _replacement(root: Path, fault_ns: int) -> tuple[float, float, Closed]:
    """(seconds to the old connection's close, seconds to the new one's open, the close detail)."""
    events = timed_events(root)
    close = next(e for e in events if e.type == "close" and e.mono_ns >= fault_ns)
    opened = next(e for e in events if e.type == "open" and e.mono_ns >= close.mono_ns)
    return (close.mono_ns - fault_ns) / NS, (opened.mono_ns - fault_ns) / NS, close.event


async def _dead_path(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest, case: str,
    way: Direction, *, reset: bool = False,
) -> dict[str, Any]:  # fmt: skip
    async with behind_proxy(tmp_path, live=KEEPALIVE) as (server, proxy, rig):
        await _warm_up(rig)
        fault_ns = time.monotonic_ns()
        if reset:
            assert proxy.reset() == 1
        else:
            proxy.set_faults(blackhole=way)
        await rig.until(lambda: rig.session.stats.connects == 2 and rig.settled(), 5.0)
        books = await rig.books_match_truth()
        assert rig.running
        await rig.stop()
    detect_s, replace_s, close = _replacement(tmp_path / "capture", fault_ns)
    facts = read_capture(tmp_path / "capture", server_sent(tmp_path / "truth.ndjson", server.truth))
    out = {
        "case": case, "bound_s": 0.0 if reset else BOUND_S, "detect_s": detect_s,
        "replace_s": replace_s, "disconnect_reason": close.disconnect_reason,
        "close_code": close.code, "verifies": facts.verifies, "problems": facts.problems,
        "books_equal": all(books.values()), "byte_exact": facts.delivery.byte_exact,
        "lost": facts.delivery.lost, "reconnects": facts.reconnects,
        "frames": facts.delivery.frames,
    }  # fmt: skip
    results.add("network", out, request)
    assert out["verifies"], out["problems"]
    assert out["byte_exact"] and out["books_equal"]
    assert facts.reconnects == 1
    return out


@pytest.mark.parametrize(
    ("way", "case"),
    [(BOTH, "blackhole"), (UP, "half-open: client to server silent"),
     (DOWN, "half-open: server to client silent")],
    ids=["blackhole", "half-open-up", "half-open-down"],
)  # fmt: skip
async def test_a_silent_path_is_replaced_within_the_keepalive_bound(
    way: Direction, case: str, tmp_path: Path, results: ResultLog,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    out = await _dead_path(tmp_path, results, request, case, way)
    assert out["disconnect_reason"] == "ping_timeout"
    assert out["detect_s"] <= BOUND_S + DETECT_MARGIN_S
    assert out["replace_s"] <= BOUND_S + REPLACE_MARGIN_S


async def test_a_reset_connection_is_replaced_at_once(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest
) -> None:
    out = await _dead_path(tmp_path, results, request, "reset (RST)", BOTH, reset=True)
    assert (out["disconnect_reason"], out["close_code"]) == ("network_error", 1006)
    assert out["detect_s"] <= 0.1
    assert out["replace_s"] <= 0.3  # immediate: the lost connection had been stable


async def test_a_handshake_into_a_blackhole_is_abandoned_after_the_open_timeout(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest
) -> None:
    live = {**KEEPALIVE, "open_timeout_s": 0.3}
    async with behind_proxy(tmp_path, live=live) as (_, proxy, rig):
        await _warm_up(rig)
        proxy.new_faults = Faults(blackhole=BOTH)  # TCP accepted, the upgrade never answered
        fault_ns = time.monotonic_ns()
        proxy.reset()
        await rig.until(lambda: rig.session.stats.failed_attempts >= 2, 5.0)
        proxy.heal()
        await rig.until(lambda: rig.session.stats.connects == 2 and rig.settled(), 5.0)
        books = await rig.books_match_truth()
        await rig.stop()
    events = [e for e in timed_events(tmp_path / "capture") if e.mono_ns >= fault_ns]
    attempts = [e.mono_ns for e in events if e.type == "attempt"]
    errors = [e for e in events if e.type == "error"]
    waits_s = [(err.mono_ns - att) / NS for att, err in zip(attempts, errors, strict=False)]
    out = {"case": "handshake into a blackhole", "bound_s": 0.3, "detect_s": max(waits_s),
           "replace_s": None, "attempt_timeouts_s": waits_s, "books_equal": all(books.values()),
           "errors": [e.event.error for e in errors]}  # fmt: skip
    results.add("network", out, request)
    assert len(errors) >= 2 and all("TimeoutError" in e for e in out["errors"])
    assert all(0.3 <= w <= 0.3 + DETECT_MARGIN_S for w in waits_s)
    assert out["books_equal"]


async def test_latency_and_a_bandwidth_cap_slow_the_feed_but_lose_nothing(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest
) -> None:
    latency_s, rate_bps = 0.05, 60_000  # the feed runs near 80 kB/s: a backlog builds
    slow = Faults(latency_s=latency_s, rate_bps=rate_bps, rate_dir=DOWN)
    async with behind_proxy(tmp_path, first_faults=slow) as (server, proxy, rig):
        await rig.wait_streaming()
        await rig.until(lambda: rig.session.stats.messages_received > 200, 10.0)
        resyncs = rig.session.stats.resyncs
        server.inject("gap", channel="orderbook_delta")  # on trade: nothing to resync
        # The gap reaches the recorder behind the backlog, and it asks for a snapshot.
        await rig.until(lambda: rig.session.stats.resyncs > resyncs, 25.0)
        # Then the link recovers (4x the cap: above the feed), so the backlog, and the
        # snapshot queued behind it, drain. Under a cap below the feed for good, the
        # backlog grows for as long as the connection lives: how long the answer takes
        # depends on how long the machine took to get here (a warm-up of 15 s instead of
        # 1 s: the snapshot 19 s late, past the resync timeout), and no client can keep up.
        first = proxy.connections[0]
        capped = [(first, first.bytes_forwarded(DOWN), time.monotonic_ns())]
        proxy.set_faults(first, rate_bps=4 * rate_bps)
        await rig.until(rig.settled, 25.0)
        server.inject("close", code=1011)
        await rig.until(lambda: rig.session.stats.connects == 2 and rig.settled(), 25.0)
        books = await rig.books_match_truth(timeout_s=15.0)
        await rig.stop()
        capped += [(c, c.bytes_forwarded(DOWN), c.closed_mono_ns or time.monotonic_ns())
                   for c in proxy.connections[1:]]  # fmt: skip
        rates = [sent / (until - c.accepted_mono_ns) * NS for c, sent, until in capped]
    facts = read_capture(tmp_path / "capture", server_sent(tmp_path / "truth.ndjson", server.truth))
    con_gaps = _gap_recoveries(tmp_path / "capture")
    out = {"case": "latency 50 ms each way + 60 kB/s cap (feed ~80 kB/s)", "bound_s": None,
           "detect_s": None, "replace_s": None, "resync_s": con_gaps, "down_rates_bps": rates,
           "verifies": facts.verifies, "problems": facts.problems, "lost": facts.delivery.lost,
           "byte_exact": facts.delivery.byte_exact, "frames": facts.delivery.frames,
           "books_equal": all(books.values())}  # fmt: skip
    results.add("network", out, request)
    assert con_gaps and min(con_gaps) >= 2 * latency_s  # the resync took a slow round trip
    assert len(rates) >= 2 and all(rate <= rate_bps * 1.05 for rate in rates)  # the cap held
    assert out["verifies"], out["problems"]
    assert out["byte_exact"] and out["lost"] == 0  # nothing lost, every frame as sent
    assert out["books_equal"]


def _gap_recoveries(root: Path) -> list[float]:
    from replay.sql.connection import connect

    con = connect(root)
    try:
        rows = con.execute("SELECT recovery_s FROM gaps WHERE kind = 'gap'").fetchall()
    finally:
        con.close()
    return [float(r[0]) for r in rows if r[0] is not None]
