"""A journal segment's records as one Arrow table, for the capture file writer.

`segment_table` turns the packed records of a segment (`recorder.storage._segment`)
into the columns of `schemas.arrow.CAPTURE_SCHEMA`, in idx order, without a Python
loop over the records. Everything after that (the partition split, the row order
inside a file, the Parquet writer settings) is `schemas.parquet`, the one writer of
capture files, shared with `kalshi-tape merge` (docs/architecture.md section 2).
"""

from __future__ import annotations

import array
import itertools

import pyarrow as pa
import pyarrow.compute as pc

from recorder.storage._segment import SegmentData
from schemas.arrow import CAPTURE_SCHEMA

__all__ = ["segment_table"]


def _dict_column(per_key: list[str | None], key_idx: pa.Array) -> pa.DictionaryArray:
    """Expand per-key strings to a per-row dictionary column with a sorted dictionary."""
    values = sorted({v for v in per_key if v is not None})
    code = {v: i for i, v in enumerate(values)}
    per_key_codes = pa.array([None if v is None else code[v] for v in per_key], pa.int32())
    return pa.DictionaryArray.from_arrays(
        pc.take(per_key_codes, key_idx), pa.array(values, pa.string())
    )


def segment_table(data: SegmentData) -> pa.Table:
    """All records of a segment as one table in CAPTURE_SCHEMA, in idx order."""
    n = len(data)
    keys, version = data.keys, data.header.version
    key_idx = pa.array(data.key, pa.int32())
    no_sid = pc.take(pa.array([not k.has_sid for k in keys], pa.bool_()), key_idx)
    no_seq = pc.take(pa.array([not k.has_seq for k in keys], pa.bool_()), key_idx)
    # The packed numbers (see recorder.storage._segment.NUMBERS) as fixed-size lists, one per
    # record; list_element pulls each field out as a column without a Python loop.
    packed = pa.py_buffer(data.numbers)
    wide = pa.FixedSizeListArray.from_arrays(
        pa.Array.from_buffers(pa.int64(), n * 5, [None, packed]), 5
    )
    narrow = pa.FixedSizeListArray.from_arrays(
        pa.Array.from_buffers(pa.int32(), n * 10, [None, packed]), 10
    )
    zeros = pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(bytes(4 * n))])
    run_id = pa.DictionaryArray.from_arrays(zeros, pa.array([data.header.run_id], pa.string()))
    seq = pc.list_element(wide, 3)
    sid = pc.list_element(narrow, 9)
    columns = [
        run_id,
        pc.list_element(wide, 0),
        pc.list_element(narrow, 8),
        pc.list_element(wide, 1),
        pc.list_element(wide, 2),
        _dict_column([k.dir for k in keys], key_idx),
        _dict_column([k.channel for k in keys], key_idx).dictionary_decode(),
        _dict_column([k.type for k in keys], key_idx),
        pc.if_else(no_sid, pa.scalar(None, pa.int32()), sid),
        pc.if_else(no_seq, pa.scalar(None, pa.int64()), seq),
        _dict_column([k.market_ticker for k in keys], key_idx),
        _binary_column(data.raw),
        pc.take(pa.array([k.opcode(version) for k in keys], pa.int8()), key_idx),
        pc.take(pa.array([k.feed(version) for k in keys], pa.int8()), key_idx),
    ]
    return pa.Table.from_arrays(columns, schema=CAPTURE_SCHEMA)


def _binary_column(values: list[bytes]) -> pa.Array:
    """A binary column from one join and an offsets array (about twice as fast as
    `pa.array(values)`, which grows its buffers value by value)."""
    offsets = array.array("i", [0])
    offsets.extend(itertools.accumulate(map(len, values)))  # OverflowError past 2 GiB
    data = b"".join(values)
    return pa.BinaryArray.from_buffers(
        pa.binary(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
