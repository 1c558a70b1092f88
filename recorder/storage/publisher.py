"""The publisher: sealed journal segments become Parquet files, then the segment goes.

This module owns docs/architecture.md section 4.2: one Parquet file per
(channel, UTC date of recv_ns) per segment, named by `schemas.record.partition_file`
from the run and segment numbers, written atomically through `recorder.storage.root`
(local: temporary name, fsync, rename, directory fsync; object stores: one put), and
only then the segment deleted. Because names derive from the segment, publishing a
segment twice (after a crash between the last rename and the delete) replaces its
files with identical ones: never a second copy.

Segments of a run are published strictly in order, and a failed one is retried
before the next is touched. `recorder.storage.compaction` relies on that: when a file of
segment S exists, every earlier segment of the run is fully published.

It knows the segment format only through `recorder.storage._segment` (a segment's table:
`recorder.storage._table`) and the Parquet layout only through `schemas.parquet`, the
writer it shares with `kalshi-tape merge`; in the journal it only ever deletes published
segments.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from recorder.errors import PublishError, SegmentFormatError
from recorder.storage._segment import SegmentData, SegmentHeader, parse_segment_name, read_segment
from recorder.storage._table import segment_table
from recorder.storage.root import CaptureRoot, FsyncFn, unlink_durably
from schemas.errors import PartitionError
from schemas.parquet import ParquetSettings, encode_for_storage, partition_files
from schemas.record import partition_file
from schemas.storage import StorageOptions

__all__ = ["ParquetSettings", "PublishedFile", "Publisher", "PublisherStats", "sealed_segments"]


def sealed_segments(journal_dir: Path) -> list[Path]:
    """The sealed segments in a journal directory, in (run_id, segment) order."""
    found = []
    for path in Path(journal_dir).iterdir():
        name = parse_segment_name(path.name)
        if name is not None and name.sealed:
            found.append((name.sort_key, path))
    return [p for _, p in sorted(found)]


@dataclass(frozen=True, slots=True)
class PublishedFile:
    """One file written: its path relative to the root, rows and bytes."""

    path: str
    rows: int
    bytes: int


@dataclass(frozen=True, slots=True)
class PublisherStats:
    segments_published: int
    files_published: int
    rows_published: int
    bytes_published: int
    errors: int
    queued: int
    last_publish_mono: float | None  # time.monotonic() of the last success
    last_error: str | None
    queued_bytes: int = 0  # the size of the `queued` segments, waiting in the journal
    #: time.monotonic() when the first attempt that failed since the last success started
    #: (None while publishing works): how long the storage has been failing.
    failing_since_mono: float | None = None


def _table_of(data: SegmentData) -> pa.Table | None:
    try:
        return segment_table(data) if len(data) else None
    except (pa.ArrowException, OverflowError) as exc:
        raise PublishError(str(data.path), str(exc)) from exc


def _give_back_memory() -> None:
    """Return freed memory to the system after a segment (a recorder runs for weeks, and
    a 64 MiB segment costs about 300 MiB while it is published): Arrow's pool keeps
    freed blocks, and so does the C allocator for Python's large objects."""
    pa.default_memory_pool().release_unused()
    if _malloc_trim is not None:
        _malloc_trim(0)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _load_malloc_trim()


