"""Memory and CPU of the real recorder process under a steady 5,000 frames/s.

`kalshi-tape record` records the simulated exchange (its own process, 5k frames/s)
while the test samples the recorder every fraction of a second: resident memory
(VmRSS, /proc/<pid>/status) and CPU time (utime + stime, /proc/<pid>/stat) of the
recorder process, and the same for the whole tree it heads (its publisher runs in a
child process), whose memory is the sum of PSS (/proc/<pid>/smaps_rollup): the
children map the same libraries, which RSS would count twice. Growth is the
least-squares slope of per-window medians after a warm-up (medians: publishing a
segment lifts memory for a moment), in MiB per hour; CPU is CPU seconds per wall
second (1.0 = one core). The short run in the default suite holds the recorder under
200 MB; the long one (`soak` marker, `KT_SOAK_RECORD_S` seconds: 1800 for the full
run, 20 by default) reports the figures, asserts growth under 10 MiB/h once the run is
long enough to judge, and checks the capture. Figures go to the `soak` table of
`.results/`. It knows nothing of the recorder's insides.

The 200 MB is the recorder's own install. The test extra also installs numpy (for Dask's
dataframe reader, tests/e2e/test_outside_readers.py), and pyarrow imports numpy wherever
it is installed: the bound then grows by numpy's measured cost in each process that
imports pyarrow (the recorder and its publisher).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from replay.sql.verify import verify_capture

from ._procs import ProcSample, exchange, proc_sample, recording, wait_for, write_config

MIB = 1 << 20
RATE_FPS = 5000
GROWTH_BOUND_MIB_PER_H = 10.0  # issue 9, item 8
JUDGE_AFTER_S = 600.0  # shorter runs are dominated by allocator and segment noise
SHORT_RSS_BOUND_BYTES = 200 * 1000 * 1000


@dataclass(frozen=True)
class Memory:
    """Memory (RSS of a process, or PSS of a tree) and CPU figures."""

    rss_start_mib: float
    rss_end_mib: float
    rss_max_mib: float
    growth_mib_per_h: float
    cpu_cores: float


@dataclass(frozen=True)
class SoakFigures:
    duration_s: float
    warmup_s: float
    recorder: Memory  # the recorder process alone
    tree: Memory  # with its children (the publisher process): PSS, not RSS
    processes: int
    frames: int
    frames_per_s: float
    dropped: int

    def row(self, case: str) -> dict[str, Any]:
        def rounded(d: dict[str, Any]) -> dict[str, Any]:
            return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}

        flat = {k: v for k, v in asdict(self).items() if k not in ("recorder", "tree")}
        return {"case": case, **rounded(flat),
                **{f"recorder_{k}": v for k, v in rounded(asdict(self.recorder)).items()},
                **{f"tree_{k}": v for k, v in rounded(asdict(self.tree)).items()}}  # fmt: skip


def slope_per_s(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def memory(samples: list[ProcSample], warmup_s: float, window_s: float, tree: bool) -> Memory:
    """Figures after the warm-up: memory as per-window medians, growth as their
    least-squares slope, CPU per wall second."""

    def rss(s: ProcSample) -> int:
        return s.tree_pss_bytes if tree else s.rss_bytes

    def cpu(s: ProcSample) -> float:
        return s.tree_cpu_s if tree else s.cpu_s

    t0 = samples[0].mono_s
    steady = [s for s in samples if s.mono_s - t0 >= warmup_s]
    windows: dict[int, list[ProcSample]] = {}
    for s in steady:
        windows.setdefault(int((s.mono_s - t0 - warmup_s) // window_s), []).append(s)
    medians = [(statistics.median(w.mono_s for w in ws), statistics.median(rss(w) for w in ws))
               for ws in windows.values()]  # fmt: skip
    return Memory(
        rss_start_mib=medians[0][1] / MIB,
        rss_end_mib=medians[-1][1] / MIB,
        rss_max_mib=max(rss(s) for s in samples) / MIB,
        growth_mib_per_h=slope_per_s(medians) * 3600 / MIB if len(medians) > 1 else 0.0,
        cpu_cores=(cpu(steady[-1]) - cpu(steady[0])) / (steady[-1].mono_s - steady[0].mono_s),
    )


def figures(samples: list[ProcSample], warmup_s: float, window_s: float, status: dict[str, Any],
            first_idx: int) -> SoakFigures:  # fmt: skip
    duration_s = samples[-1].mono_s - samples[0].mono_s
    frames = status["durable_idx"] - first_idx
    return SoakFigures(
        duration_s=duration_s,
        warmup_s=warmup_s,
        recorder=memory(samples, warmup_s, window_s, tree=False),
        tree=memory(samples, warmup_s, window_s, tree=True),
        processes=max(s.tree_size for s in samples),
        frames=frames,
        frames_per_s=frames / duration_s,
        dropped=status["capture_dropped_frames"],
    )


def soak(
    tmp_path: Path, duration_s: float, every_s: float, storage: dict[str, Any] | None = None
) -> tuple[SoakFigures, Path]:
    """Record at RATE_FPS for `duration_s`, sampling the recorder; its figures and root.
    `storage` overrides the recorder's defaults (64 MiB segments, 300 s at most)."""
    root = tmp_path / "data"
    warmup_s = min(60.0, duration_s / 3)
    window_s = max(1.0, min(60.0, (duration_s - warmup_s) / 10))
    with exchange(rate=RATE_FPS, markets=60, seed=11) as url:
        config = write_config(tmp_path / "record.toml", url, root, storage=storage or {},
                              health={"status_interval_s": 0.5})  # fmt: skip
        with recording(config, root / "_status.json", tmp_path / "record.log") as rec:
            first = wait_for(lambda: (s := rec.status()) and s["durable_idx"] >= 0 and s, 30)
            assert first, rec.stderr()
            samples = [proc_sample(rec.pid)]
            deadline = samples[0].mono_s + duration_s
            while time.monotonic() < deadline:
                time.sleep(every_s)
                assert rec.alive(), rec.stderr()
                samples.append(proc_sample(rec.pid))
            status = rec.status()
            assert status is not None
            assert rec.stop(timeout_s=300) == 0, rec.stderr()
    return figures(samples, warmup_s, window_s, status, first["durable_idx"]), root


