"""Compaction and retention of the partition tree (docs/architecture.md section 4.4).

This module owns the two calendar jobs that rewrite published data. The naming rule
that makes a rewrite atomic for readers is `schemas.record`'s (`split_live_files`,
`live_files`), shared with every reader; it is restated here. It knows nothing of the
journal.

The visibility rule
-------------------
A partition holds files named

    <run_id>-<lo:08d>.parquet             the rows of segment `lo` of the run
    <run_id>-<lo:08d>-c<hi:08d>.parquet   compacted: every row of segments lo..hi of the
                                          run in this partition

A file is *superseded* when a compacted file of the same run in the same partition
covers its whole segment range; readers read only the live (not superseded) files
(`schemas.record.live_files`). Names starting with "." are temporary, and names
outside the pattern are not capture files: neither is ever read.

Why this is atomic: compaction writes the merged file under a temporary name, fsyncs
it and renames it into place (one atomic step); from that instant its inputs are
superseded, whether or not they are deleted yet. A kill -9 before the rename leaves the
old files live and a temporary file (removed by the next compaction); after it, the
merged file live and the inputs superseded (removed by the next compaction). A reader
never sees both as live, and never neither. Inputs are deleted only after a grace
period (`delete_grace_s`) so that a reader who listed before the rename can still open
them; a reader slower than that sees FileNotFoundError and must list again.

Why it is safe against the publisher: the publisher publishes a run's segments in
order, so when the file of segment `hi` exists in a partition, every earlier segment is
fully published; a compacted range never covers a segment still to come. A segment
republished after a crash lands on its old name, which the compacted file supersedes:
the rule also hides that duplicate.

Readers that glob `*.parquet` without the rule (plain DuckDB, Spark) see duplicates
during the grace period after a compaction, and after a crash until the next
compaction deletes what is superseded; every reader in this project lists partitions
through `schemas.record.live_files`. The rule is a pure function of names, so it works the
same on object stores, where listing is the only view there is.

Retention drops whole date partitions: locally one rename to a hidden name (readers
see the whole partition or none of it), then the hidden tree is deleted. Object stores
have no atomic directory rename; there the files are deleted one by one.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from recorder.errors import CompactionError
from recorder.storage.root import CaptureRoot, FileInfo, FsyncFn
from schemas.arrow import CAPTURE_SCHEMA, complete
from schemas.parquet import ParquetSettings, encode_for_storage
from schemas.record import (
    CaptureFileName,
    compacted_file_suffix,
    parse_file_name,
    partition_file,
    split_live_files,
)
from schemas.storage import StorageOptions

__all__ = [
    "COMPACTION_SETTINGS",
    "CompactionReport",
    "RetentionReport",
    "apply_retention",
    "compact",
]

#: Compaction runs off the hot path, so it spends more CPU for smaller files.
COMPACTION_SETTINGS = ParquetSettings(compression_level=9)

_PARTITION = re.compile(r"^channel=(?P<channel>[^/]+)/date=(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})$")
_DELETING = ".deleting-"


@dataclass(slots=True)
class CompactionReport:
    partition: str
    outputs: list[tuple[str, list[str]]] = field(default_factory=list)  # (merged, inputs)
    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    deleted: list[str] = field(default_factory=list)  # superseded files removed
    temps_removed: int = 0
    seconds: float = 0.0


class _RootLock:
    """One compactor per local root (an flock on `<root>/.compaction.lock`)."""

    def __init__(self, root: CaptureRoot) -> None:
        self._fd: int | None = None
        if root.is_local:
            path = root.local_path(".compaction.lock")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def compact(
    root: str | os.PathLike[str],
    partition: str,
    *,
    filesystem: pafs.FileSystem | None = None,
    settings: ParquetSettings = COMPACTION_SETTINGS,
    min_age_s: float = 3600.0,
    target_rows: int = 500_000,
    delete_grace_s: float = 300.0,
    now_ns: int | None = None,
    fsync: FsyncFn = os.fsync,
    storage: StorageOptions | None = None,
) -> CompactionReport:
    """Merge the small files of one partition, per run, into larger sorted files.

    Only files older than `min_age_s` (by mtime, against `now_ns` or the wall clock: a
    calendar job) are merged; consecutive live files of a run are grouped up to
    `target_rows` rows, and each group becomes one file at the compaction settings (a
    lone published file is rewritten too: it gets smaller). Superseded
    files whose covering file is older than `delete_grace_s` are deleted, and stale
    temporary files of earlier compactions removed.

    Args:
        root: the capture root (local path or pyarrow URI).
        partition: `channel=<channel>/date=<YYYY-MM-DD>`.

    Raises:
        CompactionError: the partition name is malformed, or a merge found rows that do
            not add up; nothing visible was changed.
    """
    t0 = time.monotonic()
    m = _PARTITION.match(partition)
    if m is None:
        raise CompactionError(f"not a partition: {partition!r} (want channel=<c>/date=<d>)")
    channel, date = m.group("channel"), m.group("date")
    capture = CaptureRoot(root, filesystem=filesystem, fsync=fsync, storage=storage)
    now = time.time_ns() if now_ns is None else now_ns
    report = CompactionReport(partition)
    lock = _RootLock(capture)
    try:
        listing = capture.list_files(partition)
        infos = {i.name: i for i in listing}
        report.temps_removed = _sweep_temps(capture, listing)
        live, superseded = split_live_files(list(infos))
        for name, cover in superseded.items():
            if now - infos[cover.name].mtime_ns >= delete_grace_s * 1e9:
                capture.delete(infos[name].path)
                report.deleted.append(name)
        for group in _plan(capture, live, infos, now - int(min_age_s * 1e9), target_rows):
            _merge(capture, channel, date, group, settings, report)
            if delete_grace_s <= 0:
                for f in group:
                    capture.delete(f.path)
                    report.deleted.append(f.name)
    finally:
        lock.release()
    report.seconds = time.monotonic() - t0
    return report


def _sweep_temps(capture: CaptureRoot, listing: list[FileInfo]) -> int:
    """Remove temporaries of merged files left by a killed compaction (publisher
    temporaries have plain names and are finished by recovery, so they are left alone)."""
    gone = 0
    for info in listing:
        name = info.name
        if name.startswith(".") and name.endswith(".parquet.tmp"):
            f = parse_file_name(name[1:-4])
            if f is not None and f.compacted:
                gone += capture.delete(info.path)
    return gone


def _plan(
    capture: CaptureRoot,
    live: list[str],
    infos: dict[str, FileInfo],
    cutoff_ns: int,
    target_rows: int,
) -> list[list[FileInfo]]:
    """Groups of consecutive live files of one run, each to become one compacted file.

    A group is worth writing if it merges files, or if its one file was written by the
    publisher (a compacted file is smaller: rewritten at the compaction settings).
    """
    by_run: dict[str, list[CaptureFileName]] = {}
    for name in live:
        f = parse_file_name(name)
        if f is not None:
            by_run.setdefault(f.run_id, []).append(f)
    groups: list[list[FileInfo]] = []

    def close(group: list[CaptureFileName]) -> None:
        if len(group) >= 2 or (group and not group[0].compacted):
            groups.append([infos[f.name] for f in group])

    for files in by_run.values():
        files.sort(key=lambda f: f.lo)
        group: list[CaptureFileName] = []
        rows = 0
        for f in files:
            info = infos[f.name]
            n = capture.read_metadata(info.path).num_rows if info.mtime_ns <= cutoff_ns else -1
            if n < 0 or (group and rows + n > target_rows):
                close(group)
                group, rows = [], 0
            if n >= 0:
                group.append(f)
                rows += n
        close(group)
    return groups


def _merge(
    capture: CaptureRoot,
    channel: str,
    date: str,
    group: list[FileInfo],
    settings: ParquetSettings,
    report: CompactionReport,
) -> None:
    first, last = parse_file_name(group[0].name), parse_file_name(group[-1].name)
    assert first is not None
    assert last is not None
    # Files of older captures hold `channel` as a dictionary and lack `opcode` or `feed`:
    # every input is brought to today's schema before they are put together.
    tables = [_as_capture_schema(capture.read_table(i.path)) for i in group]
    table = pa.concat_tables(tables).unify_dictionaries().combine_chunks()
    expected = sum(t.num_rows for t in tables)
    if table.num_rows != expected or pc.count_distinct(table.column("idx")).as_py() != expected:
        raise CompactionError(f"{channel}/{date}: rows of {[i.name for i in group]} do not add up")
    if table.schema != CAPTURE_SCHEMA:
        table = table.cast(CAPTURE_SCHEMA)
    body = encode_for_storage(table, settings)
    rel = partition_file(channel, date, first.run_id, first.lo, compacted_file_suffix(last.hi))
    capture.put(rel, body)  # the atomic step: from here the inputs are superseded
    report.outputs.append((rel, [i.name for i in group]))
    report.rows += expected
    report.bytes_in += sum(i.size for i in group)
    report.bytes_out += body.size


def _as_capture_schema(table: pa.Table) -> pa.Table:
    if table.schema == CAPTURE_SCHEMA:
        return table
    return complete(table, CAPTURE_SCHEMA.names).cast(CAPTURE_SCHEMA)


@dataclass(slots=True)
class RetentionReport:
    removed: list[str] = field(default_factory=list)  # partitions removed
    leftovers_removed: int = 0  # hidden trees of an interrupted earlier run


def apply_retention(
    root: str | os.PathLike[str],
    older_than_days: int,
    *,
    today: str | None = None,
    filesystem: pafs.FileSystem | None = None,
    fsync: FsyncFn = os.fsync,
    storage: StorageOptions | None = None,
) -> RetentionReport:
    """Remove every date partition older than `older_than_days` days before `today`.

    Args:
        today: YYYY-MM-DD (UTC); default the current UTC date (a calendar job reads the
            wall clock by design).
    """
    if older_than_days < 0:
        raise CompactionError(f"older_than_days must be >= 0, got {older_than_days}")
    capture = CaptureRoot(root, filesystem=filesystem, fsync=fsync, storage=storage)
    day = dt.date.fromisoformat(today) if today else dt.datetime.now(dt.UTC).date()
    cutoff = (day - dt.timedelta(days=older_than_days)).isoformat()
    report = RetentionReport()
    for channel_dir in capture.list_dirs(""):
        if not channel_dir.startswith("channel="):
            continue
        report.leftovers_removed += capture.sweep_hidden_dirs(channel_dir, _DELETING)
        for date_dir in capture.list_dirs(channel_dir):
            if date_dir.startswith("date=") and date_dir[5:] < cutoff:
                rel = f"{channel_dir}/{date_dir}"
                capture.remove_dir(rel, hidden_name=f"{_DELETING}{date_dir}")
                report.removed.append(rel)
    return report
