"""Recovery: leftovers of a dead recorder are cut, sealed, published and deleted, and a
recovery that is itself killed (a real process, SIGKILL) finishes on the next run."""

from __future__ import annotations

import errno
import os
import shutil
import statistics
from pathlib import Path

import pytest

from recorder.errors import JournalLockedError
from recorder.storage._segment import parse_segment_name, segment_name
from recorder.storage.journal import JournalLock, JournalWriter
from recorder.storage.recovery import recover
from schemas.record import partition_file

from ..results import ResultLog
from .helpers import RUN_A, RUN_B, append_frames, published_idx, unreadable_files
from .journal_driver import Driver


def exactly_once(count: int, run_id: str = RUN_A, start: int = 0) -> dict[tuple[str, int], int]:
    return {(run_id, i): 1 for i in range(start, start + count)}


def make_journal(journal: Path, *, segments: int = 2, per_segment: int = 40) -> None:
    """`segments` sealed segments, the last turned back into an open one with a torn tail."""
    with JournalWriter(journal, RUN_A, commit_interval_s=0.002, segment_max_bytes=4096) as w:
        for s in range(segments):
            append_frames(w, s * per_segment, per_segment)
            assert w.wait_durable((s + 1) * per_segment - 1, 5)
    sealed = sorted(journal.glob("*.seg"))
    last = sealed[-1]
    name = parse_segment_name(last.name)
    assert name is not None
    torn = last.with_name(segment_name(RUN_A, name.segment, sealed=False))
    last.rename(torn)
    with torn.open("ab") as f:
        f.write(b"\x30\x01\x00\x00partial record that was being written")


def segment_count(journal: Path) -> int:
    return sum(parse_segment_name(p.name) is not None for p in journal.iterdir())


