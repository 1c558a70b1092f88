"""Capture files' bytes: the one writer of the capture layout's Parquet files.

This module owns how capture records in `schemas.arrow.CAPTURE_SCHEMA` become one
Parquet file per (channel, UTC date of recv_ns): the partition split, the row order
inside a file, and the writer options measured in docs/performance.md section 4.6
(zstd, large data pages, dictionary only on the low-cardinality columns, delta
encoding for the counters, no statistics on `raw`, big row groups of consecutive idx).
Every writer of capture files uses it: the recorder's publisher and compaction
(`recorder.storage`) and `kalshi-tape merge` (`replay.merge.writer`), which may not
import each other (docs/architecture.md section 2). It knows nothing of journals,
names or where the bytes go.

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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.arrow import DICTIONARY_COLUMNS
from schemas.record import utc_date

__all__ = [
    "ParquetSettings",
    "encode_for_storage",
    "encode_parquet",
    "partition_files",
    "sort_for_storage",
]

_DAY_NS: Final = 86_400 * 1_000_000_000
_NO_STATS: Final = frozenset({"raw"})  # min/max of whole frames would bloat the footer
#: Increasing within each run of rows in either order: delta encoding stores small
#: differences (1.2 B a row less than plain in market order, far more in arrival order).
_DELTA_COLUMNS: Final = dict.fromkeys(("idx", "recv_ns", "mono_ns", "seq"), "DELTA_BINARY_PACKED")


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


def partition_files(table: pa.Table) -> Iterator[tuple[tuple[str, str], pa.Table]]:
    """Each (channel, UTC date of recv_ns) of the table, in that order, with its rows in
    the order given (idx order, as the writers pass them).

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
    keys = pc.unique(group).sort().to_pylist()
    for key in keys:
        part = table if len(keys) == 1 else table.filter(pc.equal(group, key))
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
    """One capture file's bytes: row groups of consecutive idx, each sorted within in
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
        use_dictionary=list(DICTIONARY_COLUMNS),
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
