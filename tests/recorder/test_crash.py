"""Crash tests with real processes: SIGKILL a recording process, recover, check the tape.

Each cycle starts `journal_driver.py record` (a real process appending frames at a
steady rate and printing every idx its journal reports durable), kills it with SIGKILL
at a random moment (or just as its publisher is about to fsync a file), runs recovery
and checks: every idx reported durable is published exactly once, no idx is published
twice, every published file is readable, no temporary file or segment is left.

25 cycles run in the default suite; the soak case runs KT_SOAK_CYCLES more (default 10,
so CI runs the marker quickly): `KT_SOAK_CYCLES=200 pytest -m soak tests/recorder`.
The figures go to the `crash` results table before the verdict.
"""

from __future__ import annotations

import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from recorder.storage._segment import parse_segment_name
from recorder.storage.recovery import recover

from ..results import ResultLog
from .helpers import crash_cases, live_paths, unreadable_files

DRIVER = Path(__file__).with_name("journal_driver.py")


def run_and_kill(journal: Path, root: Path, rng: random.Random, publish: bool) -> tuple[str, int]:
    """One recorder life: returns (run_id, highest idx it reported durable, or -1)."""
    cmd = [sys.executable, str(DRIVER), "record", str(journal), str(root), "--rate", "20000"]
    cmd += ["--segment-bytes", str(rng.choice([16, 64, 256]) << 10)]
    if publish:
        cmd.append("--publish")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        first = proc.stdout.readline().split()
        assert first[0] == "RUN", first
        if publish:  # die just as the publisher is about to fsync its n-th file or directory
            target = f"P {rng.randint(1, 4)}"
            for line in proc.stdout:
                lines.append(line)
                if line.strip() == target:
                    break
        else:
            time.sleep(rng.uniform(0.0, 0.15))
    finally:
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait()
    lines += rest.splitlines(keepends=True)
    durable = [int(ln.split()[1]) for ln in lines if ln.startswith("D ") and ln.endswith("\n")]
    return first[1], max(durable, default=-1)


def check_run(root: Path, run_id: str, durable: int) -> tuple[list[int], list[int]]:
    """(durable idx not published, idx published twice) of one run."""
    counts: Counter[int] = Counter()
    for path in live_paths(root):
        if path.name.startswith(run_id):
            counts.update(pq.read_table(path, columns=["idx"]).column("idx").to_pylist())
    doubled = [i for i, n in counts.items() if n > 1]
    missing = [i for i in range(durable + 1) if i not in counts]
    return missing, doubled


def crash_cycles(tmp_path: Path, cycles: int, seed: int) -> dict[str, Any]:
    """Kill, recover and count `cycles` times: the figures of the results table, with the
    first few lost, doubled or unreadable items as `examples`."""
    rng = random.Random(seed)
    journal, root = tmp_path / "journal", tmp_path / "root"
    runs: list[tuple[str, int]] = []
    recovery_s: list[float] = []
    lost: list[str] = []
    doubled: list[str] = []
    for cycle in range(cycles):
        run_id, durable = run_and_kill(journal, root, rng, publish=cycle % 3 == 2)
        report = recover(journal, root)
        recovery_s.append(report.total_s)
        assert report.quarantined == []
        assert [p.name for p in journal.iterdir() if parse_segment_name(p.name)] == []
        assert [p for p in root.rglob(".*.tmp")] == []
        missing, twice = check_run(root, run_id, durable)
        lost += [f"{run_id}:{i}" for i in missing]
        doubled += [f"{run_id}:{i}" for i in twice]
        runs.append((run_id, durable))
    unreadable = unreadable_files(root)  # every file readable, in full
    assert sum(d >= 0 for _, d in runs) >= cycles // 2  # most lives made something durable
    return {
        "cycles": cycles,
        "durable": sum(d + 1 for _, d in runs),
        "lost": len(lost),
        "doubled": len(doubled),
        "unreadable": len(unreadable),
        "recovery_s_median": statistics.median(recovery_s),
        "recovery_s_max": max(recovery_s),
        "examples": [*lost[:5], *doubled[:5], *unreadable[:5]],
    }


WHAT = "the journal writer, at random moments and as its publisher fsyncs"


@pytest.mark.parametrize(("cycles", "seed", "label"), crash_cases(25))
def test_kill_9_at_random_points_loses_no_durable_frame_and_duplicates_none(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest,
    cycles: int, seed: int, label: str,
) -> None:  # fmt: skip
    figures = crash_cycles(tmp_path, cycles, seed)
    results.add("crash", {"case": f"{WHAT} ({label})", **figures}, request)
    assert (figures["lost"], figures["doubled"], figures["unreadable"]) == (0, 0, 0), figures
