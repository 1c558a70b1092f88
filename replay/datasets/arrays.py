"""Arrow arrays made from numpy arrays and Python strings through their buffers.

pyarrow imports pandas, where it is installed, the first time it converts anything
from Python (`pa.array` of a numpy array or a list, a Python number handed to a compute
function), to ask whether it is a pandas object: about 0.3 s and 30 MiB of a derive in a
user's process that never sees a DataFrame (docs/performance.md section 4.19). The
datasets build their columns with these instead: the numpy arrays' own memory becomes
the Arrow buffers (no copy), and nothing is converted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from replay.reading.capture import bool_array, bools_of, contiguous, values_of

__all__ = [
    "binary_buffers",
    "bool_array",
    "bools_of",
    "numbers",
    "strings",
    "values_of",
    "with_nulls",
    "within",
]


def numbers(
    values: np.ndarray, valid: np.ndarray | None = None, kind: pa.DataType | None = None
) -> pa.Array:
    """A numeric (or bool) numpy array as an Arrow array of its type (or of `kind`, the
    values converted to it), null where `valid` is False. The array's memory is shared,
    not copied (but for bools, packed into bits): `values` must not be written to while
    the Arrow array lives."""
    if kind is not None and pa.from_numpy_dtype(values.dtype) != kind:
        values = values.astype(kind.to_pandas_dtype())  # numpy's type: no pandas imported
    if values.dtype == np.bool_:
        out = bool_array(values)
    else:
        values = np.ascontiguousarray(values)
        out = pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                    [None, pa.py_buffer(values)])  # fmt: skip
    return out if valid is None else with_nulls(out, valid)


def with_nulls(array: pa.Array, valid: np.ndarray) -> pa.Array:
    """`array` (no nulls yet, offset 0) null where `valid` is False."""
    if bool(valid.all()):
        return array
    bits = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(array.type, len(array), [bits, *array.buffers()[1:]],
                                 null_count=int(len(valid) - np.count_nonzero(valid)))  # fmt: skip


def strings(values: Sequence[str | None]) -> pa.Array:
    """Python strings as an Arrow string array (None: null)."""
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum(np.array([len(b) for b in encoded], np.int64), out=offsets[1:])
    data = np.frombuffer(b"".join(encoded) or b"\0", np.uint8)
    out = pa.Array.from_buffers(pa.string(), len(encoded),
                                [None, pa.py_buffer(offsets), pa.py_buffer(data)])  # fmt: skip
    return with_nulls(out, np.array([v is not None for v in values], bool))


def within(column: pa.Array | pa.ChunkedArray, start: int | None, end: int | None
           ) -> pa.Array | None:  # fmt: skip
    """The mask of an int64 column's rows in [start, end) (None for an end not given), or
    None when every row is (most batches lie wholly inside a day: no copy for them)."""
    t = values_of(column)
    if not len(t):
        return None
    lo, hi = int(t.min()), int(t.max())
    if (start is None or lo >= start) and (end is None or hi < end):
        return None
    keep = np.ones(len(t), np.bool_)
    if start is not None:
        keep &= t >= start
    if end is not None:
        keep &= t < end
    return bool_array(keep)


def binary_buffers(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a binary column as numpy views: value i is
    data[offsets[i] : offsets[i + 1]]."""
    array = contiguous(array)
    width = 8 if pa.types.is_large_binary(array.type) else 4
    _, offsets, data = array.buffers()[:3]
    offs = np.frombuffer(offsets, np.int64 if width == 8 else np.int32, len(array) + 1,
                         array.offset * width)  # fmt: skip
    raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(1, np.uint8)
    return offs, raw
