"""Wall-clock steps of an hour, both ways, under the real recorder process.

`kalshi-tape record` runs under libfaketime (LD_PRELOAD; `DONT_FAKE_MONOTONIC=1`, so
only CLOCK_REALTIME moves) while the simulated exchange streams from its own, unfaked
process. The test steps the recorder's wall clock by rewriting libfaketime's timestamp
file: +1 h, then -1 h, then -1 h again. Across the steps nothing may be lost (idx
continuous, no seq gap, no capture gap, the capture verifies), no group commit may be
delayed (durable lag, sampled from the status file every few ms, stays within the
commit bound; the group commit runs on the monotonic clock), the recorded `recv_ns`
must jump by the steps (proof that the clock really moved) while `mono_ns` does not,
and a replay at speed k must take the capture's monotonic duration / k. The journal
level of the same property is tests/recorder/test_faults.py. It knows nothing of the
recorder's insides.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from replay.reading.bulk import iter_frames
from replay.reading.capture import Capture
from replay.reading.session import ReplaySession
from replay.sql.verify import verify_capture

from ._procs import exchange, recording, wait_for, write_config

pytestmark = pytest.mark.timeout(240)
HOUR_S = 3600
COMMIT_INTERVAL_MS = 50
#: A commit waits at most one interval plus its fdatasync; a wall-clock timer would be
#: off by the step (an hour) instead. The margin absorbs a shared, noisy machine.
LAG_BOUND_MS = COMMIT_INTERVAL_MS + 250
PHASE_S = 3.0
STEPS = ("+1h", "+0", "-1h")  # each rewrite steps the clock: +1 h, -1 h, -1 h
SPEED = 5.0


def faketime_env(timestamp_file: Path) -> dict[str, str]:
    libfaketime = pytest.importorskip("libfaketime")
    _, preload = libfaketime.get_reload_information()
    env = {**os.environ, **preload, "FAKETIME_TIMESTAMP_FILE": str(timestamp_file)}
    env["DONT_FAKE_MONOTONIC"] = "1"  # only the wall clock steps
    env["FAKETIME_NO_CACHE"] = "1"  # every clock read sees the file as it is now
    env.pop("FAKETIME", None)  # it would take precedence over the file
    return env


def set_clock(timestamp_file: Path, offset: str) -> None:
    """Replace libfaketime's file in one step: a reader sees the old offset or the new."""
    tmp = timestamp_file.with_suffix(".tmp")
    tmp.write_text(offset + "\n")
    tmp.replace(timestamp_file)


class StatusSampler(threading.Thread):
    """Reads the status file every few ms: (test monotonic s, status) per new status."""

    def __init__(self, read: Any) -> None:
        super().__init__(daemon=True)
        self.read = read
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        last = None
        while not self.stopped.is_set():
            s = self.read()
            if s is not None and s != last:
                self.samples.append((time.monotonic(), s))
                last = s
            time.sleep(0.005)


def catch_up_s(samples: list[tuple[float, dict[str, Any]]]) -> float:
    """The longest time from a status showing a record appended to one showing it durable."""
    worst = 0.0
    j = 0
    for i, (t, s) in enumerate(samples):
        j = max(j, i)
        while j < len(samples) and samples[j][1]["durable_idx"] < s["appended_idx"]:
            j += 1
        if j == len(samples):
            break
        worst = max(worst, samples[j][0] - t)
    return worst


