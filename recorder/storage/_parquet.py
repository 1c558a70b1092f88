"""Capture records to Parquet bytes: columns, partition split, storage order, writer settings.

This module owns how a batch of capture records becomes one Parquet file per
(channel, UTC date): the Arrow columns of `schemas.arrow.CAPTURE_SCHEMA`, the row
order inside a file, and the writer options measured in docs/performance.md section 4.6
(zstd, large data pages, dictionary only on the low-cardinality columns, big row
groups). It knows
nothing of journals, names or where the bytes go.

Row order: Parquet compresses each page alone, so the order of rows within a file
decides how much zstd finds to share; `idx` restores arrival order on read
(docs/performance.md section 3). Which order is best depends on the file. With a few hundred
markets, frames of one market recur within zstd's window in arrival order, and arrival
order keeps idx, recv_ns and mono_ns nearly free under delta encoding: rows by (type,
idx) are smallest. With thousands of markets, grouping by market wins despite costlier
timestamp columns: (type, market_ticker, idx). `encode_for_storage` tries the candidate
orders on a sample of the file and writes it in the winner (measured in
bench/bench_storage.py).
"""

from __future__ import annotations

import array
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.storage._segment import SegmentData
from schemas.arrow import CAPTURE_SCHEMA
from schemas.record import utc_date

__all__ = [
    "ParquetSettings",
    "encode_for_storage",
    "encode_parquet",
    "partition_files",
    "segment_table",
    "sort_for_storage",
]

_DAY_NS = 86_400 * 1_000_000_000
_STRING_DICT = pa.dictionary(pa.int32(), pa.string())
#: Columns written with Parquet dictionary encoding (never `raw`: docs/performance.md section 4.6).
_PARQUET_DICT = ["run_id", "dir", "channel", "type", "market_ticker"]
_NO_STATS = {"raw"}  # min/max of whole frames would bloat the footer
#: Increasing within each run of rows in either order: delta encoding stores small
#: differences (1.2 B a row less than plain in market order, far more in arrival order).
_DELTA_COLUMNS = {"idx": "DELTA_BINARY_PACKED", "recv_ns": "DELTA_BINARY_PACKED",
                  "mono_ns": "DELTA_BINARY_PACKED", "seq": "DELTA_BINARY_PACKED"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ParquetSettings:
    """How files are written. Publishing favours speed; compaction may raise the level.

    Attributes:
        compression, compression_level: the codec (docs/performance.md section 4.6: zstd-3).
        data_page_size: bytes per data page; large pages compress better (8 MiB).
        row_group_rows: most rows per row group. Each row group holds consecutive idx
            values (rows sorted for compression only *within* it), so a reader
            restores arrival order one row group at a time: this bounds replay's
            memory (64k rows: the minimum for fast reads, docs/performance.md section 4.6).
        row_group_bytes: most bytes of frames (`raw`) per row group: a reader holds one
            row group of each channel at once, so this, not the row count, bounds its
            memory when frames are large.
        sort_orders: candidate row orders within a file (see the module docstring);
            `idx` last keeps each deterministic.
        sample_rows: the candidates are compared on a sample of this many rows (a
            whole file if it is smaller); 0 always takes the first candidate.
    """

    compression: str = "zstd"
    compression_level: int = 3
    data_page_size: int = 8 << 20
    row_group_rows: int = 1 << 16
    row_group_bytes: int = 16 << 20
    sort_orders: tuple[tuple[str, ...], ...] = (("type", "idx"), ("type", "market_ticker", "idx"))
    sample_rows: int = 32_768


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


def partition_files(table: pa.Table) -> Iterator[tuple[tuple[str, str], pa.Table]]:
    """Each (channel, UTC date of recv_ns) of the table, in that order, with its rows in
    idx order.

    Lazily, one part at a time (a filter per part): the caller encodes and drops each
    before the next is built, so a segment is never held twice over.
    """
    if not table.num_rows:
        return
    channel = table.column("channel").combine_chunks()
    if not pa.types.is_dictionary(channel.type):  # plain strings today, a dictionary before
        channel = channel.dictionary_encode()
    channel = _rank(channel)
    days = pc.divide(table.column("recv_ns"), _DAY_NS)
    group = pc.add(pc.multiply(pc.cast(channel, pa.int64()), 1 << 32), days)
    for key in pc.unique(group).sort().to_pylist():
        part = table.filter(pc.equal(group, key))
        first = part.slice(0, 1)
        name = first.column("channel").to_pylist()[0]
        day = first.column("recv_ns").to_pylist()[0] // _DAY_NS
        yield (name, utc_date(day * _DAY_NS)), part


def _rank(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A sortable key for a column: dictionary columns (which Arrow cannot sort) become
    the rank of each row's value; others are returned as they are."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(arr.type):
        return arr
    order = pc.sort_indices(arr.dictionary).to_pylist()
    inverse = [0] * len(order)
    for position, entry in enumerate(order):
        inverse[entry] = position
    return pc.take(pa.array(inverse, pa.int32()), arr.indices)


def sort_for_storage(table: pa.Table, sort_by: tuple[str, ...]) -> pa.Table:
    """Reorder rows for compression (see the module docstring); nulls sort last."""
    if table.num_rows < 2 or not sort_by:
        return table
    keys = pa.table({name: _rank(table.column(name)) for name in sort_by})
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in sort_by])
    return table.take(order)