def report(results: Any, request: pytest.FixtureRequest, case: str, f: SoakFigures) -> None:
    results.add("soak", f.row(case), request)

    def line(name: str, m: Memory) -> str:
        return (
            f"{name}: {m.rss_start_mib:.1f} -> {m.rss_end_mib:.1f} MiB (max "
            f"{m.rss_max_mib:.1f}), growth {m.growth_mib_per_h:+.1f} MiB/h, CPU "
            f"{m.cpu_cores * 100:.0f}% of a core"
        )

    print(
        f"\n{case}: {f.frames:,} frames ({f.frames_per_s:,.0f}/s), {f.dropped} dropped; after a "
        f"{f.warmup_s:.0f} s warm-up\n  {line('recorder process, RSS', f.recorder)}\n  "
        f"{line(f'with its children ({f.processes} processes), PSS', f.tree)}"
    )


def numpy_cost_bytes() -> int:
    """Resident memory one process gains by importing numpy (0 where it is not installed)."""
    code = (
        "import importlib.util, re, sys\n"
        "def rss(): return int(re.search(r'VmRSS:\\s+(\\d+)',\n"
        "                                open('/proc/self/status').read())[1])\n"
        "if importlib.util.find_spec('numpy') is None: print(0); sys.exit()\n"
        "before = rss(); import numpy; print((rss() - before) * 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.timeout(120)
def test_a_short_capture_at_5k_frames_per_second_stays_under_200_mb(
    tmp_path: Path, results: Any, request: pytest.FixtureRequest
) -> None:
    # Segments sealed every 3 s: the publisher process publishes during the run too.
    f, _ = soak(tmp_path, duration_s=10.0, every_s=0.1, storage={"segment_max_age_s": 3})
    report(results, request, f"capture {RATE_FPS} fps, {f.duration_s:.0f} s (short)", f)
    numpy = numpy_cost_bytes()  # see the module docstring
    assert f.recorder.rss_max_mib * MIB < SHORT_RSS_BOUND_BYTES + numpy
    assert f.tree.rss_max_mib * MIB < SHORT_RSS_BOUND_BYTES + 2 * numpy
    assert f.dropped == 0
    assert f.frames_per_s > 0.8 * RATE_FPS  # the recorder kept up


@pytest.mark.soak
@pytest.mark.timeout(4 * 3600)
def test_a_long_capture_at_5k_frames_per_second_does_not_grow(
    tmp_path: Path, results: Any, request: pytest.FixtureRequest
) -> None:
    duration_s = float(os.environ.get("KT_SOAK_RECORD_S", "20"))
    f, root = soak(tmp_path, duration_s=duration_s, every_s=0.5)
    report(results, request, f"capture {RATE_FPS} fps, {duration_s:.0f} s (soak)", f)
    assert f.dropped == 0
    assert f.frames_per_s > 0.8 * RATE_FPS
    if f.duration_s - f.warmup_s >= JUDGE_AFTER_S:
        assert f.tree.growth_mib_per_h < GROWTH_BOUND_MIB_PER_H
    verdict = verify_capture(root)
    assert not verdict.problems(), verdict.problems()