def test_recovery_cuts_a_torn_tail_then_seals_publishes_and_deletes(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    make_journal(journal, segments=3)
    report = recover(journal, root)
    assert report.segments == 3
    assert report.open_segments == 1
    assert report.cut_bytes == 4 + len(b"partial record that was being written")
    assert report.records == 120
    assert segment_count(journal) == 0
    assert published_idx(root) == exactly_once(120)
    assert report.total_s >= report.publish_s > 0


def test_recovery_twice_is_the_same_as_once(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    make_journal(journal)
    recover(journal, root)
    again = recover(journal, root)
    assert (again.segments, again.records) == (0, 0)
    assert published_idx(root) == exactly_once(80)


def test_an_open_segment_without_a_whole_header_held_nothing_and_is_discarded(
    tmp_path: Path,
) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    journal.mkdir()
    (journal / segment_name(RUN_A, 0, sealed=False)).write_bytes(b"KTJOURNL\x01")
    report = recover(journal, root)
    assert report.discarded == 1
    assert segment_count(journal) == 0


def test_a_sealed_segment_with_a_corrupt_header_is_set_aside_not_deleted(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    journal.mkdir()
    bad = journal / segment_name(RUN_A, 0, sealed=True)
    bad.write_bytes(b"garbage" * 20)
    report = recover(journal, root)
    assert len(report.quarantined) == 1
    assert (journal / (bad.name + ".corrupt")).read_bytes() == b"garbage" * 20


def test_records_rewritten_after_a_failed_fsync_are_published_once(tmp_path: Path) -> None:
    """The writer abandoned a file after a failed fdatasync and the rename that names its
    limit never reached the disk: recovery sees a whole open file whose tail was
    rewritten into the next segment, and must not publish those records twice."""
    journal, root = tmp_path / "journal", tmp_path / "root"
    calls = 0

    def fdatasync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.EIO, "injected")
        os.fdatasync(fd)

    with JournalWriter(journal, RUN_A, commit_interval_s=0.005, fdatasync=fdatasync) as w:
        append_frames(w, 0, 30)
        assert w.wait_durable(29, 5)
        append_frames(w, 30, 30)
        assert w.wait_durable(59, 5)
    (abandoned,) = [p for p in journal.glob("*.seg") if parse_segment_name(p.name).limit]  # type: ignore[union-attr]
    name = parse_segment_name(abandoned.name)
    assert name is not None
    abandoned.rename(abandoned.with_name(segment_name(RUN_A, name.segment, sealed=False)))
    report = recover(journal, root)
    assert report.overlap_records == 30
    assert published_idx(root) == exactly_once(60)


def test_segments_of_several_runs_are_all_recovered(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    for run in (RUN_A, RUN_B):
        with JournalWriter(journal, run) as w:
            append_frames(w, 0, 25)
    recover(journal, root)
    assert published_idx(root) == {**exactly_once(25, RUN_A), **exactly_once(25, RUN_B)}


def test_a_half_written_parquet_temporary_file_is_replaced(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    make_journal(journal, segments=1)
    final = root / partition_file("orderbook_delta", "2026-01-01", RUN_A, 0)
    final.parent.mkdir(parents=True)
    temp = final.with_name(f".{final.name}.tmp")
    temp.write_bytes(b"PAR1 half a file")
    recover(journal, root)
    assert not temp.exists()
    assert final.exists()
    assert published_idx(root) == exactly_once(40)


def test_recovery_refuses_a_journal_that_a_live_recorder_holds(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    with JournalLock(journal), pytest.raises(JournalLockedError):
        recover(journal, tmp_path / "root")


def test_recovery_can_hand_its_lock_to_the_writer(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    lock = JournalLock(journal)
    assert recover(journal, tmp_path / "root", lock=lock).segments == 0
    with JournalWriter(journal, RUN_B, lock=lock) as w:
        append_frames(w, 0, 3)
        assert w.wait_durable(2, 5)
        with pytest.raises(JournalLockedError):  # held all along: no one slipped in between
            JournalLock(journal)
    JournalLock(journal).release()  # the writer released it on close: this does not raise


def fsync_points(journal: Path, root: Path) -> int:
    out = Driver("recover", str(journal), str(root)).run().split()
    assert out[-1] == "DONE"
    return sum(1 for tok in out if tok == "F")


def kill_recovery_at(journal: Path, root: Path, point: int) -> None:
    """Run recovery in a real process and SIGKILL it just before its `point`-th fsync."""
    proc = Driver("recover", str(journal), str(root), "--pause-at", str(point))
    try:
        for line in proc.stdout:
            if line.strip() == f"F {point}":
                break
        else:
            pytest.fail(f"recovery finished before fsync {point}")
    finally:
        proc.kill()
        proc.close()


def test_recovery_killed_before_any_of_its_fsyncs_finishes_on_the_next_run(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest
) -> None:
    pristine = tmp_path / "pristine"
    make_journal(pristine)
    points = fsync_points(shutil.copytree(pristine, tmp_path / "probe"), tmp_path / "probe-root")
    assert points >= 8
    expected = exactly_once(80)
    lost = doubled = stray = leftovers = unreadable = 0
    recovery_s: list[float] = []
    for point in range(1, points + 1):
        journal = shutil.copytree(pristine, tmp_path / f"j{point}")
        root = tmp_path / f"r{point}"
        kill_recovery_at(journal, root, point)
        recovery_s.append(recover(journal, root).total_s)
        unreadable += len(unreadable_files(root))
        held = published_idx(root)
        lost += sum(1 for key in expected if key not in held)
        doubled += sum(1 for n in held.values() if n > 1)
        stray += sum(1 for key in held if key not in expected)
        leftovers += segment_count(journal) + len(list(root.rglob(".*")))
    results.add("crash", {
        "case": "recovery itself, at each of its fsyncs, then recovery again",
        "cycles": points, "durable": 80 * points, "lost": lost, "doubled": doubled,
        "unreadable": unreadable,
        "recovery_s_median": statistics.median(recovery_s), "recovery_s_max": max(recovery_s),
    }, request)  # fmt: skip
    assert (lost, doubled, stray, unreadable, leftovers) == (0, 0, 0, 0, 0)
