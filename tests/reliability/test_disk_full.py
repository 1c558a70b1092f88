"""A full disk under the real recorder process: no crash, nothing corrupt, the loss recorded.

`kalshi-tape record` runs with its whole capture root (journal, Parquet partitions and
status file, the default layout) on a small tmpfs while the simulated exchange, in its
own process, streams. A filler file takes the last free byte mid-capture (and any byte
freed while the disk should stay full); the recorder must stay up, report the trouble
on its metrics endpoint (the status file lives on the full disk too), keep frames in
memory up to `memory_limit_mb` and drop the rest as a counted gap. When the filler
goes, capture must resume within 10 s, a `capture_gap` event must name the lost count,
and after a clean stop the capture must verify with no problem but the recorded gap.
The journal's own disk-full test (one level down) is tests/recorder/test_faults.py.
This module knows nothing of the recorder's insides.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from replay.reading.bulk import iter_frames
from replay.reading.capture import Capture
from replay.server.truth import frame_digest
from replay.sql.verify import verify_capture
from schemas.events import CaptureGap, event_from_bytes

from ._disk import Filler, free_bytes, small_tmpfs
from ._procs import exchange, free_port, metrics, read_status, recording, wait_for, write_config

pytestmark = pytest.mark.timeout(180)
RESUME_BOUND_S = 10.0  # issue 9, item 4


def test_a_full_disk_mid_capture_loses_only_a_recorded_gap_and_capture_resumes(
    tmp_path: Path,
) -> None:
    port = free_port()
    truth = tmp_path / "truth.ndjson"
    with small_tmpfs(tmp_path / "disk", 16) as disk:
        root = disk / "data"
        with exchange(rate=2000, truth=truth) as url:
            resume_s, final = _fill_and_free(tmp_path, disk, root, url, port)
        _check_capture(root, final, truth)  # the exchange has stopped: its truth is whole
    print(
        f"\ndisk full: {final['capture_dropped_frames']} frames lost while full, "
        f"{final['journal_write_errors']} write errors, capture resumed {resume_s:.2f} s "
        "after the space came back"
    )


def _fill_and_free(
    tmp_path: Path, disk: Path, root: Path, url: str, port: int
) -> tuple[float, dict]:
    """Record, fill the disk, hold, free it; (seconds to resume, the final status)."""
    config = write_config(
        tmp_path / "record.toml", url, root,
        storage={"memory_limit_mb": 1, "segment_max_mb": 1, "commit_interval_ms": 50},
        health={"status_interval_s": 0.05, "metrics_port": port},
    )  # fmt: skip
    with recording(config, root / "_status.json", tmp_path / "record.log") as rec:
        before = wait_for(lambda: (s := rec.status()) and s["durable_idx"] > 500 and s, 30)
        assert before, rec.stderr()

        filler = Filler(disk / "filler").start()
        assert free_bytes(disk) == 0
        full = wait_for(
            lambda: (m := metrics(port)) and m["capture_dropped_frames_total"] > 0 and m, 30
        )
        assert full, f"capture stopped when the disk filled: {metrics(port)} {rec.stderr()}"
        time.sleep(1.0)  # the disk stays full a while longer
        assert rec.alive(), rec.stderr()
        during = metrics(port)
        assert during, rec.stderr()
        assert during["disk_free_bytes"] < 1 << 20  # refilled within ms of any delete
        assert during["journal_backlog_bytes"] > 0.9 * (1 << 20)  # memory_limit_mb holds
        assert during["capture_dropped_frames_total"] > full["capture_dropped_frames_total"]

        received_by_then = during["frames_total"]  # every record appended so far
        filler.release()
        freed = time.monotonic()
        resumed = wait_for(
            lambda: (s := rec.status()) and s["durable_idx"] >= received_by_then - 1 and s,
            RESUME_BOUND_S + 5,
            every_s=0.01,
        )
        resume_s = time.monotonic() - freed
        assert resumed, rec.stderr()
        assert resume_s < RESUME_BOUND_S
        assert resumed["journal_write_errors"] > 0
        assert resumed["capture_dropped_frames"] > 0

        time.sleep(2.0)  # capture goes on
        last = rec.status()
        assert last and last["durable_idx"] > resumed["durable_idx"] + 1000
        assert last["capture_dropped_frames"] == resumed["capture_dropped_frames"]
        assert rec.stop() == 0, rec.stderr()
    log = rec.stderr()
    assert "Traceback" not in log
    assert "frames could not be kept" in log
    assert "cannot write the status file" in log  # said once, and capture went on
    final = read_status(root / "_status.json")
    assert final is not None

    journal = root / "_journal"
    assert not [p.name for p in journal.iterdir() if p.name != "LOCK"]  # all published
    return resume_s, final


def _check_capture(root: Path, final: dict, truth: Path) -> None:
    channels = sorted(Capture(root).channels)
    frames = list(iter_frames(root, channels=channels))
    gaps = [event_from_bytes(f.raw) for f in frames if f.type == "capture_gap"]
    assert gaps, "no capture_gap event"
    assert all(isinstance(g, CaptureGap) for g in gaps)
    assert sum(g.lost_frames for g in gaps) == final["capture_dropped_frames"]
    assert all("No space left on device" in g.reason for g in gaps)
    lost = {i for g in gaps for i in range(g.first_idx, g.last_idx + 1)}
    assert len(lost) == final["capture_dropped_frames"]

    held = sorted(f.idx for f in frames)
    assert len(held) == len(set(held))  # no duplicate
    assert set(range(held[-1] + 1)) - set(held) == lost  # the only hole is the recorded one

    report = verify_capture(root)
    assert not report.unreadable and not report.misfiled and not report.duplicate_count
    recorded = {(g.first_idx, g.last_idx) for g in gaps}
    assert {(h.first_missing, h.last_missing) for h in report.holes} <= recorded
    assert all(h.recorded for h in report.holes)
    assert not report.corrupt and report.problems() == []

    sent = {
        json.loads(line)["digest"]
        for line in truth.read_text().splitlines()
        if json.loads(line).get("kind") == "sent"
    }
    assert all(frame_digest(f.raw) in sent for f in frames if f.dir == "in")  # bytes intact
