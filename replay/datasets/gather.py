"""A window's rows taken out of a row group in idx order, its frames gathered into
memory the derive uses again (`Gather`: the reader's `take` for the derive).

The recorder sorts each row group for compression (by type, or by type and market:
`schemas.parquet`), so a reader copies each window out of it in idx order. Arrow's
`take` puts every copy in fresh memory, and jemalloc, the commands' pool, gives a block
that large back to the system as soon as it is freed: each window's frames (8 to 9 MB
for 32k rows) were faulted in again 4 KiB at a time, about 100 of the 130 ns a row's
take cost (docs/performance.md section 6.1). Here the small columns still go through
Arrow's take; the frames are copied by a compiled loop (`kernel.gather`) into buffers
that are used again once nothing holds a window made in them.
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa

from replay.datasets import kernel
from replay.datasets.arrays import binary_buffers, values_of
from replay.reading.capture import contiguous

__all__ = ["Gather"]

#: A buffer's reference count when only `Gather` holds it (its list, and
#: `sys.getrefcount`'s own argument): any window, slice or numpy view made from it adds
#: one (Arrow keeps the numpy array it wraps alive).
_IDLE = 2


class Gather:
    """The reader's `take` for the derive: windows whose frames live in reused buffers.

    A buffer is used again only when no Arrow array or numpy view made from it is
    alive (Python's reference count says so), so a window stays intact for as long as
    anything holds it; at most `keep` buffers are kept (the derive holds two windows
    at a time: the one being decoded and the next being read)."""

    def __init__(self, keep: int = 3) -> None:
        self.keep = keep
        self._buffers: list[np.ndarray] = []

    def __call__(self, table: pa.Table, rows: pa.Array) -> pa.Table:
        i = table.schema.get_field_index("raw")
        raw = contiguous(table.column(i)) if i >= 0 else None
        if (
            raw is None
            or raw.null_count
            or not (pa.types.is_binary(raw.type) or pa.types.is_large_binary(raw.type))
        ):
            return table.take(rows)
        offsets, data = binary_buffers(raw)
        picked = values_of(rows).astype(np.int64)
        starts = offsets[picked].astype(np.int64)
        lengths = offsets[picked + 1] - starts
        placed = np.zeros(len(picked) + 1, offsets.dtype)
        np.cumsum(lengths, out=placed[1:])
        out = self._buffer(int(placed[-1]) + 8)  # `gather` may write 7 bytes past the end
        kernel.gather(data, starts, lengths, placed, out)
        frames = pa.Array.from_buffers(raw.type, len(picked),
                                       [None, pa.py_buffer(placed), pa.py_buffer(out)])  # fmt: skip
        rest = table.remove_column(i).take(rows)
        return rest.add_column(i, table.schema.field(i), frames)

    def _buffer(self, nbytes: int) -> np.ndarray:
        """An idle buffer of at least `nbytes`, or a new one (a quarter larger, so that
        the next window, a little larger, fits it too)."""
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

    @property
    def buffers(self) -> int:
        """How many buffers it keeps (held by windows or idle)."""
        return len(self._buffers)
