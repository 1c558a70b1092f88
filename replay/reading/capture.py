"""Reading a capture: which files and row groups, and the order of their rows.

This module owns the capture index (runs, channels, files, row groups with their
idx and time ranges) and the streaming read that restores arrival order. It knows
nothing of the engine; `replay.reading.session` feeds what it reads to one.

Order (docs/architecture.md section 7.1): within a run, records are ordered
by `idx`. Files keep their rows sorted for compression, but only within a row
group: a file's row groups hold disjoint, increasing idx ranges (the writer cuts
them from rows in idx order, `schemas.parquet`). The reader merges a run's files
by idx holding one row group per file at a time (`_horizon_merge`), so memory is a
row group per file, never a whole day, whatever the channels' rates. A file whose
row groups overlap (another writer's) is read whole, so its order is still right.

Runs are merged by receive time measured on each run's own monotonic clock from
its first record (`recv_ns` of the first record + elapsed `mono_ns`), so a
wall-clock step inside a run moves neither its order nor its pacing.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from replay.reading.layout import RootLocation, list_capture_files, open_parquet
from schemas.arrow import complete
from schemas.channels import SEQUENCED_CHANNELS, Channel
from schemas.storage import StorageOptions

__all__ = [
    "ArrowCopying",
    "Capture",
    "Copying",
    "GiveBack",
    "Piece",
    "ReadWindow",
    "Resume",
    "bool_array",
    "contiguous",
    "int64_view",
    "merge_key",
    "of_markets",
    "read_filter",
]

#: Channels a replay always reads: acks and commands, and connection events.
STATE_CHANNELS = (Channel.CONTROL, Channel.SESSION)


def read_filter(channels: Iterable[str], markets: frozenset[str] | None) -> frozenset[str] | None:
    """The market filter a read of `channels` may apply for a consumer of `markets`.

    None (read every market) when a channel read is sequenced: one subscription's seq
    counts the frames of all its markets (docs/protocol.md section 4), so the engine
    must see the other markets' frames too, or it takes their seqs for lost ones and
    clears books that were valid. Deliveries are narrowed to `markets` instead.
    """
    if markets is None or any(c in SEQUENCED_CHANNELS for c in channels):
        return None
    return markets


#: Columns the engine needs, in this order.
ENGINE_COLUMNS = ("run_id", "idx", "conn", "recv_ns", "mono_ns", "dir", "channel", "raw")


@dataclass(frozen=True, slots=True)
class Piece:
    """One row group of one capture file."""

    path: PurePath
    row_group: int
    run_id: str
    channel: str
    rows: int
    idx_lo: int
    idx_hi: int
    recv_lo: int
    recv_hi: int
    mono_hi: int


@dataclass(slots=True)
class RunIndex:
    """The pieces of one run, and the anchor its merge key is measured from."""

    run_id: str
    pieces: list[Piece] = field(default_factory=list)
    anchor_recv_ns: int = 0
    anchor_mono_ns: int = 0


@dataclass(frozen=True, slots=True)
class ReadWindow:
    """A window of one run's records in idx order, with their merge keys."""

    run_id: str
    table: pa.Table
    keys: pa.Array  # int64 merge key per row (see `merge_key`)


def _stat(stats: object, name: str) -> int:
    value = getattr(stats, name)
    return int(value) if value is not None else 0


#: Most rows a merged window holds by default (each live file contributes a slice of its
#: row group). Bulk readers (`replay.datasets`) ask for bigger windows: fewer calls.
WINDOW_ROWS = 4096


