"""The journal writer: idx, group commit, roll and seal, the lock, and failing devices.

Faults are injected by passing the writer its own fsync / fdatasync functions (no
patching of `os`); every file is a real file in a temporary directory.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from recorder.errors import JournalClosedError, JournalLockedError
from recorder.storage._segment import parse_segment_name, read_segment
from recorder.storage.journal import JournalWriter
from schemas.errors import ConfigError
from schemas.events import CaptureGap, event_from_bytes
from schemas.record import CaptureRecord

from .helpers import RUN_A, append_frames, feed_of


def sealed_records(journal: Path) -> list[CaptureRecord]:
    paths = sorted(
        (p for p in journal.iterdir() if (n := parse_segment_name(p.name)) and n.sealed),
        key=lambda p: parse_segment_name(p.name).segment,  # type: ignore[union-attr]
    )
    return [r for p in paths for r in read_segment(p).records()]


def file_identity(fd: int) -> tuple[int, str]:
    """(inode, segment) of an open file: inodes of deleted files are reused, and a
    segment keeps its number when it is renamed."""
    name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
    segment = parse_segment_name(name.removesuffix(" (deleted)"))
    return os.fstat(fd).st_ino, str(segment.segment) if segment else name


class SyncRecorder:
    """An fdatasync/fsync that can fail on demand and remembers which files it failed on."""

    def __init__(self, fail_calls: set[int] | None = None) -> None:
        self.fail_calls = fail_calls or set()
        self.failing = threading.Event()
        self.calls = 0
        self.failed_files: set[tuple[int, str]] = set()
        self.retried_files: list[tuple[int, str]] = []

    def __call__(self, fd: int) -> None:
        self.calls += 1
        identity = file_identity(fd)
        if identity in self.failed_files:
            self.retried_files.append(identity)
        if self.calls in self.fail_calls or self.failing.is_set():
            self.failed_files.add(identity)
            raise OSError(errno.EIO, "injected I/O error")
        os.fdatasync(fd)


def test_idx_counts_from_zero_and_keeps_increasing_across_segments(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, RUN_A, segment_max_bytes=4096, commit_interval_s=0.005) as w:
        first = append_frames(w, 0, 50)
        assert w.wait_durable(49, 5)
        second = append_frames(w, 50, 50)
    assert first + second == list(range(100))
    records = sealed_records(tmp_path)
    assert [r.idx for r in records] == list(range(100))
    assert len({parse_segment_name(p.name).segment for p in tmp_path.glob("*.seg")}) >= 2  # type: ignore[union-attr]


def test_segments_roll_by_size_after_the_commit_that_fills_them(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, RUN_A, segment_max_bytes=4096, commit_interval_s=0.005) as w:
        for start in range(0, 300, 10):
            append_frames(w, start, 10)
            assert w.wait_durable(start + 9, 5)
    sizes = [p.stat().st_size for p in tmp_path.glob("*.seg")]
    assert len(sizes) >= 5
    assert max(sizes) < 4096 + 10 * 400  # at most one commit past the limit
    assert [r.idx for r in sealed_records(tmp_path)] == list(range(300))


def test_segments_roll_by_age_measured_from_their_first_record(tmp_path: Path) -> None:
    sealed: list[Path] = []
    with JournalWriter(
        tmp_path, RUN_A, segment_max_age_s=0.1, commit_interval_s=0.01, on_sealed=sealed.append
    ) as w:
        for i in range(25):
            append_frames(w, i, 1)
            time.sleep(0.02)
        rolled_while_running = len(sealed)
    assert rolled_while_running >= 2
    assert [r.idx for r in sealed_records(tmp_path)] == list(range(25))


def test_an_idle_writer_makes_no_segment_files(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, RUN_A, segment_max_age_s=0.01, commit_interval_s=0.005):
        time.sleep(0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK"]


def test_durable_idx_advances_only_after_fdatasync_returns(tmp_path: Path) -> None:
    gate = threading.Event()
    entered = threading.Event()
    reported: list[int] = []

    def slow_fdatasync(fd: int) -> None:
        entered.set()
        gate.wait(10)
        os.fdatasync(fd)

    w = JournalWriter(
        tmp_path,
        RUN_A,
        commit_interval_s=0.005,
        fdatasync=slow_fdatasync,
        on_durable=lambda idx, _lat: reported.append(idx),
    )
    append_frames(w, 0, 20)
    assert entered.wait(5)
    (segment,) = tmp_path.glob("*.open")
    assert len(read_segment(segment)) == 20  # written, but not yet synced
    assert w.durable_idx == -1
    assert reported == []
    gate.set()
    assert w.wait_durable(19, 5)
    assert reported[-1] == 19
    w.close()


def test_on_durable_reports_each_commit_with_a_latency_from_the_oldest_frame(
    tmp_path: Path,
) -> None:
    reported: list[tuple[int, int]] = []
    with JournalWriter(
        tmp_path,
        RUN_A,
        commit_interval_s=0.01,
        on_durable=lambda idx, lat: reported.append((idx, lat)),
    ) as w:
        t0 = time.monotonic_ns()
        append_frames(w, 0, 5)
        assert w.wait_durable(4, 5)
        waited_ns = time.monotonic_ns() - t0
    assert reported[-1][0] == 4
    assert 0 < reported[-1][1] <= waited_ns


def test_a_second_writer_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    with (
        JournalWriter(tmp_path, RUN_A),
        pytest.raises(JournalLockedError, match=f"pid {os.getpid()}"),
    ):
        JournalWriter(tmp_path, RUN_A)
    JournalWriter(tmp_path, RUN_A).close()  # released on close


def test_a_writer_in_another_process_holds_the_lock_until_it_is_killed(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; "
        "from recorder.storage.journal import JournalLock; "
        "lock = JournalLock(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(JournalLockedError, match=f"pid {proc.pid}"):
            JournalWriter(tmp_path, RUN_A)
    finally:
        proc.kill()
        proc.wait()
    JournalWriter(tmp_path, RUN_A).close()


def test_a_failed_fdatasync_is_never_retried_on_the_same_file(tmp_path: Path) -> None:
    fdatasync = SyncRecorder(fail_calls={2})
    fsync = SyncRecorder()
    fsync.failed_files = fdatasync.failed_files  # a full fsync would be a retry too
    reported: list[int] = []
    w = JournalWriter(
        tmp_path,
        RUN_A,
        commit_interval_s=0.005,
        fdatasync=fdatasync,
        fsync=fsync,
        on_durable=lambda idx, _lat: reported.append(idx),
    )
    append_frames(w, 0, 30)
    assert w.wait_durable(29, 5)
    append_frames(w, 30, 30)  # its commit's fdatasync fails
    assert w.wait_durable(59, 5)
    append_frames(w, 60, 30)
    stats = w.close()

    assert stats.fsync_errors == 1
    assert len(fdatasync.failed_files) == 1
    assert fdatasync.retried_files == []
    assert fsync.retried_files == []
    names = [parse_segment_name(p.name) for p in tmp_path.glob("*.seg")]
    (limit,) = [n.limit for n in names if n is not None and n.limit is not None]
    (path,) = tmp_path.glob(f"*.L{limit}.seg")
    assert path.stat().st_size > limit  # the unsynced commit is in the file...
    assert [r.idx for r in read_segment(path).records()] == list(range(30))  # ...but not read
    assert [r.idx for r in sealed_records(tmp_path)] == list(range(90))
    assert reported == sorted(reported)
    assert reported[-1] == 89


def test_frames_beyond_the_memory_limit_are_dropped_and_recorded_as_a_capture_gap(
    tmp_path: Path,
) -> None:
    fdatasync = SyncRecorder()
    w = JournalWriter(
        tmp_path,
        RUN_A,
        commit_interval_s=0.005,
        retry_interval_s=0.005,
        memory_limit_bytes=65536,
        fdatasync=fdatasync,
    )
    append_frames(w, 0, 10)
    assert w.wait_durable(9, 5)
    fdatasync.failing.set()
    append_frames(w, 10, 1000)  # about 150 kB: more than the limit
    time.sleep(0.05)
    during = w.stats()
    assert during.frames_dropped > 0
    assert during.backlog_bytes <= 65536
    assert during.durable_idx == 9
    fdatasync.failing.clear()
    last_accepted = 10 + 1000 - 1 - during.frames_dropped
    assert w.wait_durable(last_accepted, 5)
    resumed = append_frames(w, 1010, 5)  # the first of these fits: the gap is recorded first
    stats = w.close()
    assert resumed == [1011, 1012, 1013, 1014, 1015]

    records = sealed_records(tmp_path)
    gaps = [r for r in records if r.type == "capture_gap"]
    assert len(gaps) == 1
    gap = gaps[0]
    detail = event_from_bytes(gap.raw)
    assert isinstance(detail, CaptureGap)
    assert (gap.dir, gap.channel) == ("event", "_session")
    assert detail.lost_frames == stats.frames_dropped == during.frames_dropped
    assert detail.first_idx == last_accepted + 1
    assert detail.last_idx == 1009
    assert "injected I/O error" in detail.reason
    present = [r.idx for r in records]
    assert present == sorted(set(present))
    lost = set(range(detail.first_idx, detail.last_idx + 1))
    assert set(present) == set(range(1016)) - lost
    assert gap.idx == 1010
    assert gap.feed == feed_of(1010)  # the stamps and the feed of the frame that followed
    assert fdatasync.retried_files == []


def test_a_frame_that_fits_while_the_gap_event_does_not_is_dropped_too(tmp_path: Path) -> None:
    # The capture_gap event needs room for itself; a small frame arriving while only the
    # frame fits must not be kept, or the gap's first..last range would cover a frame
    # that is present and the idx holes would no longer be exactly the recorded ranges.
    fdatasync = SyncRecorder()
    limit = 65536
    w = JournalWriter(tmp_path, RUN_A, commit_interval_s=0.005, retry_interval_s=0.005,
                      memory_limit_bytes=limit, fdatasync=fdatasync)  # fmt: skip
    fdatasync.failing.set()

    def append(size: int) -> int:
        return w.append(1, 1, time.monotonic_ns(), "in", "trade", "trade", 1, None, None,
                        b"x" * size)  # fmt: skip

    append(10)
    overhead = w.stats().backlog_bytes - 10
    append(limit - w.stats().backlog_bytes - overhead - 100)  # 100 bytes of room left
    lost = [append(200), append(10), append(200)]  # dropped, fits (the gap does not), dropped
    assert w.stats().frames_dropped == 3
    fdatasync.failing.clear()
    assert w.wait_durable(1, 5)
    after = append(10)
    w.close()
    records = sealed_records(tmp_path)
    (gap,) = [event_from_bytes(r.raw) for r in records if r.type == "capture_gap"]
    assert isinstance(gap, CaptureGap)
    assert (gap.first_idx, gap.last_idx, gap.lost_frames) == (lost[0], lost[-1], 3)
    assert [r.idx for r in records] == [0, 1, after - 1, after]


def test_append_after_close_is_refused(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path, RUN_A)
    w.close()
    with pytest.raises(JournalClosedError):
        append_frames(w, 0, 1)


def test_close_seals_everything_and_releases_the_lock(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path, RUN_A, commit_interval_s=1.0)
    append_frames(w, 0, 7)
    stats = w.close()
    assert stats.durable_idx == 6
    assert stats.backlog_bytes == 0
    assert list(tmp_path.glob("*.open")) == []
    assert [r.idx for r in sealed_records(tmp_path)] == list(range(7))
    JournalWriter(tmp_path, RUN_A).close()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("journal.commit_interval_s", {"commit_interval_s": 0}),
        ("journal.segment_max_bytes", {"segment_max_bytes": 10}),
        ("journal.memory_limit_bytes", {"memory_limit_bytes": -1}),
    ],
)
def test_limits_out_of_range_are_config_errors_naming_the_field(
    tmp_path: Path, field: str, kwargs: dict[str, float]
) -> None:
    with pytest.raises(ConfigError, match=field):
        JournalWriter(tmp_path, RUN_A, **kwargs)  # type: ignore[arg-type]
