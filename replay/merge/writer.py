"""The merged capture's files: which source files go together, their rows restamped, and
where the bytes go.

Layout: the capture layout every reader lists (`schemas.record.partition_file`):
`channel=<channel>/date=<UTC date of recv_ns>/<run_id>-<lo>[-c<hi>].parquet`. Run ids and
journal segment numbers stay those of the sources, so a merged file is named as a
compaction of the same segments would name it, and the readers' visibility rule
(`schemas.record.split_live_files`) reads every one of them:

* the source files of one (channel, run) are grouped by the segments they hold, and
  files whose segment ranges overlap always go together (a segment that spans
  midnight has a file in two date partitions; a compacted file of one date and the
  plain files of the next can share a segment), so two output files of a run never
  hold overlapping segment ranges: neither can supersede the other;
* each group is written as one file per UTC date of its (restamped) rows, named
  `<run_id>-<lo>` (one segment) or `<run_id>-<lo>-c<hi>` (segments lo..hi). Shifting
  B's clock may move rows across midnight: they land in the partition of their new
  date, as the publisher would have put them.

Rows: every column of `schemas.arrow.CAPTURE_SCHEMA` (files of older captures are
completed: a missing `opcode` or `feed` is null), `feed` set to the source's feed,
`recv_ns` moved onto the first source's clock. The bytes are written by
`schemas.parquet`, the one writer of capture files, which the recorder's publisher
uses too (replay does not import the recorder, docs/architecture.md section 2): the
publisher's settings (zstd-3, dictionary pages for the low-cardinality columns, delta
encoding for the counters, no statistics on `raw`; docs/performance.md section 4.6),
row groups of consecutive idx, and the rows of each sorted within it in the order
that compresses best.

Output: a local merged root is written under a hidden name beside the target and
renamed into place when complete, so a merge that fails or is interrupted leaves
nothing; on object storage the files are written under the prefix and deleted again
if the merge does not complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import TracebackType
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from schemas.arrow import CAPTURE_SCHEMA, complete
from schemas.errors import ConfigError, storage_error
from schemas.parquet import ParquetSettings, encode_for_storage, partition_files
from schemas.record import compacted_file_suffix, partition_file
from schemas.storage import StorageOptions, filesystem_for, is_remote, unreachable

__all__ = [
    "TARGET_ROWS",
    "Chunk",
    "OutputRoot",
    "SourceFile",
    "as_capture_schema",
    "by_date",
    "encode",
    "plan",
    "restamp",
]

#: Most rows read into one group (as compaction merges): bounds the merge's memory.
TARGET_ROWS: Final = 500_000
#: The publisher's settings (its defaults): a merged file is written as it would have been.
_SETTINGS: Final = ParquetSettings()


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One live file of a source capture, with what its name and footer say."""

    path: PurePath
    channel: str
    date: str
    run_id: str
    lo: int  # first journal segment it holds
    hi: int  # last (== lo unless compacted)
    compacted: bool
    rows: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """Source files of one (channel, run) that become one file per date."""

    channel: str
    run_id: str
    lo: int
    hi: int
    compacted: bool
    files: tuple[SourceFile, ...]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def name(self, date: str) -> str:
        """The relative path of its file in the partition of `date`."""
        suffix = compacted_file_suffix(self.hi) if self.compacted else ""
        return partition_file(self.channel, date, self.run_id, self.lo, suffix)


def _chunk(channel: str, run_id: str, files: list[SourceFile]) -> Chunk:
    lo, hi = min(f.lo for f in files), max(f.hi for f in files)
    compacted = hi > lo or any(f.compacted for f in files)
    ordered = tuple(sorted(files, key=lambda f: (f.lo, f.hi, f.date)))
    return Chunk(channel, run_id, lo, hi, compacted, ordered)


def plan(files: Iterable[SourceFile], target_rows: int = TARGET_ROWS) -> list[Chunk]:
    """Group the files of each (channel, run): files whose segment ranges overlap are
    always in one group, and consecutive groups are put together up to `target_rows`
    rows. No two chunks of one (channel, run) hold overlapping segment ranges."""
    by_key: dict[tuple[str, str], list[SourceFile]] = {}
    for f in files:
        by_key.setdefault((f.channel, f.run_id), []).append(f)
    chunks: list[Chunk] = []
    for (channel, run_id), group in sorted(by_key.items()):
        components: list[list[SourceFile]] = []
        reach = -1
        for f in sorted(group, key=lambda f: (f.lo, f.hi)):
            if components and f.lo <= reach:
                components[-1].append(f)
            else:
                components.append([f])
            reach = max(reach, f.hi)
        pending: list[SourceFile] = []
        for component in components:
            rows = sum(f.rows for f in component)
            if pending and sum(f.rows for f in pending) + rows > target_rows:
                chunks.append(_chunk(channel, run_id, pending))
                pending = []
            pending += component
        if pending:
            chunks.append(_chunk(channel, run_id, pending))
    return chunks


def as_capture_schema(table: pa.Table) -> pa.Table:
    """A file's rows in today's `CAPTURE_SCHEMA` (older files hold `channel` as a
    dictionary and lack `opcode` or `feed`: read as nulls)."""
    if table.schema == CAPTURE_SCHEMA:
        return table
    return complete(table, CAPTURE_SCHEMA.names).cast(CAPTURE_SCHEMA)