class Capture:
    """An index of a capture root: what it holds and where.

    Reading footers is cheap (no data pages); the index is built once per replay.
    `root` is a local directory or an object-store URI (`s3://bucket/prefix`, reached
    with `storage`, by default the AWS environment).
    """

    def __init__(
        self, root: str | Path | RootLocation, *, storage: StorageOptions | None = None
    ) -> None:
        listing = list_capture_files(root, storage)
        self.root = listing.root
        self.uri = listing.uri  # the root as the user names it (a path or s3://...)
        self.location = listing.location
        self.filesystem: pafs.FileSystem | None = listing.filesystem
        self.runs: dict[str, RunIndex] = {}
        self.channels: set[str] = set()
        self._files_by_channel: dict[str, list[PurePath]] = {}
        for f in listing.files:
            self.channels.add(f.channel)
            self._files_by_channel.setdefault(f.channel, []).append(f.path)
            meta = self.open(f.path).metadata
            names = meta.schema.names
            i_idx, i_recv, i_mono = (
                names.index("idx"),
                names.index("recv_ns"),
                names.index("mono_ns"),
            )
            run = self.runs.setdefault(f.run_id, RunIndex(f.run_id))
            for rg in range(meta.num_row_groups):
                group = meta.row_group(rg)
                if group.num_rows == 0:
                    continue
                idx_stats = group.column(i_idx).statistics
                recv_stats = group.column(i_recv).statistics
                mono_stats = group.column(i_mono).statistics
                run.pieces.append(
                    Piece(
                        f.path, rg, f.run_id, f.channel, group.num_rows,
                        _stat(idx_stats, "min"), _stat(idx_stats, "max"),
                        _stat(recv_stats, "min"), _stat(recv_stats, "max"),
                        _stat(mono_stats, "max"),
                    )
                )  # fmt: skip
        for run in self.runs.values():
            run.pieces.sort(key=lambda p: (p.idx_lo, p.idx_hi))
        self._markets: dict[str, frozenset[str]] = {}

    def open(self, path: PurePath) -> pq.ParquetFile:
        """Open one of the capture's files (on its filesystem)."""
        return open_parquet(path, self.filesystem)

    # ------------------------------------------------------------------ what it holds

    @property
    def data_channels(self) -> list[str]:
        """Wire channels with at least one file (not the pseudo channels)."""
        return sorted(c for c in self.channels if not c.startswith("_"))

    def markets(self, channel: str) -> frozenset[str]:
        """Every market ticker recorded on a channel (read from the column dictionaries)."""
        cached = self._markets.get(channel)
        if cached is not None:
            return cached
        found: set[str] = set()
        for path in self._files_by_channel.get(channel, []):
            column = self.open(path).read(columns=["market_ticker"]).column("market_ticker")
            for chunk in column.chunks:
                values = chunk.dictionary if pa.types.is_dictionary(chunk.type) else chunk.unique()
                found.update(v for v in values.to_pylist() if v is not None)
        self._markets[channel] = frozenset(found)
        return self._markets[channel]

    def time_range(self) -> tuple[int, int] | None:
        """(first, last) recv_ns over the whole capture, or None if empty."""
        pieces = [p for run in self.runs.values() for p in run.pieces]
        if not pieces:
            return None
        return min(p.recv_lo for p in pieces), max(p.recv_hi for p in pieces)

    # ------------------------------------------------------------------ reading

    def read_run(
        self,
        run_id: str,
        channels: Iterable[str] | None,
        *,
        columns: tuple[str, ...] = ENGINE_COLUMNS,
        markets: frozenset[str] | None = None,
        from_idx: Resume = 0,
        with_state: bool = True,
        window_rows: int = WINDOW_ROWS,
        give_back: int = 0,
        copying: Copying | None = None,
    ) -> Iterator[pa.Table]:
        """Yield the run's records of `channels` (plus the state channels unless
        `with_state` is False) in idx order, one window at a time. `markets` keeps only
        rows of those markets (and rows of no market); `from_idx` skips what precedes
        (`Resume`: one idx, or one per feed); `give_back`: see `GiveBack`; `copying`: see
        `Copying`.

        Each file contributes one row group at a time (sorted by idx); a window holds
        the rows at or below the smallest last idx among the files' current row groups,
        so memory is one row group per file, however the channels' rates differ.
        """
        run = self.runs[run_id]
        state = set(STATE_CHANNELS) if with_state else set()
        wanted = None if channels is None else set(channels) | state
        by_feed = None if isinstance(from_idx, int) else dict(from_idx)
        lo = from_idx if by_feed is None else min(by_feed.values(), default=0)
        if by_feed is not None and len(set(by_feed.values())) < 2:
            by_feed = None  # every feed from the same idx
        by_file: dict[PurePath, list[Piece]] = {}
        for p in run.pieces:
            if (wanted is None or p.channel in wanted) and p.idx_hi >= lo:
                by_file.setdefault(p.path, []).append(p)
        extra = ("market_ticker",) if markets else ()
        extra += ("feed",) if by_feed is not None else ()
        cols = list(dict.fromkeys((*columns, "idx", *extra)))
        fs = self.filesystem
        released = GiveBack(give_back)
        streams = [_FileStream(path, pieces, cols, fs, released, copying)
                   for path, pieces in by_file.items()]  # fmt: skip
        # Windows come in idx order: only those starting before the last feed's first idx
        # hold rows to skip (filtering every window would copy the whole run).
        hi = lo if by_feed is None else max(by_feed.values())
        for table in _horizon_merge(streams, window_rows):
            idx = int64_view(table.column("idx"))
            if len(idx) and idx[0] < hi:
                keep = idx >= lo if by_feed is None else _from_each_feed(table, by_feed, lo)
                table = table.filter(bool_array(keep))
            if markets is not None:
                table = table.filter(of_markets(table.column("market_ticker"), markets))
            if table.num_rows:
                yield table.select(list(columns))

    def last_key(self, run_id: str) -> int:
        """The merge key of the run's last record."""
        anchor_recv, anchor_mono = self.anchors(run_id)
        return anchor_recv + max(p.mono_hi for p in self.runs[run_id].pieces) - anchor_mono

    def read_piece(self, piece: Piece, columns: list[str]) -> pa.Table:
        """One row group's `columns` (those an older file lacks come as nulls)."""
        file = self.open(piece.path)
        present = [c for c in columns if c in file.schema_arrow.names]
        return complete(file.read_row_group(piece.row_group, columns=present), columns)

    def anchors(self, run_id: str) -> tuple[int, int]:
        """(recv_ns, mono_ns) of the run's first record: the origin of its merge key."""
        run = self.runs[run_id]
        if not run.anchor_recv_ns:
            first = min(run.pieces, key=lambda p: p.idx_lo)
            table = self.open(first.path).read_row_group(
                first.row_group, columns=["idx", "recv_ns", "mono_ns"]
            )
            i = pc.index(table.column("idx"), pc.min(table.column("idx")))
            run.anchor_recv_ns = table.column("recv_ns")[i.as_py()].as_py()
            run.anchor_mono_ns = table.column("mono_ns")[i.as_py()].as_py()
        return run.anchor_recv_ns, run.anchor_mono_ns

    def read(
        self,
        channels: Iterable[str] | None = None,
        *,
        columns: tuple[str, ...] = ENGINE_COLUMNS,
        markets: frozenset[str] | None = None,
        runs: Iterable[str] | None = None,
        from_idx: dict[str, Resume] | None = None,
        with_state: bool = True,
        window_rows: int = WINDOW_ROWS,
        give_back: int = 0,
        copying: Copying | None = None,
    ) -> Iterator[ReadWindow]:
        """Yield windows of every run, merged by merge key (see the module docstring).

        With one run this is `read_run` plus keys. With several, each yielded window
        holds only rows whose key is at most the smallest key any run could still
        produce, so consumers may process windows in order without looking back.
        """
        run_ids = sorted(runs if runs is not None else self.runs)
        cols = tuple(dict.fromkeys((*columns, "mono_ns")))
        streams = []
        for run_id in run_ids:
            anchor_recv, anchor_mono = self.anchors(run_id)
            start = (from_idx or {}).get(run_id, 0)
            tables = self.read_run(run_id, channels, columns=cols, markets=markets,
                                   from_idx=start, with_state=with_state,
                                   window_rows=window_rows, give_back=give_back,
                                   copying=copying)  # fmt: skip
            streams.append(_keyed(run_id, tables, anchor_recv, anchor_mono, columns))
        if len(streams) == 1:
            yield from streams[0]
            return
        yield from _merge(streams)


