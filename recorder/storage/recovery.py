"""Recovery: before a recorder connects, finish what a dead one left in its journal.

This module owns docs/architecture.md section 4.3. For every leftover segment,
in (run_id, segment) order: cut a torn tail at the last record with a good CRC, seal
it (fsync, rename, directory fsync), publish it, delete it. Every step is idempotent,
so a recovery killed at any point is finished by running it again:

* cutting truncates to the same offset; sealing renames an already sealed name to itself;
* publishing writes the same file names (a leftover temporary file is overwritten and
  renamed), so a segment published before the kill is replaced, never duplicated;
* a segment is deleted only after all its files are in place.

One more rule guards against duplicates after a failed fsync (see `recorder.storage.journal`):
the writer rewrites unsynced frames of an abandoned file into the run's next segment,
so within a run, records of a segment whose idx is at or above the first idx of a
later segment are left out (counted as `overlap_records`).

It knows the journal only through `recorder.storage._segment` and publishes through
`recorder.storage.publisher.Publisher`.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

from recorder.errors import PublishError, SegmentFormatError
from recorder.storage._segment import SegmentData, parse_segment_name, read_segment, segment_name
from recorder.storage.journal import JournalLock
from recorder.storage.publisher import PublishedFile, Publisher
from recorder.storage.root import FsyncFn, fsync_dir, unlink_durably
from schemas.parquet import ParquetSettings
from schemas.storage import StorageOptions

__all__ = ["RecoveryReport", "recover"]


@dataclass(slots=True)
class RecoveryReport:
    """What recovery found and did. Timings are monotonic seconds."""

    segments: int = 0  # leftover segments found (open and sealed)
    open_segments: int = 0  # of which the writer had not sealed (it died)
    records: int = 0  # records published
    cut_bytes: int = 0  # torn tails cut from open segments
    skipped_bytes: int = 0  # corrupt bytes skipped between valid records
    overlap_records: int = 0  # records left out: rewritten in a later segment of the run
    discarded: int = 0  # open segments without a valid header (nothing durable in them)
    quarantined: list[str] = field(default_factory=list)  # unreadable sealed segments
    files: list[PublishedFile] = field(default_factory=list)
    scan_s: float = 0.0
    publish_s: float = 0.0
    total_s: float = 0.0


def recover(
    journal_dir: Path,
    root: str | os.PathLike[str],
    *,
    filesystem: pafs.FileSystem | None = None,
    settings: ParquetSettings | None = None,
    fsync: FsyncFn = os.fsync,
    lock: JournalLock | None = None,
    storage: StorageOptions | None = None,
) -> RecoveryReport:
    """Seal and publish every leftover segment of `journal_dir`, then delete it.

    Args:
        journal_dir: the journal directory (created if absent).
        root: the capture root to publish into (local path or pyarrow URI).
        filesystem, settings, storage: as for `Publisher`.
        fsync: injectable, for fault tests.
        lock: the journal lock if the caller holds it (to hand on to its JournalWriter);
            otherwise recovery takes and releases it.

    Raises:
        JournalLockedError: a live recorder owns the directory.
        PublishError: a segment could not be published; run recovery again later.
        OSError: the journal directory cannot be read or synced.
    """
    t0 = time.monotonic()
    journal_dir = Path(journal_dir)
    own_lock = lock is None
    held = lock if lock is not None else JournalLock(journal_dir)
    try:
        publisher = Publisher(
            journal_dir, root, filesystem=filesystem, settings=settings, fsync=fsync,
            storage=storage,
        )  # fmt: skip
        report = RecoveryReport()
        runs: dict[str, list[tuple[int, Path]]] = {}
        for path in journal_dir.iterdir():
            name = parse_segment_name(path.name)
            if name is None:
                continue
            report.segments += 1
            report.open_segments += not name.sealed
            runs.setdefault(name.run_id, []).append((name.segment, path))
        for run_id in sorted(runs):
            _recover_run(sorted(runs[run_id]), publisher, fsync, report)
        report.total_s = time.monotonic() - t0
        return report
    finally:
        if own_lock:
            held.release()


def _recover_run(
    segments: list[tuple[int, Path]], publisher: Publisher, fsync: FsyncFn, report: RecoveryReport
) -> None:
    waiting: SegmentData | None = None  # read, sealed, published once the next first idx is known
    for _, path in segments:
        t = time.monotonic()
        data = _seal(path, fsync, report)
        report.scan_s += time.monotonic() - t
        if data is None:
            continue
        if data.first_idx is None:  # no records: nothing to publish, and it bounds nothing
            _publish(data, None, publisher, fsync, report)
            continue
        if waiting is not None:
            _publish(waiting, data.first_idx, publisher, fsync, report)
        waiting = data
    if waiting is not None:
        _publish(waiting, None, publisher, fsync, report)


def _seal(path: Path, fsync: FsyncFn, report: RecoveryReport) -> SegmentData | None:
    """Read a segment; if it is still open, cut its torn tail and seal it."""
    name = parse_segment_name(path.name)
    assert name is not None
    try:
        data = read_segment(path)
    except SegmentFormatError as exc:
        if not name.sealed:
            # The header is fsynced before any record is written: nothing here was durable.
            unlink_durably(path, fsync)
            report.discarded += 1
            return None
        quarantine = path.with_name(path.name + ".corrupt")
        os.replace(path, quarantine)
        fsync_dir(path.parent, fsync)
        report.quarantined.append(f"{quarantine}: {exc}")
        return None
    report.skipped_bytes += data.skipped_bytes
    if name.sealed:
        return data
    if data.tail_bytes:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, data.good_end)
            fsync(fd)
        finally:
            os.close(fd)
        report.cut_bytes += data.tail_bytes
        data.end = data.good_end
    sealed = path.with_name(segment_name(name.run_id, name.segment, sealed=True))
    os.replace(path, sealed)
    fsync_dir(path.parent, fsync)
    data.path = sealed
    return data


def _publish(
    data: SegmentData,
    idx_below: int | None,
    publisher: Publisher,
    fsync: FsyncFn,
    report: RecoveryReport,
) -> None:
    t = time.monotonic()
    if idx_below is not None:
        # Records are in idx order (reading enforces it): keep those below the bound.
        keep = bisect_left(range(len(data)), idx_below, key=data.idx_at)
        report.overlap_records += len(data) - keep
        data.truncate(keep)
    files = publisher.publish_data(data)
    try:
        unlink_durably(data.path, fsync)
    except OSError as exc:
        raise PublishError(str(data.path), f"published, but not deleted: {exc}") from exc
    report.records += len(data)
    report.files += files
    report.publish_s += time.monotonic() - t
