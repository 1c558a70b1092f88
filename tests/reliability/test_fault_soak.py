"""Random combinations of faults for a while, against the real recorder (behind `soak`).

The duration is `KT_SOAK_FAULT_S` seconds (default 20; 600 for the full ten-minute
run), the seed `KT_SOAK_SEED`. Every round injects one to three faults at once, drawn
from every kind the exchange has (connection, frame, subscription and handshake
faults) but the ones that must stop the recorder (a permanent close code). Every few
seconds the test waits until the recorder streams again with whole books (the time
to recover), quiesces the market and compares the consumer's books with the truth.
At the end: the recorder never exited and streams, its capture verifies, every
frame stored is byte for byte one the exchange sent (frames are lost only in flight
at a connection's end), and the marks of the faults are there. The figures go to
`.results/fault_soak.json`.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from replay.server import SimServer

from ..results import ResultLog
from .capture_facts import read_capture, server_sent
from .rig import Rig, server_config

pytestmark = [pytest.mark.soak, pytest.mark.timeout(1800)]

#: Keep-alive and staleness scaled down like the matrix's rows; the attempt limiter too
#: (10 per 60 s by default), since faults come here every half second or so, far more
#: often than a minute allows: at the default it would hold the recorder for most of
#: each minute, which is its job (test_attempt_rate.py) but not this test's subject.
LIVE = {"ping_interval_s": 0.3, "ping_timeout_s": 0.3, "close_timeout_s": 0.3,
        "open_timeout_s": 0.5, "stale_floor_s": 0.8, "stale_multiplier": 5.0,
        "stale_min_observations": 10, "stale_check_interval_s": 0.05,
        "attempts_per_window": 20, "attempt_window_s": 2.0}  # fmt: skip
CHECK_EVERY_S = 5.0


def _now(kind: str, **args: Any) -> Callable[[Rig], None]:
    def inject(rig: Rig) -> None:
        rig.server.inject(kind, **args)  # on every open connection (none while reconnecting)

    return inject


def _next_handshake(spec: str) -> Callable[[Rig], None]:
    def inject(rig: Rig) -> None:
        conns = [c.conn_no for c in rig.server.connections]
        rig.server.add_fault(spec.format(n=max(conns, default=0) + 1))

    return inject


POOL: dict[str, Callable[[Rig], None]] = {
    **{f"close:{c}": _now("close", code=c) for c in (1000, 1001, 1011, 1012, 1013)},
    "drop": _now("drop"),
    "stall": _now("stall", duration_s=1.5),
    "no_pong": _now("no_pong"),
    **{k: _now(k) for k in ("gap", "dup", "reorder", "malformed", "bad_utf8", "oversized")},
    **{k: _now(k) for k in ("unsubscribed", "error25")},  # subscribed again at once
    "reject": _next_handshake("reject:503@conn={n}"),
    "slow_handshake": _next_handshake("slow_handshake:1s@conn={n}"),
}


async def _checkpoint(rig: Rig) -> tuple[bool, bool]:
    """Wait for whole books (at most 15 s); (settled, the consumer's books equal the truth)."""
    try:
        await rig.until(rig.settled, 15.0)
        settled = True
    except TimeoutError:
        settled = False
    matches = await rig.books_match_truth(timeout_s=10.0)
    return settled, all(matches.values())


def _doubled_channels(rig: Rig) -> list[tuple[int, str]]:
    """(connection, channel) the exchange holds more than one subscription of: the
    recorder subscribes each channel once, so a second one records it twice."""
    doubled = []
    for conn in rig.server.connections:
        channels = Counter(s.channel for s in conn.session.subscriptions.values())
        doubled += [(conn.conn_no, ch) for ch, n in channels.items() if n > 1]
    return doubled


async def _watch_outages(rig: Rig, outages_s: list[float], stop: asyncio.Event) -> None:
    """Sample every 10 ms whether the recorder streams with whole books; keep outage lengths."""
    down_since: float | None = None
    while not stop.is_set():
        now, settled = time.monotonic(), rig.settled()
        if not settled and down_since is None:
            down_since = now
        elif settled and down_since is not None:
            outages_s.append(now - down_since)
            down_since = None
        await asyncio.sleep(0.01)
    if down_since is not None:
        outages_s.append(time.monotonic() - down_since)


async def test_random_fault_combinations_never_stop_the_recorder_nor_corrupt_its_capture(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest
) -> None:
    duration_s = float(os.environ.get("KT_SOAK_FAULT_S", "20"))
    seed = int(os.environ.get("KT_SOAK_SEED", "1"))
    rng = random.Random(seed)

    names = sorted(POOL)
    injected: Counter[str] = Counter()
    combos = 0
    settled: list[bool] = []
    outages_s: list[float] = []
    books: list[bool] = []
    timeline: list[tuple[float, str]] = []
    doubled: list[tuple[int, str]] = []
    truth_path, root = tmp_path / "truth.ndjson", tmp_path / "capture"
    started = time.monotonic()
    async with SimServer(server_config(truth_path)) as server, Rig(root, server, live=LIVE) as rig:
        await rig.wait_streaming()
        stop_watch = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(_watch_outages(rig, outages_s, stop_watch))
        end = time.monotonic() + duration_s
        next_check = time.monotonic() + CHECK_EVERY_S
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            assert rig.running, "the recorder exited"
            combo = rng.sample(names, rng.choice((1, 1, 2, 3)))
            for name in combo:
                POOL[name](rig)
                injected[name] += 1
                await asyncio.sleep(rng.uniform(0.0, 0.05))
            combos += 1
            timeline.append((round(time.monotonic() - started, 2), " + ".join(combo)))
            if time.monotonic() >= next_check:
                whole, equal = await _checkpoint(rig)
                settled.append(whole)
                books.append(equal)
                if whole:  # once settled, every channel is subscribed exactly once
                    doubled += _doubled_channels(rig)
                timeline.append((round(time.monotonic() - started, 2),
                                     f"check: settled {whole}, books equal {equal}"))  # fmt: skip
                next_check = time.monotonic() + CHECK_EVERY_S
        whole, equal = await _checkpoint(rig)
        settled.append(whole)
        books.append(equal)
        stop_watch.set()
        await watcher
        running, state = rig.running, rig.session.state.value
        stats = rig.session.stats
        resyncs, final_conn = stats.resyncs, stats.connects
        await rig.stop()
    assert server.truth is not None
    facts = read_capture(root, server_sent(truth_path, server.truth))
    fired = Counter(f["fault"] for f in server.truth.faults())
    out = {
        "case": f"random combinations, {duration_s:.0f} s", "duration_s": duration_s,
        "wall_s": time.monotonic() - started, "seed": seed, "combinations": combos,
        "injected": dict(injected), "fired": dict(fired), "reconnects": facts.reconnects,
        "disconnect_reasons": dict(Counter(c["disconnect_reason"] for c in facts.connections
                                           if c["disconnect_reason"])),
        "gaps": dict(facts.gap_kinds), "unrecovered": facts.unrecovered,
        "unresyncable": facts.unresyncable,
        "unrecovered_conns": facts.unrecovered_conns, "resyncs": resyncs,
        "frames": facts.delivery.frames, "lost_in_flight": facts.delivery.lost,
        "byte_exact": facts.delivery.byte_exact, "rejected": len(facts.unknown_raw),
        "book_checks": len(books), "book_checks_equal": sum(books),
        "outages": len(outages_s), "outage_s_max": max(outages_s, default=0.0),
        "outage_s_median": statistics.median(outages_s) if outages_s else 0.0,
        "downtime_share": sum(outages_s) / duration_s, "settle_timeouts": settled.count(False),
        "rate_limit_waits": sum(1 for d in facts.events_of("reconnect_wait")
                                if d.get("reason") == "rate_limit"),
        "verifies": facts.verifies,
        "problems": facts.problems, "warnings": facts.warnings, "running": running,
        "final_state": state,
    }  # fmt: skip
    results.add("fault_soak", out, request)
    assert running and state == "STREAMING"
    assert out["verifies"], out["problems"]
    assert out["byte_exact"], "a stored frame is not one the exchange sent"
    assert all(books), f"the consumer's books differ from the truth at a check: {timeline}"
    assert all(settled), f"the recorder did not recover within 15 s: {timeline}"
    assert not doubled, f"channels subscribed twice on a connection: {doubled}"
    assert final_conn not in facts.unrecovered_conns  # a gap left open only by a connection's end
    rejected = len(facts.events_of("frame_rejected"))
    assert rejected == len(facts.unknown_raw) <= fired["malformed"] + fired["bad_utf8"]
    assert facts.big_frames <= fired["oversized"]
    assert sum(len(facts.closes(code=c)) for c in (1000, 1001, 1011, 1012, 1013)) >= 1
