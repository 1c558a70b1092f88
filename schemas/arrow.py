"""The Arrow schema of the capture record, shared by the Parquet writer and every reader.

Column meanings are in `schemas.record`. Low-cardinality strings are dictionary
encoded; `raw` is binary, bytes exact as they crossed the wire. `channel` is a plain
string column (Parquet still dictionary-encodes its pages, `DICTIONARY_COLUMNS`), the
type every Hive reader gives the `channel=` directory: so pyarrow datasets, Dask,
DuckDB and Polars open a root with both without a type conflict. Files of older
captures hold it as a dictionary; every reader of this project takes either.
`opcode` (1 text, 2 binary) came later: files of older captures lack the column, and
every reader of this project reads them as if it held nulls (`OPTIONAL_COLUMNS`).
`feed` (int8) came later still: which of a recorder's redundant feeds (independent
connection sequences subscribed to the same channels and markets, numbered from 0) the
record belongs to. A recorder writes 0..N-1; older files lack the column and read it as
null. Null and 0 mean the same: the first (or only) feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pyarrow as pa

from schemas.record import COLUMNS

__all__ = ["CAPTURE_SCHEMA", "DICTIONARY_COLUMNS", "OPTIONAL_COLUMNS", "complete"]

_dict_str = pa.dictionary(pa.int32(), pa.string())

CAPTURE_SCHEMA: Final[pa.Schema] = pa.schema(
    [
        pa.field("run_id", _dict_str, nullable=False),
        pa.field("idx", pa.int64(), nullable=False),
        pa.field("conn", pa.int32(), nullable=False),
        pa.field("recv_ns", pa.int64(), nullable=False),
        pa.field("mono_ns", pa.int64(), nullable=False),
        pa.field("dir", _dict_str, nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("type", _dict_str, nullable=False),
        pa.field("sid", pa.int32(), nullable=True),
        pa.field("seq", pa.int64(), nullable=True),
        pa.field("market_ticker", _dict_str, nullable=True),
        pa.field("raw", pa.binary(), nullable=False),
        pa.field("opcode", pa.int8(), nullable=True),
        pa.field("feed", pa.int8(), nullable=True),
    ]
)

#: Columns worth Parquet dictionary encoding (docs/performance.md section 4.6: never `raw`).
DICTIONARY_COLUMNS: Final[tuple[str, ...]] = ("run_id", "dir", "channel", "type", "market_ticker")

#: Columns a capture file may lack (written before they existed): read as nulls.
OPTIONAL_COLUMNS: Final[frozenset[str]] = frozenset({"opcode", "feed"})

assert tuple(CAPTURE_SCHEMA.names) == COLUMNS


def complete(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """`table` with every column of `columns` it lacks that may be missing added as nulls
    (`OPTIONAL_COLUMNS`), in the order of `columns`."""
    missing = [name for name in columns if name not in table.column_names]
    if not missing:
        return table
    for name in missing:
        if name not in OPTIONAL_COLUMNS:
            raise KeyError(f"capture file lacks column {name!r}")
        table = table.append_column(
            CAPTURE_SCHEMA.field(name), pa.nulls(table.num_rows, CAPTURE_SCHEMA.field(name).type)
        )
    return table.select(list(columns))