class Publisher:
    """Publishes sealed segments, on demand (`publish`) or from a background thread.

    Args:
        journal_dir: where segments live (their deletion is fsynced there).
        root: a local directory or a pyarrow filesystem URI (`s3://bucket/prefix`).
        filesystem: a pyarrow filesystem to use with `root` as base path.
        storage: endpoint, region and credentials of an object-store root.
        compression, compression_level: the codec (docs/performance.md section 4.6: zstd-3).
        settings: all Parquet writer settings (overrides the two above).
        fsync: injectable, for fault tests.
        retry_interval_s: pause before retrying a failed publish (background thread).
        on_published: called (publisher thread) with each segment and its files.
    """

    def __init__(
        self,
        journal_dir: Path,
        root: str | os.PathLike[str],
        *,
        filesystem: pafs.FileSystem | None = None,
        compression: str = "zstd",
        compression_level: int = 3,
        settings: ParquetSettings | None = None,
        fsync: FsyncFn = os.fsync,
        retry_interval_s: float = 1.0,
        on_published: Callable[[Path, list[PublishedFile]], None] | None = None,
        storage: StorageOptions | None = None,
    ) -> None:
        self.journal_dir = Path(journal_dir)
        self.root = CaptureRoot(root, filesystem=filesystem, fsync=fsync, storage=storage)
        self.settings = settings or ParquetSettings(compression, compression_level)
        self._fsync = fsync
        self._retry_s = retry_interval_s
        self._on_published = on_published
        self._queue: deque[Path] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._drain = True
        self._thread: threading.Thread | None = None
        self._segments = self._files = self._rows = self._bytes = self._errors = 0
        self._last_mono: float | None = None
        self._last_error: str | None = None
        self._failing_since: float | None = None
        self._sizes: dict[Path, int] = {}  # queued segment -> bytes

    # ---- synchronous ---------------------------------------------------------------------

    def publish(self, segment: Path, *, idx_below: int | None = None) -> list[PublishedFile]:
        """Publish one sealed segment and delete it. Safe to repeat after a crash.

        Args:
            segment: path of a sealed (or cut-and-sealed) segment.
            idx_below: leave out records with idx >= this (see `recorder.storage.recovery`).

        Raises:
            PublishError: the segment is unreadable or a file could not be written;
                the segment is kept.
        """
        try:
            data = read_segment(segment, idx_below=idx_below)
        except FileNotFoundError:
            return []  # deleted only after it was published: nothing left to do
        except (OSError, SegmentFormatError) as exc:
            raise PublishError(str(segment), str(exc)) from exc
        header, where = data.header, data.path
        table = _table_of(data)
        del data  # the per-record Python objects go before the Parquet work starts
        files = self._publish_table(header, where, table)
        try:
            unlink_durably(segment, self._fsync)
        except OSError as exc:
            raise PublishError(str(segment), f"published, but not deleted: {exc}") from exc
        return files

    def publish_data(self, data: SegmentData) -> list[PublishedFile]:
        """Write the Parquet files of an already read segment (the segment is not touched)."""
        return self._publish_table(data.header, data.path, _table_of(data))

    def _publish_table(
        self, header: SegmentHeader, where: Path, table: pa.Table | None
    ) -> list[PublishedFile]:
        if table is None:
            return []
        # Peak memory is the segment's table plus one part and its encoding: parts are
        # built, written and dropped one at a time, and memory is given back between.
        _give_back_memory()
        written = []
        try:
            for (channel, date), part in partition_files(table):
                rel = partition_file(channel, date, header.run_id, header.segment)
                body = encode_for_storage(part, self.settings)
                self.root.put(rel, body)
                written.append(PublishedFile(rel, part.num_rows, body.size))
                del part, body
                _give_back_memory()
        except (OSError, pa.ArrowException, PartitionError) as exc:
            raise PublishError(str(where), str(exc)) from exc
        finally:
            del table
            _give_back_memory()
        with self._cond:
            self._segments += 1
            self._files += len(written)
            self._rows += sum(f.rows for f in written)
            self._bytes += sum(f.bytes for f in written)
            self._last_mono = time.monotonic()
        return written

    def publish_pending(self) -> list[PublishedFile]:
        """Publish every sealed segment in the journal directory, in order."""
        out: list[PublishedFile] = []
        for segment in sealed_segments(self.journal_dir):
            out += self.publish(segment)
        return out

    # ---- background ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the publisher thread; segments arrive through `submit`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
            self._thread.start()

    def submit(self, segment: Path) -> None:
        """Queue a sealed segment (thread-safe: pass this as the journal's `on_sealed`)."""
        try:
            size = segment.stat().st_size
        except OSError:
            size = 0
        with self._cond:
            self._queue.append(segment)
            self._sizes[segment] = size
            self._cond.notify()

    def close(self, *, drain: bool = True, timeout_s: float | None = None) -> PublisherStats:
        """Stop the thread; with `drain`, publish everything queued first (retrying errors
        until `timeout_s`, if given)."""
        with self._cond:
            self._stopping, self._drain = True, drain
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                with self._cond:
                    self._drain = False
                    self._cond.notify()
                self._thread.join()
        return self.stats()

    def stats(self) -> PublisherStats:
        with self._cond:
            return PublisherStats(
                self._segments,
                self._files,
                self._rows,
                self._bytes,
                self._errors,
                len(self._queue),
                self._last_mono,
                self._last_error,
                sum(self._sizes.values()),
                self._failing_since,
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue or (self._stopping and not self._drain):
                    return
                segment = self._queue[0]
            started = time.monotonic()
            try:
                files = self.publish(segment)
            except PublishError as exc:
                with self._cond:
                    self._errors += 1
                    self._last_error = str(exc)
                    if self._failing_since is None:
                        self._failing_since = started
                    # Retry the same segment: later ones must wait (see the module docstring).
                    self._cond.wait_for(lambda: self._stopping and not self._drain, self._retry_s)
                continue
            with self._cond:
                self._queue.popleft()
                self._sizes.pop(segment, None)
                self._last_error = None
                self._failing_since = None
            if self._on_published is not None:
                try:
                    self._on_published(segment, files)
                except Exception as exc:
                    with self._cond:
                        self._last_error = f"on_published callback: {exc!r}"