def restamp(table: pa.Table, *, feed: int, shift_ns: int) -> pa.Table:
    """The rows as one feed of the merged capture: `feed` set, `recv_ns` moved by
    `shift_ns` (onto the first source's clock), in idx order. `mono_ns`, `run_id`,
    `conn` and `idx` are kept as they were."""
    table = as_capture_schema(table)
    if table.num_rows > 1:
        table = table.sort_by("idx")
    n = table.num_rows
    feeds = pa.array(np.full(n, feed, np.int8), pa.int8())
    table = table.set_column(CAPTURE_SCHEMA.get_field_index("feed"), CAPTURE_SCHEMA.field("feed"),
                             feeds)  # fmt: skip
    if shift_ns:
        recv = pc.add_checked(table.column("recv_ns"), pa.scalar(shift_ns, pa.int64()))
        table = table.set_column(
            CAPTURE_SCHEMA.get_field_index("recv_ns"), CAPTURE_SCHEMA.field("recv_ns"), recv
        )
    return table


def by_date(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """Each UTC date of the rows' `recv_ns`, in order, with its rows (order kept): the
    publisher's split (`schemas.parquet.partition_files`) of a chunk's one channel."""
    for (_, date), part in partition_files(table):
        yield date, part


def encode(table: pa.Table) -> pa.Buffer:
    """One capture file's bytes, as the publisher writes them
    (`schemas.parquet.encode_for_storage`): row groups of consecutive idx, the rows of
    each sorted within for compression."""
    return encode_for_storage(table, _SETTINGS)


def _new_dir_mode() -> int:
    mask = os.umask(0)  # the only portable way to read it: set, then put it back
    os.umask(mask)
    return 0o777 & ~mask


class OutputRoot:
    """The merged capture root being written: whole or not at all.

    Local: a hidden directory beside the target (`.<name>.<random>.tmp`), every file
    fsynced, renamed to the target by `commit`. Object storage: files put under the
    prefix as they come (one atomic put each), deleted again by `abort`. As a context
    manager, the block's success commits and its failure (or an interrupt) aborts.

    Raises (at construction):
        ConfigError: the target exists (a local path, or a prefix holding objects).
        StorageUnavailable, PermissionDenied: the directory cannot be written.
        StorageError: the object store cannot be reached.
    """

    def __init__(
        self, target: str, *, storage: StorageOptions | None = None, label: str = "--to"
    ) -> None:
        self.target = target
        self.label = label
        self._written: list[str] = []
        self._dirs: set[Path] = set()
        self._done = False
        self._fs: pafs.FileSystem | None = None
        self._tmp: Path | None = None
        if is_remote(target):
            self.uri = target.rstrip("/")
            self._fs, self._base = filesystem_for(self.uri, storage)
            try:
                info = self._fs.get_file_info(self._base)
            except OSError as exc:
                raise unreachable(self.uri, exc) from None
            if info.type != pafs.FileType.NotFound:
                raise ConfigError(label, f"{self.uri} already holds objects",
                                  "give a prefix that holds nothing yet")  # fmt: skip
            return
        path = Path(target.removeprefix("file://")).expanduser().absolute()
        self.path = path.parent.resolve() / path.name
        self.uri = str(self.path)
        if self.path.exists() or self.path.is_symlink():
            raise ConfigError(label, f"{target} already exists",
                              "the merge writes a new capture root: give a path that does not "
                              "exist yet")  # fmt: skip
        try:
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp",
                                              dir=self.path.parent))  # fmt: skip
        except OSError as exc:
            raise storage_error(exc, f"{label}: cannot write in {self.path.parent}") from None

    def put(self, rel: str, data: pa.Buffer | bytes) -> None:
        """Write one file of the merged capture at `rel` (relative to its root)."""
        try:
            if self._tmp is None:
                self._put_remote(rel, data)
                return
            path = self._tmp / rel
            if path.parent not in self._dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._dirs.update(p for p in path.parents if p.is_relative_to(self._tmp))
            with open(path, "wb") as handle:
                handle.write(memoryview(data))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise storage_error(exc, f"{self.label}: cannot write {self.uri}") from None
        self._written.append(rel)

    def _put_remote(self, rel: str, data: pa.Buffer | bytes) -> None:
        assert self._fs is not None
        full = f"{self._base}/{rel}"
        self._fs.create_dir(full.rsplit("/", 1)[0], recursive=True)
        try:
            with self._fs.open_output_stream(full) as out:
                out.write(data)
        except OSError as exc:
            raise unreachable(self.uri, exc) from None

    @property
    def files(self) -> list[str]:
        """The files written so far, relative to the root."""
        return list(self._written)

    def commit(self) -> None:
        """Make the merged root appear at the target (local: one rename)."""
        if self._done:
            return
        self._done = True
        if self._tmp is None:
            return
        try:
            for directory in sorted(self._dirs, key=lambda p: len(p.parts), reverse=True):
                _fsync_dir(directory)
            _fsync_dir(self._tmp)
            os.chmod(self._tmp, _new_dir_mode())
            os.rename(self._tmp, self.path)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            shutil.rmtree(self._tmp, ignore_errors=True)
            if self.path.exists():
                raise ConfigError(self.label, f"{self.target} was created while the merge ran",
                                  "give a path that does not exist yet") from None  # fmt: skip
            raise storage_error(exc, f"{self.label}: cannot write {self.uri}") from None

    def abort(self) -> None:
        """Remove what was written (local: the hidden directory; object storage: each
        file put, as far as the store lets us)."""
        if self._done:
            return
        self._done = True
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        assert self._fs is not None
        for rel in self._written:
            try:
                self._fs.delete_file(f"{self._base}/{rel}")
            except OSError:
                pass

    def __enter__(self) -> OutputRoot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