#: Where to read a run from: an idx, or each feed's own (feed -> first idx; records of no
#: feed are feed 0's, and a feed not named reads from the lowest idx named). A seek into a
#: capture of redundant feeds restores each feed from its own checkpoint
#: (`replay.reading.session.restore_checkpoint`), and each feed's records count from there.
Resume = int | Mapping[int, int]


def _from_each_feed(table: pa.Table, first: dict[int, int], lo: int) -> np.ndarray:
    """Which rows of `table` are at or past their feed's first idx."""
    feeds = values_of(table.column("feed"), if_null=0).astype(np.intp)
    starts = np.full(max(int(feeds.max(initial=0)), *first) + 1, lo, np.int64)
    for feed, idx in first.items():
        starts[feed] = idx
    return int64_view(table.column("idx")) >= starts[feeds]


def merge_key(mono_ns: pa.Array, anchor_recv_ns: int, anchor_mono_ns: int) -> pa.Array:
    """recv_ns of the run's first record plus the monotonic time elapsed since it."""
    keys = int64_view(mono_ns) - anchor_mono_ns + anchor_recv_ns
    return pa.Array.from_buffers(pa.int64(), len(keys), [None, pa.py_buffer(keys)])


# Arithmetic and comparisons with Python numbers go through numpy views of the Arrow
# buffers: a Python number handed to an Arrow compute function is converted by pyarrow,
# which imports pandas (where installed) to ask whether it is a pandas object
# (docs/performance.md section 4.19), in a replay that never sees a DataFrame.