def test_wall_clock_steps_lose_nothing_delay_no_commit_and_leave_replay_pacing_alone(
    tmp_path: Path,
) -> None:
    clock = tmp_path / "faketime.rc"
    clock.write_text("+0\n")
    env = faketime_env(clock)
    root = tmp_path / "data"
    stepped_at: list[float] = []
    with exchange(rate=1500, markets=10) as url:
        config = write_config(
            tmp_path / "record.toml", url, root,
            storage={"commit_interval_ms": COMMIT_INTERVAL_MS},
            health={"status_interval_s": 0.02},
        )  # fmt: skip
        with recording(config, root / "_status.json", tmp_path / "record.log", env=env) as rec:
            assert wait_for(lambda: (s := rec.status()) and s["durable_idx"] > 200, 30), (
                rec.stderr()
            )
            sampler = StatusSampler(rec.status)
            sampler.start()
            time.sleep(PHASE_S)
            for offset in STEPS:
                set_clock(clock, offset)
                stepped_at.append(time.monotonic())
                time.sleep(PHASE_S)
            sampler.stopped.set()
            sampler.join()
            assert rec.alive(), rec.stderr()
            assert rec.stop() == 0, rec.stderr()
        assert "Traceback" not in rec.stderr()

    samples = sampler.samples
    lags = [s["durable_lag_ms"] for _, s in samples]
    worst_catch_up = catch_up_s(samples)
    final = samples[-1][1]
    assert len(samples) > 100
    assert max(lags) < LAG_BOUND_MS, sorted(lags)[-5:]
    assert worst_catch_up < 1.0
    assert final["capture_dropped_frames"] == 0 and final["journal_write_errors"] == 0

    jumps, records = _check_capture(root)
    assert jumps == [HOUR_S, -HOUR_S, -HOUR_S]  # the recorder's clock really stepped

    expected_s, replay_s = _replay_duration(root)
    assert abs(replay_s - expected_s) < 0.15 * expected_s + 0.5, (replay_s, expected_s)
    per_phase = _lag_per_phase(samples, stepped_at)
    print(
        f"\nclock steps {STEPS}: {records} records, durable lag max {max(lags):.1f} ms "
        f"(per phase {per_phase}), worst append-to-durable {worst_catch_up * 1000:.0f} ms; "
        f"replay at {SPEED:g}x took {replay_s:.2f} s for {expected_s * SPEED:.2f} s of "
        f"monotonic capture (expected {expected_s:.2f} s)"
    )


def _lag_per_phase(samples: list[tuple[float, dict[str, Any]]], steps: list[float]) -> list[str]:
    edges = [0.0, *steps, float("inf")]
    out = []
    for lo, hi in itertools.pairwise(edges):
        phase = [s["durable_lag_ms"] for t, s in samples if lo <= t < hi]
        out.append(f"{max(phase):.0f}" if phase else "-")
    return out


def _check_capture(root: Path) -> tuple[list[int], int]:
    """Nothing lost; the steps of the recorder's wall clock, in seconds, in record order."""
    channels = sorted(Capture(root).channels)
    frames = sorted(
        ((f.idx, f.recv_ns, f.mono_ns, f.type) for f in iter_frames(root, channels=channels)),
    )
    idx = [f[0] for f in frames]
    assert idx == list(range(len(idx)))  # every record, once, no hole
    assert "capture_gap" not in {f[3] for f in frames}
    assert all(b[2] >= a[2] for a, b in itertools.pairwise(frames))  # mono: steady
    report = verify_capture(root)
    assert not report.problems(), report.problems()
    assert not report.capture_gaps and not report.seq_summary.get("unrecovered", 0)
    return _steps(frames), len(idx)


#: A run of fewer records than this at one clock offset is a libfaketime read that fell
#: back to the real clock (seen once in ~10k records: one frame at offset 0 mid-phase).
BLIP_RECORDS = 3


def _steps(frames: list[tuple[int, int, int, str]]) -> list[int]:
    """The wall-clock offset (recv_ns - mono_ns, in whole hours) per record, as runs; a
    blip must sit at the real clock (offset 0); returns the steps between the runs."""
    base = frames[0][1] - frames[0][2]
    offsets = [round((f[1] - f[2] - base) / 1e9 / HOUR_S) for f in frames]
    runs = [(level, len(list(group))) for level, group in itertools.groupby(offsets)]
    blips = [level for level, n in runs if n < BLIP_RECORDS]
    assert set(blips) <= {0}, runs  # a stale non-zero offset would be ours, not libfaketime's
    levels = [level for level, _ in itertools.groupby(lv for lv, n in runs if n >= BLIP_RECORDS)]
    return [(b - a) * HOUR_S for a, b in itertools.pairwise(levels)]


def _replay_duration(root: Path) -> tuple[float, float]:
    """(expected s, measured s) of a paced replay of the trades (with _control, _session)."""
    paced = [f.mono_ns for f in iter_frames(root, channels=["trade", "_control", "_session"])]
    expected_s = (max(paced) - min(paced)) / 1e9 / SPEED

    async def replay() -> float:
        started = time.monotonic()
        async with ReplaySession(root, channels=["trade"], speed=SPEED) as session:
            trades = await session.subscribe_trade(raw=True)
            count = 0
            async for _ in trades:
                count += 1
        assert count > 0
        return time.monotonic() - started

    measured = asyncio.run(asyncio.wait_for(replay(), expected_s * 2 + 30))
    return expected_s, measured
