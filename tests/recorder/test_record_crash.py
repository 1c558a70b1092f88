"""kill -9 the real recorder while the simulated exchange streams; nothing durable is lost.

Each cycle starts `kalshi-tape record` against an exchange running in its own process
(with its truth: a digest of every frame it sent), lets it record for a random while,
reads the durable idx its status file last reported, and kills it with SIGKILL. The
next start recovers the torn journal before connecting. At the end: every idx
reported durable is present exactly once, no idx is duplicated, every file reads,
every frame captured is one the exchange sent (bytes exact), and the capture verifies.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from recorder.storage.recovery import recover
from replay.reading.bulk import iter_frames
from replay.reading.capture import Capture
from replay.server.truth import frame_digest
from replay.sql.verify import verify_capture

from ..results import ResultLog
from .helpers import crash_cases

pytestmark = pytest.mark.timeout(900)


def start_exchange(tmp_path: Path) -> tuple[subprocess.Popen[str], str, Path]:
    truth = tmp_path / "truth.ndjson"
    proc = subprocess.Popen(
        [sys.executable, "-m", "replay.server", "--open", "--port", "0", "--rate", "3000",
         "--markets", "12", "--seed", "5", "--switch", "orderbook_without_tickers=all",
         "--truth", str(truth)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("ws://"), url
    return proc, url, truth


def write_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "record.toml"
    config.write_text(
        f'[connection]\nurl = "{url}"\n'
        '[channels]\norderbook_delta = "all"\nticker = "all"\ntrade = "all"\n'
        f'[storage]\nroot = "{tmp_path / "data"}"\ncommit_interval_ms = 20\n'
        "segment_max_mb = 0.25\ncheckpoint_interval_s = 1\n"
        '[jobs]\ncompaction = ""\n[health]\nstatus_interval_s = 0.05\n'
    )
    return config


def status_of(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


#: What a starting recorder says after recovering the journal its killed predecessor left.
RECOVERED = re.compile(r"recovered (\d+) journal segment\(s\) in ([0-9.]+) s")


def crash_cycles(tmp_path: Path, cycles: int, seed: int) -> dict[str, Any]:
    """Kill and restart `cycles` times, then count: the figures of the results table, with
    the first few lost or doubled idx and the capture's problems as `examples`."""
    rng = random.Random(seed)
    exchange, url, truth = start_exchange(tmp_path)
    config = write_config(tmp_path, url)
    root = tmp_path / "data"
    status = root / "_status.json"
    durable: dict[str, int] = {}
    recovery_s: list[float] = []  # each start's recovery of the journal left by a kill
    try:
        for _ in range(cycles):
            proc = subprocess.Popen(
                [sys.executable, "-m", "kalshi_tape", "record", "--config", str(config),
                 "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            run_id = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # wait until this run reports durable frames
                s = status_of(status)
                if s and s["pid"] == proc.pid and s["durable_idx"] >= 0:
                    run_id = s["run_id"]
                    break
                time.sleep(0.02)
            assert run_id is not None, proc.stderr.read() if proc.poll() is not None else ""
            time.sleep(rng.uniform(0.05, 1.2))
            s = status_of(status)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.stderr is not None
            recovery_s += [float(m[1]) for m in RECOVERED.findall(proc.stderr.read())]
            if s and s["run_id"] == run_id:
                durable[run_id] = max(durable.get(run_id, -1), s["durable_idx"])
        report = recover(root / "_journal", root)
    finally:
        exchange.send_signal(signal.SIGTERM)
        exchange.wait(30)

    channels = sorted(Capture(root).channels)
    seen: Counter[tuple[str, int]] = Counter()
    captured_in: list[bytes] = []
    for f in iter_frames(root, channels=channels):
        seen[(f.run_id, f.idx)] += 1
        if f.dir == "in":
            captured_in.append(f.raw)
    doubled = [k for k, n in seen.items() if n > 1]
    lost = [
        (run_id, i) for run_id, idx in durable.items() for i in range(idx + 1)
        if (run_id, i) not in seen
    ]  # fmt: skip
    sent = {json.loads(line)["digest"] for line in truth.read_text().splitlines()
            if '"kind":"sent"' in line.replace(" ", "")}  # fmt: skip
    not_sent = sum(1 for raw in captured_in if frame_digest(raw) not in sent)
    verdict = verify_capture(root)
    recovery_s.append(report.total_s)
    assert len(durable) == cycles
    assert sent
    # a start recovers nothing when its predecessor died between two segments
    assert len(recovery_s) > cycles // 2, "starts did not report their recovery"
    return {
        "cycles": cycles,
        "durable": sum(idx + 1 for idx in durable.values()),
        "lost": len(lost),
        "doubled": len(doubled),
        "unreadable": len(verdict.unreadable),
        "not_sent": not_sent,
        "verifies": not verdict.corrupt,
        "recovery_s_median": statistics.median(recovery_s),
        "recovery_s_max": max(recovery_s),
        "examples": [*map(str, lost[:5]), *map(str, doubled[:5]), *verdict.problems()[:5]],
    }


WHAT = "the whole `kalshi-tape record` process, against the simulated exchange"


@pytest.mark.parametrize(
    ("cycles", "seed", "label"), crash_cases(int(os.environ.get("KT_CRASH_CYCLES", "25")))
)
def test_kill_9_the_recorder_repeatedly_and_lose_nothing_durable(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest,
    cycles: int, seed: int, label: str,
) -> None:  # fmt: skip
    figures = crash_cycles(tmp_path, cycles, seed)
    results.add("crash", {"case": f"{WHAT} ({label})", **figures}, request)
    counts = ("lost", "doubled", "unreadable", "not_sent")
    assert [figures[k] for k in counts] == [0, 0, 0, 0], figures
    assert figures["verifies"], figures["examples"]


def _children(pid: int) -> dict[int, str]:
    """The live processes whose parent is `pid`, with their command lines (from /proc)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
    return {k: v.replace(b"\0", b" ").decode(errors="replace")[:120] for k, v in out.items()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie is dead, only not yet reaped by its new parent


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_recorder_killed_with_9_leaves_no_process_behind(tmp_path: Path) -> None:
    """Its publisher, the simulated exchange and multiprocessing's helper all go with it."""
    root = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kalshi_tape", "record", "--sim", "--root", str(root),
         "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = status_of(root / "_status.json")
            if s and s["pid"] == proc.pid and s["durable_idx"] >= 0:
                break
            time.sleep(0.05)
        children = _children(proc.pid)
        assert any("spawn_main" in cmd for cmd in children.values()), children  # the publisher
        assert any("replay.server" in cmd for cmd in children.values()), children
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.05)
    left = {pid: cmd for pid, cmd in children.items() if _alive(pid)}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == {}, f"still running after the recorder was killed: {left}"