def contiguous(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one array: its only chunk itself (`combine_chunks` copies even then),
    else its chunks put together."""
    if isinstance(column, pa.Array):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def int64_view(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values of an int64 column without nulls, as a numpy view (a copy if chunked)."""
    return values_of(array)


def bool_array(mask: np.ndarray) -> pa.Array:
    """A numpy bool mask as an Arrow boolean array."""
    bits = np.packbits(mask, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])


def values_of(column: pa.Array | pa.ChunkedArray, if_null: int | None = None) -> np.ndarray:
    """A numeric column's values as numpy: a read-only view of its buffer where it is one
    chunk without nulls; `if_null` where it is null (None: whatever the slot holds)."""
    array = contiguous(column)
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise TypeError(f"not a numeric column: {array.type}")
    dtype = np.dtype(array.type.to_pandas_dtype())  # numpy's: nothing of pandas is imported
    if len(array) == 0:
        return np.zeros(0, dtype)
    out = np.frombuffer(array.buffers()[1], dtype, len(array), array.offset * dtype.itemsize)
    if if_null is not None and array.null_count:
        out = out.copy()
        out[~bools_of(array.is_valid())] = if_null
    return out


def bools_of(column: pa.Array | pa.ChunkedArray, if_null: bool = False) -> np.ndarray:
    """A boolean column as a numpy bool array, `if_null` where it is null."""
    array = contiguous(column)
    n, at = len(array), array.offset
    if n == 0:
        return np.zeros(0, np.bool_)
    bits = np.unpackbits(np.frombuffer(array.buffers()[1], np.uint8), bitorder="little")
    out = bits[at : at + n].astype(np.bool_)
    if array.null_count:
        valid = np.unpackbits(np.frombuffer(array.buffers()[0], np.uint8), bitorder="little")
        out[valid[at : at + n] == 0] = if_null
    return out


def of_markets(column: pa.ChunkedArray, markets: frozenset[str]) -> pa.Array:
    """Rows of these markets, or of no market (decoding each chunk's dictionary once)."""
    parts = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type) and len(chunk):
            wanted = np.array([v in markets for v in chunk.dictionary.to_pylist()], bool)
            idx = chunk.indices
            codes = values_of(idx, if_null=0).astype(np.int64)
            keep = wanted[codes] if wanted.size else np.zeros(len(idx), bool)
            if idx.null_count:  # no market: kept
                keep |= ~bools_of(idx.is_valid())
            parts.append(keep)
        else:
            parts.append(np.array([v is None or v in markets for v in chunk.to_pylist()], bool))
    return bool_array(np.concatenate(parts) if parts else np.zeros(0, bool))


def _keyed(
    run_id: str,
    tables: Iterator[pa.Table],
    anchor_recv_ns: int,
    anchor_mono_ns: int,
    columns: tuple[str, ...],
) -> Iterator[ReadWindow]:
    for table in tables:
        keys = merge_key(table.column("mono_ns"), anchor_recv_ns, anchor_mono_ns)
        yield ReadWindow(run_id, table.select(list(columns)), keys)


class Copying(Protocol):
    """How the reader copies records: a row group read out of its file (`read`), and a
    window's rows taken out of a loaded row group that is not in idx order (`take`).

    `ArrowCopying` (Arrow's own, in fresh memory each time) by default; the derive
    reads and gathers the frames into memory it reuses (`replay.datasets.gather`)."""

    def read(self, reader: pq.ParquetFile, group: int, columns: list[str]) -> pa.Table:
        """Row group `group` of the file, `columns` only."""
        ...

    def take(self, table: pa.Table, rows: pa.Array) -> pa.Table:
        """The rows `rows` (row numbers) of `table`, in that order."""
        ...


