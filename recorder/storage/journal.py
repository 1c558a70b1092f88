"""The journal: where every frame lands first, and the only place a frame becomes durable.

This module owns the write side of the journal (docs/architecture.md section 4.1):
idx assignment, the in-memory buffer the receive loop appends to, the group-commit
thread (commit, advance `durable_idx`, roll), the lock that gives one journal
directory to one process, and what happens to frames on a full disk or a failing
device. The byte format is `recorder.storage._segment`'s (its docstring draws it); the
life of a segment file on disk (create, write, fdatasync, seal, abandon) is
`recorder.storage._segment_files`'; what happens to sealed segments is
`recorder.storage.publisher`'s.

Theory of operation
-------------------
`append()` runs on the receive loop. It encodes one record into a bytearray under a
lock and returns its idx: no syscall, no clock read. A writer thread wakes every
`commit_interval_s` (on the monotonic clock: since Python 3.11, `threading.Event.wait`
times out with sem_clockwait(CLOCK_MONOTONIC) on glibc 2.30+, so a wall-clock step
neither delays nor hurries it), takes the buffer, writes it after the segment's last
synced byte and calls `fdatasync`. Only then does `durable_idx` advance and
`on_durable` fire (on the writer thread: an asyncio caller hands it to its loop with
`loop.call_soon_threadsafe`).

Failures never corrupt anything and never block the receive loop:

* A write error (ENOSPC, EIO) leaves the frames in memory; the next attempt rewrites
  them from the last synced offset. ENOSPC keeps the file; other errors abandon it.
* A failed fsync is never retried on the same file (after a failed fsync the kernel
  may have dropped the dirty pages and will not report it again). The file is
  abandoned: renamed to `<run>-<seg>.L<limit>.seg`, where `limit` is its last synced
  offset, and the unsynced frames are rewritten into a new segment. The rename is made
  durable before any rewritten frame is reported durable.
* While frames cannot be written they wait in memory up to `memory_limit_bytes`;
  beyond it they are dropped and counted (their idx is consumed, so the hole is
  visible). When a frame fits again, a `capture_gap` event is appended first, naming
  how many frames were lost and their idx range.

Timers (commit, roll by age, retry) use `time.monotonic`; nothing here reads the wall
clock: `recv_ns` arrives with each frame.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from zlib import crc32

from recorder.errors import JournalClosedError, JournalLockedError
from recorder.storage._durable import FsyncFn, mkdir_durably
from recorder.storage._segment import FRAME, MAX_FEEDS, NUMERIC, StringTable, record_flags
from recorder.storage._segment_files import CommitFailed, SegmentFiles
from schemas.channels import Channel
from schemas.errors import ConfigError
from schemas.events import CaptureGap
from schemas.record import Dir, Event, validate_run_id

__all__ = ["LOCK_NAME", "DurableCallback", "JournalLock", "JournalStats", "JournalWriter"]

LOCK_NAME: Final = "LOCK"
_INT32, _INT64 = (-(1 << 31), (1 << 31) - 1), (-(1 << 63), (1 << 63) - 1)

#: on_durable(durable_idx, latency_ns): called from the writer thread after each commit;
#: latency_ns is from the oldest frame's mono_ns in the commit to the end of its fdatasync.
DurableCallback = Callable[[int, int], None]


class JournalLock:
    """An exclusive `flock` on `<journal_dir>/LOCK`, held for the life of the writer.

    The kernel releases it when the process dies (kill -9 included), so a stale lock
    file never blocks a restart.

    Raises:
        JournalLockedError: another process (or another JournalLock) holds it.
    """

    def __init__(self, journal_dir: Path) -> None:
        self.journal_dir = Path(journal_dir)
        mkdir_durably(self.journal_dir)
        path = self.journal_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise JournalLockedError(str(self.journal_dir), holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> JournalLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True, slots=True)
class JournalStats:
    """Counters for health reporting (a snapshot; every field only grows, but backlog)."""

    frames_appended: int  # accepted into the buffer (gap events included)
    frames_dropped: int  # over the memory limit, or unwritable at close
    durable_idx: int  # every accepted frame with idx <= this is on disk; -1 before any
    bytes_appended: int
    bytes_durable: int
    backlog_bytes: int  # accepted but not yet durable
    write_errors: int
    fsync_errors: int
    segments_sealed: int
    gap_events: int
    last_error: str | None


@dataclass(slots=True)
class _Chunk:
    data: bytearray
    last_idx: int
    first_mono_ns: int
    frames: int


def _check(field: str, value: float, low: float) -> None:
    if not value >= low:
        raise ConfigError(f"journal.{field}", f"must be >= {low}, got {value!r}")


class JournalWriter:
    """Appends capture records to journal segments with group commit.

    Args:
        journal_dir: the directory; created if absent, locked for this writer's life.
        run_id: this recorder run (`schemas.record.new_run_id`).
        commit_interval_s: the longest a frame waits for its fdatasync (50 ms:
            docs/architecture.md section 4.1).
        segment_max_bytes, segment_max_age_s: roll the segment when either is reached
            (age from its first record, monotonic).
        memory_limit_bytes: the most accepted-but-not-durable bytes held in memory.
        retry_interval_s: pause between attempts while writing fails.
        on_sealed: called (writer thread) with the path of each sealed segment, in order.
        on_durable: see `DurableCallback`.
        fsync, fdatasync: injectable for fault tests; `fsync` also syncs directories.
        lock: an already held `JournalLock` (from a recovery that ran first); else one is taken.
        first_segment: number of the run's first segment.

    Raises:
        JournalLockedError: another recorder holds the journal directory.
        ConfigError: a limit is out of range.
    """

    def __init__(
        self,
        journal_dir: Path,
        run_id: str,
        *,
        commit_interval_s: float = 0.05,
        segment_max_bytes: int = 64 << 20,
        segment_max_age_s: float = 300.0,
        memory_limit_bytes: int = 256 << 20,
        retry_interval_s: float = 0.25,
        on_sealed: Callable[[Path], None] | None = None,
        on_durable: DurableCallback | None = None,
        fsync: FsyncFn = os.fsync,
        fdatasync: FsyncFn = os.fdatasync,
        lock: JournalLock | None = None,
        first_segment: int = 0,
    ) -> None:
        validate_run_id(run_id)
        _check("commit_interval_s", commit_interval_s, 0.001)
        _check("segment_max_bytes", segment_max_bytes, 4096)
        if segment_max_bytes > 1 << 30:  # a segment's raw column must fit Arrow's int32 offsets
            raise ConfigError(
                "journal.segment_max_bytes", f"at most 1 GiB, got {segment_max_bytes}"
            )
        _check("segment_max_age_s", segment_max_age_s, 0.001)
        _check("memory_limit_bytes", memory_limit_bytes, 65536)
        _check("retry_interval_s", retry_interval_s, 0.001)
        self.journal_dir = Path(journal_dir)
        self.run_id = run_id
        self._lock_file = lock if lock is not None else JournalLock(self.journal_dir)
        self._interval_s = commit_interval_s
        self._max_bytes = segment_max_bytes
        self._max_age_s = segment_max_age_s
        self._limit = memory_limit_bytes
        self._retry_s = retry_interval_s
        self._on_durable = on_durable

        # Shared with append(), under _lock.
        self._lock = threading.Lock()
        self._strings = StringTable()
        self._tails = self._strings.cache
        self._buf = bytearray()
        self._buf_last_idx = -1
        self._buf_first_mono = 0
        self._next_idx = 0
        self._backlog = 0
        self._closing = False
        self._gap_count = 0
        self._gap_bytes = 0
        self._gap_first = -1
        self._gap_last = -1
        self._gap_errors_at_start = 0
        self._buf_frames = 0
        self._dropped = 0
        self._gaps = 0

        # Writer thread only (read by stats()).
        self._pending: list[_Chunk] = []
        self._files = SegmentFiles(
            self.journal_dir, run_id, first_segment, fsync, fdatasync, on_sealed
        )
        self._durable_idx = -1
        self._bytes_durable = 0
        self._write_errors = 0
        self._fsync_errors = 0
        self._last_error: str | None = None  # cleared by the next successful commit
        self._last_failure: str | None = None  # kept
        self._close_deadline = 0.0
        self._durable_cond = threading.Condition()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"journal-{run_id}", daemon=True)
        self._thread.start()

    # ---- the receive loop's side -------------------------------------------------------

    def append(
        self,
        conn: int,
        recv_ns: int,
        mono_ns: int,
        dir: str,
        channel: str,
        type: str,
        sid: int | None,
        seq: int | None,
        market_ticker: str | None,
        raw: bytes,
        binary: bool = False,
        feed: int = 0,
    ) -> int:
        """Buffer one record and return its idx. Cheap: no syscall, no clock read.

        `binary`: the message came (or went) as a binary WebSocket message, not text.
        `feed`: which feed of a redundant capture the record belongs to (0..7; 0 for the
        first or only one).

        `mono_ns` must come from `time.monotonic_ns()` (latency is measured against it).
        A sid or seq outside int32 / int64 is stored as null (raw keeps it). The frame is
        durable once `durable_idx >= idx`; if it was dropped (memory limit) it never is,
        and a later `capture_gap` event records it.

        Raises:
            JournalClosedError: after close().
            ValueError: `feed` is out of range (nothing is appended, no idx is used).
        """
        # The hot path, inlined: no syscall, and the frame's bytes are appended to the
        # buffer as they are (the CRC chains over them), never joined into a copy.
        tail = self._tails.get((dir, channel, type, market_ticker))
        if tail is None:
            tail = self._strings.tail(dir, channel, type, market_ticker)
        if feed and not 0 < feed < MAX_FEEDS:  # feed 0, the common case: one test
            raise ValueError(f"feed must be 0..{MAX_FEEDS - 1}, got {feed!r}")
        flags = (
            (sid is not None) | (seq is not None) << 1 | (market_ticker is not None) << 2
            | binary << 3 | feed << 4
        )  # fmt: skip
        with self._lock:
            if self._closing:
                raise JournalClosedError(f"journal of run {self.run_id} is closed")
            if self._gap_count:
                self._append_gap_locked(recv_ns, mono_ns, conn, len(raw), feed)
            idx = self._next_idx
            self._next_idx = idx + 1
            try:
                head = NUMERIC.pack(idx, recv_ns, mono_ns, seq or 0, conn, sid or 0, flags)
            except struct.error:
                head = self._clamped_head(
                    idx, recv_ns, mono_ns, seq, conn, sid, market_ticker, binary, feed
                )
            body_len = len(head) + len(tail) + len(raw)
            # While a gap has no room for its event, it goes on: a frame kept inside it
            # would make the recorded first..last range cover a frame that is present.
            if self._gap_count or self._backlog + body_len + 8 > self._limit:
                self._drop_locked(idx, body_len + 8)
                return idx
            buf = self._buf
            if not buf:
                self._buf_first_mono = mono_ns
            head += tail  # ~100 bytes: one CRC call instead of two
            buf += FRAME.pack(body_len, crc32(raw, crc32(head)))
            buf += head
            buf += raw
            self._buf_last_idx = idx
            self._buf_frames += 1
            self._backlog += body_len + 8
        return idx

    @staticmethod
    def _clamped_head(
        idx: int,
        recv_ns: int,
        mono_ns: int,
        seq: int | None,
        conn: int,
        sid: int | None,
        ticker: str | None,
        binary: bool,
        feed: int,
    ) -> bytes:
        """A sid or seq out of int32 / int64 range is stored as null; raw keeps it."""
        if sid is not None and not _INT32[0] <= sid <= _INT32[1]:
            sid = None
        if seq is not None and not _INT64[0] <= seq <= _INT64[1]:
            seq = None
        flags = record_flags(sid, seq, ticker, binary, feed)
        return NUMERIC.pack(idx, recv_ns, mono_ns, seq or 0, conn, sid or 0, flags)

    def _drop_locked(self, idx: int, size: int) -> None:
        if not self._gap_count:
            self._gap_first = idx
            self._gap_errors_at_start = self._write_errors + self._fsync_errors
        self._gap_count += 1
        self._gap_bytes += size
        self._gap_last = idx
        self._dropped += 1

    def _buffer_locked(self, idx: int, body: bytes, mono_ns: int) -> None:
        buf = self._buf
        if not buf:
            self._buf_first_mono = mono_ns
        buf += FRAME.pack(len(body), crc32(body))
        buf += body
        self._buf_last_idx = idx
        self._buf_frames += 1
        self._backlog += len(body) + 8

    def _append_gap_locked(
        self, recv_ns: int, mono_ns: int, conn: int, next_size: int, feed: int
    ) -> None:
        """Record the frames lost so far, once the next frame (and so the event) fits again.

        The event takes the stamps (and the connection and feed) of the frame that follows
        it: the moment capture resumed.
        """
        if self._backlog + next_size + 1024 > self._limit:
            return
        raw = CaptureGap(
            lost_frames=self._gap_count,
            lost_bytes=self._gap_bytes,
            first_idx=self._gap_first,
            last_idx=self._gap_last,
            reason=self._gap_reason_locked(),
        ).to_bytes()
        self._gap_count = self._gap_bytes = 0
        self._gaps += 1
        tail = self._strings.tail(Dir.EVENT, Channel.SESSION, Event.CAPTURE_GAP, None)
        idx = self._next_idx
        self._next_idx = idx + 1
        head = NUMERIC.pack(idx, recv_ns, mono_ns, 0, conn, 0, feed << 4)
        # Bypasses the limit check: it is small, and it is the record of the loss.
        self._buffer_locked(idx, head + tail + raw, mono_ns)

    def _gap_reason_locked(self) -> str:
        failing = self._write_errors + self._fsync_errors > self._gap_errors_at_start
        why = self._last_failure if failing or self._last_error else None
        return f"journal backlog over memory_limit_bytes={self._limit}: " + (
            f"writes failing ({why})" if why else "the disk is slower than capture"
        )

    # ---- readable from any thread ------------------------------------------------------

    @property
    def durable_idx(self) -> int:
        """Every accepted record with idx <= this is on disk (-1 before the first commit)."""
        return self._durable_idx

    @property
    def next_idx(self) -> int:
        return self._next_idx

    def wait_durable(self, idx: int, timeout_s: float | None = None) -> bool:
        """Block until `durable_idx >= idx`; False on timeout. Not for the event loop."""
        self._wake.set()
        with self._durable_cond:
            return self._durable_cond.wait_for(lambda: self._durable_idx >= idx, timeout_s)

    def sync(self) -> None:
        """Ask the writer thread to commit now instead of at its next tick."""
        self._wake.set()

    def stats(self) -> JournalStats:
        with self._lock:
            # Every idx handed out was either accepted or dropped.
            appended, dropped = self._next_idx - self._dropped, self._dropped
            backlog, gaps, durable = self._backlog, self._gaps, self._bytes_durable
        return JournalStats(
            frames_appended=appended,
            frames_dropped=dropped,
            durable_idx=self._durable_idx,
            bytes_appended=durable + backlog,
            bytes_durable=durable,
            backlog_bytes=backlog,
            write_errors=self._write_errors,
            fsync_errors=self._fsync_errors + self._files.fsync_errors,
            segments_sealed=self._files.sealed,
            gap_events=gaps,
            last_error=self._last_error or self._files.last_error,
        )

    def close(self, timeout_s: float = 30.0) -> JournalStats:
        """Commit everything, seal the last segment, release the lock.

        If writing still fails after `timeout_s`, what is left in memory is counted as
        dropped. Idempotent.
        """
        with self._lock:
            already = self._closing
            self._closing = True
            self._close_deadline = time.monotonic() + timeout_s
        if not already:
            self._wake.set()
            self._thread.join()
            self._lock_file.release()
        return self.stats()

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        next_commit = time.monotonic() + self._interval_s
        while True:
            timeout = next_commit - time.monotonic()
            if timeout > 0:
                self._wake.wait(timeout)  # CLOCK_MONOTONIC: immune to wall-clock steps
            self._wake.clear()
            closing = self._closing
            started = time.monotonic()
            try:
                ok = self._commit()
                if ok:
                    self._files.maybe_roll(started, self._max_bytes, self._max_age_s)
            except Exception as exc:  # a bug must not silently end durability
                self._last_error = f"internal error: {exc!r}"
                ok = False
            if closing and (ok or time.monotonic() >= self._close_deadline):
                try:
                    self._finish(ok)
                except Exception as exc:
                    self._last_error = f"at close: {exc!r}"
                return
            next_commit = started + (self._interval_s if ok else self._retry_s)

    def _commit(self) -> bool:
        """One group commit. True when nothing is left pending."""
        with self._lock:
            if self._buf:
                self._pending.append(
                    _Chunk(self._buf, self._buf_last_idx, self._buf_first_mono, self._buf_frames)
                )
                self._buf = bytearray()
                self._buf_frames = 0
        if not self._pending:
            return True
        try:
            nbytes = self._files.commit([c.data for c in self._pending])
        except CommitFailed as exc:
            if exc.stage == "write":
                self._write_errors += 1
            else:
                self._fsync_errors += 1
            self._last_error = self._last_failure = str(exc)
            return False
        latency_ns = time.monotonic_ns() - self._pending[0].first_mono_ns
        last_idx = self._pending[-1].last_idx
        self._pending.clear()
        with self._lock:
            self._backlog -= nbytes
        self._bytes_durable += nbytes
        self._last_error = None
        with self._durable_cond:
            self._durable_idx = last_idx
            self._durable_cond.notify_all()
        if self._on_durable is not None:
            try:
                self._on_durable(last_idx, latency_ns)
            except Exception as exc:
                self._last_error = f"on_durable callback: {exc!r}"
        return True

    def _finish(self, ok: bool) -> None:
        if not ok:
            # Frames still in memory at the close deadline are lost; count them.
            with self._lock:
                self._dropped += self._buf_frames + sum(c.frames for c in self._pending)
                self._buf = bytearray()
                self._buf_frames = 0
                self._backlog = 0
            self._pending.clear()
        try:
            self._files.close(clean=ok)
        except OSError as exc:
            self._last_error = f"seal at close: {exc}"
