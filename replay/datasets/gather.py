"""The derive's reads: row groups read and windows taken in idx order, their frames in
memory the derive uses again (`Gather`: the reader's `Copying` for the derive).

jemalloc, the commands' pool, gives a block of 8 MiB or more back to the system as soon
as it is freed, so every such block is faulted in again 4 KiB at a time when the next
one is allocated; smaller blocks it keeps for the next
(docs/performance.md section 6.1). A derive's big blocks are its frames: a row group's
(16 to 20 MB read whole) and each window's (8 to 9 MB for 32k rows). So:

- a row group is read in batches of about `_PIECE` bytes of frames (blocks jemalloc
  keeps) and its frames are put together in a buffer used again for the next row
  group (`Gather.read`);
- the recorder sorts each row group for compression (by type, or by type and market:
  `schemas.parquet`), so each window is copied out of it in idx order: the small
  columns through Arrow's take, the frames by a compiled loop (`kernel.gather`) into a
  buffer used again for a later window (`Gather.take`).

A buffer is used again only once no Arrow array or numpy view made from it is alive
(`Reused`).
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replay.datasets import kernel
from replay.datasets.arrays import binary_buffers, values_of
from replay.reading.capture import ArrowCopying, contiguous

__all__ = ["Gather", "Reused"]

#: A buffer's reference count when only `Reused` holds it (its list, and
#: `sys.getrefcount`'s own argument): any window, slice or numpy view made from it adds
#: one (Arrow keeps the numpy array it wraps alive).
_IDLE = 2

#: Bytes of frames per batch of a row group read in batches: well under jemalloc's 8 MiB
#: (1 MiB measured fastest of 0.25 to 4 MiB on the 10M-frame day, memory alike).
_PIECE = 1 << 20

#: The most bytes of frames a binary array's 32-bit offsets reach.
_OFFSETS = 1 << 31


class Reused:
    """Byte buffers used again once nothing made from them is alive.

    A buffer is handed out again only when no Arrow array or numpy view made from it
    is alive (Python's reference count says so), so what was made in it stays intact
    for as long as anything holds it; at most `keep` buffers are kept."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._buffers: list[np.ndarray] = []

    def get(self, nbytes: int) -> np.ndarray:
        """An idle buffer of at least `nbytes`, or a new one (a quarter larger, so that
        the next request, a little larger, fits it too)."""
        for k in range(len(self._buffers)):
            if self._buffers[k].nbytes >= nbytes and self._idle(k):
                return self._buffers[k]
        new = np.empty(max(nbytes + nbytes // 4, 1 << 16), np.uint8)
        self._buffers.append(new)
        while len(self._buffers) > self.keep:  # an idle one goes first, else the oldest
            idle = [k for k in range(len(self._buffers)) if self._idle(k)]
            del self._buffers[idle[0] if idle else 0]
        return new

    def _idle(self, k: int) -> bool:
        return sys.getrefcount(self._buffers[k]) <= _IDLE

    def __len__(self) -> int:
        """How many buffers it keeps (held or idle)."""
        return len(self._buffers)


class Gather(ArrowCopying):
    """The reader's `Copying` for the derive: row groups and windows whose frames live
    in reused buffers.

    The derive holds two windows at a time (the one being decoded and the next being
    read) and a row group per file being read (a window read in idx order is a slice of
    its row group, so it holds that row group's buffer too)."""

    def __init__(self, keep: int = 2, groups: int = 4) -> None:
        self.windows = Reused(keep)
        self.groups = Reused(groups)

    def read(self, reader: pq.ParquetFile, group: int, columns: list[str]) -> pa.Table:
        """Row group `group`, its frames (`raw`) read in batches of about `_PIECE` bytes
        and put together in a reused buffer (a row group with fewer frames, or frames
        that may be null, read whole by Arrow)."""
        meta = reader.metadata.row_group(group)
        nbytes = _uncompressed(meta, "raw")
        field = reader.schema_arrow.field("raw") if "raw" in columns else None
        if (
            field is None
            or field.nullable
            or field.type != pa.binary()
            or not 2 * _PIECE <= nbytes < _OFFSETS
        ):
            return super().read(reader, group, columns)
        rows = meta.num_rows
        rest: list[pa.RecordBatch] = []
        out = self.groups.get(nbytes + 8)
        placed = np.zeros(rows + 1, np.int32)
        at = filled = 0
        for batch in reader.iter_batches(batch_size=max(1, rows * _PIECE // nbytes),
                                         row_groups=[group], columns=columns,
                                         use_threads=False):  # fmt: skip
            offsets, data = binary_buffers(batch.column("raw"))
            lo, hi = int(offsets[0]), int(offsets[-1])
            if filled + hi - lo >= _OFFSETS:  # more than 32-bit offsets hold: Arrow's read
                return super().read(reader, group, columns)
            if filled + hi - lo > out.nbytes:  # the metadata undercounted: grow
                bigger = self.groups.get(2 * (filled + hi - lo))
                bigger[:filled] = out[:filled]
                out = bigger
            out[filled : filled + hi - lo] = data[lo:hi]
            placed[at + 1 : at + batch.num_rows + 1] = offsets[1:] - (lo - filled)
            at += batch.num_rows
            filled += hi - lo
            rest.append(batch.drop_columns(["raw"]))
        table = pa.Table.from_batches(rest).combine_chunks()
        return table.add_column(columns.index("raw"), field,
                                _frames(field.type, placed[: at + 1], out))  # fmt: skip

    def take(self, table: pa.Table, rows: pa.Array) -> pa.Table:
        """The rows `rows` of `table`: the frames gathered into a reused buffer."""
        i = table.schema.get_field_index("raw")
        raw = contiguous(table.column(i)) if i >= 0 else None
        if (
            raw is None
            or raw.null_count
            or not (pa.types.is_binary(raw.type) or pa.types.is_large_binary(raw.type))
        ):
            return super().take(table, rows)
        offsets, data = binary_buffers(raw)
        picked = values_of(rows).astype(np.int64)
        starts = offsets[picked].astype(np.int64)
        lengths = offsets[picked + 1] - starts
        placed = np.zeros(len(picked) + 1, offsets.dtype)
        np.cumsum(lengths, out=placed[1:])
        out = self.windows.get(int(placed[-1]) + 8)  # `gather` may write 7 bytes past the end
        kernel.gather(data, starts, lengths, placed, out)
        rest = table.remove_column(i).take(rows)
        return rest.add_column(i, table.schema.field(i), _frames(raw.type, placed, out))


def _frames(kind: pa.DataType, offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    """A binary array over numpy memory (no copy): value i is data[offsets[i]:offsets[i + 1]]."""
    return pa.Array.from_buffers(kind, len(offsets) - 1,
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])  # fmt: skip


def _uncompressed(meta: pq.RowGroupMetaData, column: str) -> int:
    """The bytes of a row group's column once decompressed (0 if it has none)."""
    for k in range(meta.num_columns):
        if meta.column(k).path_in_schema == column:
            return int(meta.column(k).total_uncompressed_size)
    return 0