class ArrowCopying:
    """Arrow's `read_row_group` and `Table.take`."""

    def read(self, reader: pq.ParquetFile, group: int, columns: list[str]) -> pa.Table:
        return reader.read_row_group(group, columns=columns, use_threads=False)

    def take(self, table: pa.Table, rows: pa.Array) -> pa.Table:
        return table.take(rows)


class GiveBack:
    """When a read gives the memory Arrow's pool freed back to the system: once `every`
    bytes of row groups were read since it last did (0: before each row group is read).

    Given back before each row group, a replay's memory stays bounded whatever the
    allocator (pyarrow's default, mimalloc, keeps freed pages otherwise:
    docs/performance.md section 4.18); but every row group then lands in fresh pages,
    which the system must zero, and a bulk reader such as the derive pays for that with
    a sixth of its time (docs/performance.md section 6.7). The derive gives back every
    128 MiB read instead."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.read = 0

    def loaded(self, nbytes: int) -> None:
        """A row group of `nbytes` was read."""
        self.read += nbytes

    def due(self) -> None:
        """Before a row group is read: give the freed memory back if it is time."""
        if self.read >= self.every:
            pa.default_memory_pool().release_unused()
            self.read = 0


class _FileStream:
    """One file's rows in idx order, one row group (or, for a file whose row groups
    overlap, the whole file) at a time.

    A loaded row group stays as read, in storage order, beside the permutation that
    puts it in idx order; rows are copied out in idx order a window at a time
    (`take`), so a row group is held once, never also sorted whole. A row group
    already in idx order (what the recorder writes) has no permutation: its windows
    are slices of it, not copies.
    """

    def __init__(
        self, path: PurePath, pieces: list[Piece], columns: list[str],
        filesystem: pafs.FileSystem | None = None, released: GiveBack | None = None,
        copying: Copying | None = None,
    ) -> None:  # fmt: skip
        self.path, self.columns, self.filesystem = path, columns, filesystem
        self.released = released or GiveBack(0)
        self.copying: Copying = copying or ArrowCopying()
        pieces = sorted(pieces, key=lambda p: p.idx_lo)
        disjoint = all(a.idx_hi < b.idx_lo for a, b in itertools.pairwise(pieces))
        self.groups = [[p] for p in pieces] if disjoint else [pieces]
        self.current: pa.Table | None = None
        self.order: pa.Array | None = None  # `current`'s row numbers in idx order (None: as is)
        self.idx: pa.Array | None = None  # `current`'s idx values in idx order
        self.offset = 0  # rows of `order` already taken
        self._reader: pq.ParquetFile | None = None
        self._present = columns  # the columns the file holds (it may lack optional ones)

    def load(self) -> bool:
        """Read the next row group; False when the file is done."""
        self.current = self.order = self.idx = None
        self.released.due()
        if not self.groups:
            self._reader = None
            return False
        group = self.groups.pop(0)
        if self._reader is None:
            self._reader = open_parquet(self.path, self.filesystem)
            held = set(self._reader.schema_arrow.names)
            self._present = [c for c in self.columns if c in held]
        tables = [self.copying.read(self._reader, p.row_group, self._present) for p in group]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        # Older files: `channel` is a dictionary, `opcode` or `feed` is missing (schemas.arrow).
        table = complete(_channel_as_string(table), self.columns)
        self.released.loaded(table.nbytes)
        idx = contiguous(table.column("idx"))
        values = int64_view(idx)
        if bool(np.all(values[1:] >= values[:-1])):
            self.order, self.idx = None, idx
        else:
            self.order = pc.sort_indices(idx)
            self.idx = pc.take(idx, self.order)
        self.current = table
        self.offset = 0
        return True

    @property
    def remaining(self) -> int:
        assert self.current is not None
        return self.current.num_rows - self.offset

    @property
    def last_idx(self) -> int:
        assert self.idx is not None
        return int(self.idx[-1].as_py())

    def idx_at(self, ahead: int) -> int:
        """The idx of the row `ahead` rows past the next one to take."""
        assert self.idx is not None
        return int(self.idx[self.offset + ahead].as_py())

    def count_upto(self, cutoff: int) -> int:
        """How many of the rows not yet taken have idx <= cutoff."""
        assert self.idx is not None
        rest = int64_view(self.idx)[self.offset :]
        return int(np.count_nonzero(rest <= cutoff))

    def take(self, n: int) -> pa.Table:
        """The next n rows in idx order."""
        assert self.current is not None
        if self.order is None:
            rows = self.current.slice(self.offset, n)
        else:
            rows = self.copying.take(self.current, self.order.slice(self.offset, n))
        self.offset += n
        return rows

    @property
    def next_lo(self) -> int:
        """The lowest idx the file has not loaded yet (from the row-group statistics)."""
        return min(p.idx_lo for p in self.groups[0]) if self.groups else -1


def _channel_as_string(table: pa.Table) -> pa.Table:
    """Files of older captures hold `channel` as a dictionary: decode it, so that rows of
    old and new files can be put together."""
    i = table.schema.get_field_index("channel")
    field = table.schema.field(i) if i >= 0 else None
    if field is None or not pa.types.is_dictionary(field.type):
        return table
    return table.set_column(i, field.with_type(pa.string()), pc.cast(table.column(i), pa.string()))


def _horizon_merge(
    streams: list[_FileStream], window_rows: int = WINDOW_ROWS
) -> Iterator[pa.Table]:
    """Merge files whose rows are each in idx order into one stream in idx order.

    A file is opened only when the merge reaches its first idx, so a day of journal
    segments is read a few files at a time, not all at once. Each window holds the
    rows up to a cutoff idx that no live file can undercut (the smallest last idx of
    their loaded row groups) and at most about `_WINDOW_ROWS` rows, so memory is one
    row group per live file plus one window, whatever the capture's length.
    """
    pending = sorted(streams, key=lambda s: s.next_lo)
    live: list[_FileStream] = []
    while live or pending:
        if not live:
            first = pending.pop(0)
            if first.load():
                live.append(first)
            continue
        horizon = min(s.last_idx for s in live)
        while pending and pending[0].next_lo <= horizon:  # it may hold rows up to horizon
            joining = pending.pop(0)
            if joining.load():
                live.append(joining)
                horizon = min(horizon, joining.last_idx)
        # No window beyond _WINDOW_ROWS rows of any one file: cut at that row's idx.
        cutoff = horizon
        for s in live:
            if s.remaining > window_rows:
                cutoff = min(cutoff, s.idx_at(window_rows - 1))
        parts = [s.take(n) for s in live if (n := s.count_upto(cutoff))]
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        if len(parts) > 1:
            table = table.take(pc.sort_indices(table.column("idx")))
        yield table
        live = [s for s in live if s.remaining > 0 or s.load()]


def _merge(streams: list[Iterator[ReadWindow]]) -> Iterator[ReadWindow]:
    """Interleave several runs' windows by merge key, window slice by window slice.

    Each step takes, from the run whose pending rows start earliest, the rows up to
    the earliest key any other run has pending (its next row): those can go out
    now, in order, without ever looking back.
    """
    pending: list[tuple[int, int, ReadWindow, int]] = []  # (first key, stream no, window, offset)
    for no, stream in enumerate(streams):
        window = next(stream, None)
        if window is not None:
            heapq.heappush(pending, (window.keys[0].as_py(), no, window, 0))
    while pending:
        _, no, window, offset = heapq.heappop(pending)
        limit = pending[0][0] if pending else None
        keys = window.keys
        if limit is None:
            end = len(keys)
        else:
            # rows of this window with key <= limit (keys are non-decreasing in a run)
            end = offset + int(np.count_nonzero(int64_view(keys)[offset:] <= limit))
            end = max(end, offset + 1)  # always make progress
        yield ReadWindow(window.run_id, window.table.slice(offset, end - offset),
                         keys.slice(offset, end - offset))  # fmt: skip
        if end < len(keys):
            heapq.heappush(pending, (keys[end].as_py(), no, window, end))
        else:
            nxt = next(streams[no], None)
            if nxt is not None:
                heapq.heappush(pending, (nxt.keys[0].as_py(), no, nxt, 0))