def encode_for_storage(table: pa.Table, settings: ParquetSettings) -> pa.Buffer:
    """One Parquet file's bytes: row groups of consecutive idx, each sorted within in
    whichever candidate order compresses best (chosen on a sample)."""
    idx = table.column("idx")
    if table.num_rows > 1 and not pc.all(pc.less(idx[:-1], idx[1:])).as_py():
        table = table.take(pc.sort_indices(idx))  # parts from partition_files already are
    orders = settings.sort_orders
    best: tuple[str, ...] = orders[0] if orders else ()
    if len(orders) > 1 and settings.sample_rows:
        n = min(table.num_rows, settings.sample_rows)
        sample = table.slice((table.num_rows - n) // 2, n)
        best = min(orders, key=lambda o: encode_parquet(sort_for_storage(sample, o), settings).size)
    return encode_parquet(table, settings, order=best)


def encode_parquet(
    table: pa.Table, settings: ParquetSettings, *, order: tuple[str, ...] | None = None
) -> pa.Buffer:
    """One Parquet file's bytes, in row groups of consecutive rows as given (at most
    `row_group_rows` rows and about `row_group_bytes` of frames each); with `order`,
    the rows of each row group are sorted by it (not across row groups)."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(
        sink,
        table.schema,
        compression=settings.compression,
        compression_level=settings.compression_level,
        use_dictionary=_PARQUET_DICT,
        data_page_size=settings.data_page_size,
        write_statistics=[c for c in table.column_names if c not in _NO_STATS],
        column_encoding=_DELTA_COLUMNS,
    ) as writer:
        for start, stop in _row_groups(table, settings):
            chunk = table.slice(start, stop - start)
            if order:
                chunk = sort_for_storage(chunk, order)
            writer.write_table(chunk, row_group_size=max(stop - start, 1))
    return sink.getvalue()


def _row_groups(table: pa.Table, settings: ParquetSettings) -> list[tuple[int, int]]:
    """(start, stop) of each row group: a new one after `row_group_rows` rows, or once
    the frames of the current one reach `row_group_bytes`."""
    n = table.num_rows
    if "raw" not in table.column_names or n == 0:
        rows = settings.row_group_rows
        return [(start, min(start + rows, n)) for start in range(0, max(n, 1), rows)]
    bounds = []
    start = size = 0
    lengths = pc.binary_length(table.column("raw")).to_pylist()
    for i, length in enumerate(lengths):
        if i > start and (i - start >= settings.row_group_rows or size >= settings.row_group_bytes):
            bounds.append((start, i))
            start, size = i, 0
        size += length
    bounds.append((start, n))
    return bounds
