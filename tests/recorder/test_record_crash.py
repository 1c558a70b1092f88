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
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from recorder.recovery import recover
from replay.bulk import iter_frames
from replay.capture import Capture
from replay.server.truth import frame_digest
from replay.verify import verify_capture

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


def crash_cycles(tmp_path: Path, cycles: int, seed: int) -> None:
    rng = random.Random(seed)
    exchange, url, truth = start_exchange(tmp_path)
    config = write_config(tmp_path, url)
    root = tmp_path / "data"
    status = root / "status.json"
    durable: dict[str, int] = {}
    try:
        for _ in range(cycles):
            proc = subprocess.Popen(
                [sys.executable, "-m", "kalshi_tape", "record", "--config", str(config),
                 "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
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
            if s and s["run_id"] == run_id:
                durable[run_id] = max(durable.get(run_id, -1), s["durable_idx"])
        report = recover(root / "journal", root)
    finally:
        exchange.send_signal(signal.SIGTERM)
        exchange.wait(30)

    assert len(durable) == cycles
    channels = sorted(Capture(root).channels)
    seen: Counter[tuple[str, int]] = Counter()
    captured_in: list[bytes] = []
    for f in iter_frames(root, channels=channels):
        seen[(f.run_id, f.idx)] += 1
        if f.dir == "in":
            captured_in.append(f.raw)
    assert not [k for k, n in seen.items() if n > 1], "duplicated idx"
    for run_id, idx in durable.items():
        held = {i for (r, i) in seen if r == run_id}
        missing = set(range(idx + 1)) - held
        assert not missing, f"{run_id}: durable frames lost: {sorted(missing)[:10]}"
    sent = {json.loads(line)["digest"] for line in truth.read_text().splitlines()
            if '"kind":"sent"' in line.replace(" ", "")}  # fmt: skip
    assert sent
    assert all(frame_digest(raw) in sent for raw in captured_in), "a frame not sent"
    verdict = verify_capture(root)
    assert not verdict.corrupt, verdict.problems()
    print(
        f"\n{cycles} kill -9 cycles: {len(seen)} records, final recovery "
        f"{report.total_s * 1000:.0f} ms for {report.segments} segments"
    )


def test_kill_9_the_recorder_repeatedly_and_lose_nothing_durable(tmp_path: Path) -> None:
    crash_cycles(tmp_path, int(os.environ.get("KT_CRASH_CYCLES", "25")), seed=1)


@pytest.mark.soak
def test_kill_9_soak(tmp_path: Path) -> None:
    """The long loop: KT_SOAK_CYCLES cycles (200 for the full run; small by default)."""
    crash_cycles(tmp_path, int(os.environ.get("KT_SOAK_CYCLES", "10")), seed=2)
