"""A full disk and wall-clock steps: capture goes on, nothing is corrupted, losses are data.

The disk-full test runs the journal on a real 2 MiB tmpfs (skipped, with the reason, if
this process may not mount one). Wall-clock steps arrive as recv_ns stamps that jump an
hour back and forth, as a stepped system clock would stamp them; the durability code
reads only the monotonic clock, which a source check below holds it to.
"""

from __future__ import annotations

import ast
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recorder.storage._segment import read_segment
from recorder.storage.journal import JournalWriter
from recorder.storage.publisher import Publisher, sealed_segments
from schemas.events import CaptureGap, event_from_bytes
from schemas.record import utc_date

from .helpers import BASE_NS, RUN_A, append_frames, published, published_idx

STORAGE = Path(__file__).resolve().parents[2] / "recorder" / "storage"
HOUR_NS = 3600 * 10**9


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs here ({done.stderr.strip()}); run as root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_corrupts_nothing_records_the_gap_and_capture_resumes(
    small_disk: Path, tmp_path: Path
) -> None:
    journal, root = small_disk / "journal", tmp_path / "root"
    filler = small_disk / "filler"
    reported: list[int] = []
    writer = JournalWriter(
        journal,
        RUN_A,
        commit_interval_s=0.005,
        retry_interval_s=0.005,
        segment_max_bytes=64 << 10,
        memory_limit_bytes=128 << 10,
        on_durable=lambda idx, _lat: reported.append(idx),
    )
    stat = os.statvfs(small_disk)
    with filler.open("wb") as f:
        f.write(b"\0" * (stat.f_bavail * stat.f_frsize - (300 << 10)))

    i = 0
    while writer.stats().frames_dropped < 200:  # until the disk is full and memory too
        append_frames(writer, i, 50)
        i += 50
        time.sleep(0.002)
        assert i < 200_000, writer.stats()
    full = writer.stats()
    assert full.write_errors > 0
    assert "No space left on device" in (full.last_error or "")
    assert full.backlog_bytes <= 128 << 10

    filler.unlink()  # space returns
    deadline = time.monotonic() + 10
    while writer.stats().backlog_bytes and time.monotonic() < deadline:
        time.sleep(0.005)
    assert writer.stats().backlog_bytes == 0
    append_frames(writer, i, 50)  # the first of these is preceded by the gap event
    i += 50
    assert writer.wait_durable(writer.next_idx - 1, 10)
    stats = writer.close()
    total = writer.next_idx

    for segment in sealed_segments(journal):
        data = read_segment(segment)
        assert (data.skipped_bytes, data.tail_bytes) == (0, 0), segment.name  # nothing corrupt
    Publisher(journal, root).publish_pending()

    rows = published(root, ["idx", "type", "raw"]).to_pylist()
    gaps = [event_from_bytes(r["raw"]) for r in rows if r["type"] == "capture_gap"]
    assert len(gaps) >= 1
    assert all(isinstance(g, CaptureGap) for g in gaps)
    assert sum(g.lost_frames for g in gaps) == stats.frames_dropped
    assert "No space left on device" in gaps[0].reason
    lost = {n for g in gaps for n in range(g.first_idx, g.last_idx + 1)}
    assert len(lost) == stats.frames_dropped
    assert published_idx(root) == {(RUN_A, n): 1 for n in range(total) if n not in lost}
    assert set(reported) <= {r["idx"] for r in rows}


def test_a_wall_clock_step_of_an_hour_either_way_loses_nothing(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    latencies_ns: list[int] = []
    publisher = Publisher(journal, root)
    publisher.start()
    writer = JournalWriter(
        journal,
        RUN_A,
        commit_interval_s=0.01,
        segment_max_age_s=0.05,
        on_sealed=publisher.submit,
        on_durable=lambda _idx, lat: latencies_ns.append(lat),
    )
    start = BASE_NS + HOUR_NS // 2  # 2026-01-01T00:30Z
    steps = [0, -HOUR_NS, 0, +HOUR_NS, +HOUR_NS]  # back across midnight, then forward twice
    stamps: dict[int, int] = {}
    for block in range(len(steps)):
        wall_ns = start + sum(steps[: block + 1]) + block * 10**6
        for n in range(block * 100, block * 100 + 100):
            (idx,) = append_frames(writer, n, 1, recv_ns=wall_ns + n)
            stamps[idx] = wall_ns + n
        time.sleep(0.03)
    writer.close()
    publisher.close()

    assert published_idx(root) == {(RUN_A, n): 1 for n in range(500)}
    for path in root.glob("channel=*/date=*/*.parquet"):
        idx = pq.read_table(path, columns=["idx"])["idx"].to_pylist()
        assert {utc_date(stamps[n]) for n in idx} == {path.parent.name.removeprefix("date=")}
    assert {p.parent.name for p in root.glob("channel=*/date=*/*.parquet")} == {
        "date=2025-12-31",
        "date=2026-01-01",
    }
    assert max(latencies_ns) < 2 * 10**9  # commits kept their monotonic cadence


WALL_CLOCK = {("time", "time"), ("time", "time_ns"), ("datetime", "now"), ("datetime", "utcnow")}
WALL_CLOCK |= {("date", "today"), ("datetime", "today"), ("time", "localtime")}
DURABILITY_MODULES = (
    "journal",
    "_segment",
    "_durable",
    "root",
    "publisher",
    "_table",
    "recovery",
)


def wall_clock_calls(source: str) -> list[str]:
    return [
        f"{node.lineno}: {owner.id}.{node.func.attr}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(owner := node.func.value, ast.Name)
        and (owner.id, node.func.attr) in WALL_CLOCK
    ]


@pytest.mark.parametrize("module", DURABILITY_MODULES)
def test_durability_code_never_reads_the_wall_clock(module: str) -> None:
    assert wall_clock_calls((STORAGE / f"{module}.py").read_text()) == []


def test_the_source_check_catches_a_wall_clock_read() -> None:
    assert wall_clock_calls("import time\nt = time.time_ns()\n") == ["2: time.time_ns"]
