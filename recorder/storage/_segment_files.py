"""The journal's files: the open segment and the closed ones waiting for their sealed name.

This module owns the life of a segment file on disk (recorder.storage._segment draws its
bytes): create it with its header made durable, write committed bytes at the last
synced offset, fdatasync, roll, seal (fsync, rename, directory fsync), and abandon it
after a failed fsync without ever syncing it again. It is used by the journal's
writer thread only and knows nothing of buffers, idx or callbacks beyond `on_sealed`.

A file without a synced record is deleted instead of sealed: nothing in it was ever
reported durable. Closed files are renamed strictly in order; the rename of an
abandoned file (which names its limit) is made durable before anything else is
written, so no rewritten frame is reported durable while the old copy could still be
read past its limit.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from recorder.storage._durable import FsyncFn, fsync_dir
from recorder.storage._segment import encode_header, segment_name

__all__ = ["CommitFailed", "SegmentFiles"]

#: Write errors after which the same file is kept and rewritten from its synced offset.
_KEEP_FILE_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
_DELETE: Final = -1  # as a limit: the file holds nothing durable


class CommitFailed(Exception):
    """A commit did not reach the disk; nothing it carried is durable.

    Attributes:
        stage: "write" or "fdatasync".
        error: the OSError.
    """

    def __init__(self, stage: str, error: OSError) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


@dataclass(slots=True)
class _OpenSegment:
    fd: int
    path: Path
    number: int
    synced: int  # bytes confirmed by fdatasync (header included)
    records: bool = False
    first_write_mono: float = 0.0


class SegmentFiles:
    """Segment files of one run in one journal directory (writer thread only).

    Args:
        journal_dir, run_id: where, and whose.
        first_segment: number of the first segment to create.
        fsync, fdatasync: injectable for fault tests; `fsync` also syncs the directory.
        on_sealed: called with each sealed path, in order.
    """

    def __init__(
        self,
        journal_dir: Path,
        run_id: str,
        first_segment: int,
        fsync: FsyncFn,
        fdatasync: FsyncFn,
        on_sealed: Callable[[Path], None] | None,
    ) -> None:
        self.journal_dir = journal_dir
        self.run_id = run_id
        self._next = first_segment
        self._fsync = fsync
        self._fdatasync = fdatasync
        self._on_sealed = on_sealed
        self._seg: _OpenSegment | None = None
        self._to_seal: list[tuple[Path, int, int | None]] = []  # (path, number, limit)
        self.sealed = 0
        self.fsync_errors = 0  # at seal time; commit failures are reported by CommitFailed
        self.last_error: str | None = None

    def commit(self, chunks: list[bytearray]) -> int:
        """Write `chunks` after the last synced byte and fdatasync; returns bytes synced.

        Raises:
            CommitFailed: nothing was made durable. After a failed fdatasync (or a write
                error other than a full disk) the file has been abandoned; the caller
                keeps the chunks and commits them again, into a new file.
        """
        try:
            self._finish_seals()
        except OSError as exc:  # nothing written; the open file (if any) is untouched
            raise CommitFailed("write", exc) from exc
        try:
            seg = self._open()
            offset = seg.synced
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.pwrite(seg.fd, view, offset)
                    view, offset = view[written:], offset + written
        except OSError as exc:
            if self._seg is not None and exc.errno not in _KEEP_FILE_ERRNOS:
                self._abandon()
            raise CommitFailed("write", exc) from exc
        try:
            self._fdatasync(seg.fd)
        except OSError as exc:
            self._abandon()  # never fsync this file again
            raise CommitFailed("fdatasync", exc) from exc
        if not seg.records:
            seg.records, seg.first_write_mono = True, time.monotonic()
        nbytes = offset - seg.synced
        seg.synced = offset
        return nbytes

    def maybe_roll(self, now: float, max_bytes: int, max_age_s: float) -> None:
        """Seal the open segment if it reached the size limit or the age limit (age from
        its first synced record, monotonic)."""
        seg = self._seg
        if seg is None or not seg.records:
            return
        if seg.synced >= max_bytes or now - seg.first_write_mono >= max_age_s:
            self.seal()

    def seal(self) -> None:
        """Close the open segment and seal it (delete it if it holds no record)."""
        seg = self._seg
        if seg is None:
            return
        self._seg = None
        limit: int | None = None
        try:
            self._fsync(seg.fd)
        except OSError as exc:
            # Its records were fdatasynced already; name the limit, never sync it again.
            self.fsync_errors += 1
            self.last_error = f"fsync at seal: {exc}"
            limit = seg.synced
        finally:
            os.close(seg.fd)
        self._queue(seg, limit if seg.records else _DELETE)

    def close(self, clean: bool) -> None:
        """Seal the open segment (`clean`) or abandon it, and finish every rename."""
        if self._seg is not None:
            if clean:
                self.seal()
            else:
                self._abandon()
        self._finish_seals()

    def _open(self) -> _OpenSegment:
        if self._seg is not None:
            return self._seg
        number = self._next
        self._next += 1
        path = self.journal_dir / segment_name(self.run_id, number, sealed=False)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        header = encode_header(self.run_id, number)
        try:
            if os.pwrite(fd, header, 0) != len(header):
                raise OSError(errno.ENOSPC, "short write of segment header")
            self._fsync(fd)
            fsync_dir(self.journal_dir, self._fsync)
        except OSError:
            os.close(fd)
            try:
                os.unlink(path)  # it holds nothing; recovery deletes it if this fails
            except OSError:
                pass
            raise
        self._seg = _OpenSegment(fd, path, number, synced=len(header))
        return self._seg

    def _abandon(self) -> None:
        """Give up the open file: never sync it again; keep only its synced bytes."""
        seg = self._seg
        assert seg is not None
        self._seg = None
        try:
            os.close(seg.fd)
        except OSError:
            pass
        self._queue(seg, seg.synced if seg.records else _DELETE)

    def _queue(self, seg: _OpenSegment, limit: int | None) -> None:
        self._to_seal.append((seg.path, seg.number, limit))
        try:
            self._finish_seals()
        except OSError as exc:
            self.last_error = f"seal: {exc}"  # retried before anything else is written

    def _finish_seals(self) -> None:
        """Rename closed files to their sealed names, in order, each made durable."""
        while self._to_seal:
            path, number, limit = self._to_seal[0]
            if limit == _DELETE:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                self._to_seal.pop(0)
                continue
            sealed = path.with_name(segment_name(self.run_id, number, sealed=True, limit=limit))
            try:
                os.rename(path, sealed)
            except FileNotFoundError:
                if not sealed.exists():
                    raise
            fsync_dir(self.journal_dir, self._fsync)
            self._to_seal.pop(0)
            self.sealed += 1
            if self._on_sealed is not None:
                try:
                    self._on_sealed(sealed)
                except Exception as exc:
                    self.last_error = f"on_sealed callback: {exc!r}"
