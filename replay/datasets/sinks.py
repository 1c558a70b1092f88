"""Where derived rows go: Arrow tables in memory, or Hive-partitioned Parquet files.

A sink takes batches per dataset folder in order (`add`) and, at `finish`, builds
the bars from the trades and quotes it saw (bars need the whole range: they are
aggregates with a closing quote) with one DuckDB query. `MemorySink` keeps
everything as Arrow tables (the API's on-the-fly path); `DiskSink` writes each
requested dataset as `DIR/<folder>/date=YYYY-MM-DD/part-<tag>.parquet` (one file
per day and shard, a day's old files replaced) on any pyarrow filesystem, and
spills the trades and the quotes the bars need to a local temporary directory, so a
day is never held in memory. A bar's closing quote is the last quote received before
its end, in arrival order where several share a nanosecond: the quotes carry their
arrival number (`_ord`), and only the last of each market in each interval can close
a bar, so the spill keeps no other (`closing_quotes`).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from replay.datasets import schema
from replay.datasets.arrays import bools_of, numbers, values_of, within
from replay.datasets.rows import BAR_TRADES
from replay.datasets.schema import decimals
from replay.datasets.spec import Spec

__all__ = ["DiskSink", "MemorySink", "bars_table", "day_of", "schema_of"]

NS_DAY = 86_400 * 10**9
#: Written with a dictionary (the repeating strings, `schema.CODED`) and with statistics
#: on the time column (what lets readers skip row groups: rows are in time order);
#: zstd level 1. A third faster to write than every column's statistics and dictionary
#: at the default level, for 9% more bytes (book_changes). No statistics on `market`
#: (every row group holds most markets, so they skip nothing) nor on `seq` and
#: `exchange_ns`: 10% of book_changes' write.
_STATISTICS = ("recv_ns", "ts_ns")


def _is_price(field: pa.Field) -> bool:
    """A price column: exact (`schema.PRICE`, or `schema.MID` for mids, spreads and VWAPs)
    or its float convenience."""
    return field.type in (schema.PRICE, schema.MID) or field.name.endswith("price_f")


def _writer_options(arrow: pa.Schema) -> dict[str, Any]:
    """How a dataset's columns are written. Integers and decimals (decimals as Parquet's
    INT64 decimal, which every reader knows) are delta-encoded: times, seqs and sizes
    move in small steps, so zstd gets a quarter of the bytes to compress. On
    book_changes' 1.73M rows: the write 20% faster, the file 25% smaller, pyarrow's read
    40% and DuckDB's scan twice as fast (docs/performance.md section 6.7). Prices are
    written as dictionaries instead: whatever the capture, a price takes at most 10,001
    values (a mid or spread 20,001, a VWAP 100,001), so the dictionary stays within a
    page and the rows are small codes (trades written 14% faster and 17% smaller than
    delta-coded, quotes 5% and 22%, book_changes 6% and 5%). The files keep no Arrow
    schema: the coded strings (`schema.CODED`) read back as strings, and Parquet's own
    types give every other column its Arrow type."""
    names = arrow.names
    prices = [f.name for f in arrow if _is_price(f)]
    delta = {f.name: "DELTA_BINARY_PACKED" for f in arrow
             if f.name not in schema.CODED and f.name not in prices
             and (pa.types.is_integer(f.type) or pa.types.is_decimal(f.type))}  # fmt: skip
    return {"compression": "zstd", "compression_level": 1,
            "use_dictionary": [n for n in schema.CODED if n in names] + prices,
            "write_statistics": [n for n in _STATISTICS if n in names],
            "store_decimal_as_integer": True, "column_encoding": delta,
            "store_schema": False}  # fmt: skip


#: A dataset's rows are written in row groups of about this many bytes (as Arrow holds
#: them): 3-4% faster than a row group per window's batch, and far fewer groups to read.
_ROW_GROUP_BYTES = 8 << 20

_BARS = """
WITH q AS (
  SELECT * FROM quotes_src
  QUALIFY row_number() OVER (PARTITION BY market, recv_ns // {i} ORDER BY _ord DESC) = 1
), t AS (
  SELECT market, recv_ns, (recv_ns // {i}) * {i} AS ts_ns, yes_price, count,
         CAST(yes_price * 10000 AS HUGEINT) * CAST(count * 100 AS HUGEINT) AS notional
  FROM trades_src WHERE yes_price IS NOT NULL AND count IS NOT NULL
), b AS (
  SELECT ts_ns, market, arg_min(yes_price, recv_ns) AS open, max(yes_price) AS high,
         min(yes_price) AS low, arg_max(yes_price, recv_ns) AS close,
         CAST(sum(count) AS DECIMAL(18, 2)) AS volume,
         CAST((sum(notional) * 20 + sum(CAST(count * 100 AS HUGEINT)))
              // (2 * sum(CAST(count * 100 AS HUGEINT))) AS BIGINT) AS vwap_units,
         count(*) AS trades, ts_ns + {i} AS end_ns
  FROM t GROUP BY ts_ns, market
)
SELECT b.ts_ns, b.market, b.open, b.high, b.low, b.close, b.volume, b.vwap_units, b.trades,
       q.bid, q.ask, q.mid, coalesce(q.valid, false) AS valid
FROM b ASOF LEFT JOIN q ON b.market = q.market AND b.end_ns > q.recv_ns
ORDER BY b.ts_ns, b.market
"""


def day_of(ns: int) -> str:
    """The UTC date (YYYY-MM-DD) of a time in ns."""
    return str(np.datetime64(ns // NS_DAY, "D"))


def bars_table(con: Any, interval_ns: int) -> pa.Table:
    """Bars from the relations `trades_src` and `quotes_src` (with `_ord`, the quotes'
    arrival order) registered on `con`."""
    table = con.sql(_BARS.format(i=interval_ns)).to_arrow_table()
    vwap = table.column("vwap_units").combine_chunks()
    ok = bools_of(vwap.is_valid())
    cols = {name: table.column(name) for name in table.column_names}
    cols["vwap"] = decimals(values_of(vwap, if_null=0), schema.MID, ok)
    cols["trades"] = pc.cast(cols["trades"], pa.int64())
    return pa.Table.from_arrays([cols[f.name] for f in schema.BARS], schema=schema.BARS)


def schema_of(spec: Spec) -> pa.Schema:
    """The schema of the dataset `spec` names, as its files and tables have it."""
    if spec.kind == "depth":
        return schema.depth_schema(spec.levels)
    return {"book_changes": schema.BOOK_CHANGES, "quotes": schema.QUOTES,
            "trades": schema.TRADES, "bars": schema.BARS}[spec.kind]  # fmt: skip


def closing_quotes(batch: pa.RecordBatch, interval_ns: int, first: int) -> pa.RecordBatch:
    """The quotes of `batch` (in arrival order) that may close a bar of `interval_ns`
    or any multiple of it: each market's last in each interval, numbered by arrival
    (`_ord`, from `first`)."""
    n = batch.num_rows
    codes = values_of(batch.column("market").dictionary_encode().indices).astype(np.int64)
    slot = values_of(batch.column("recv_ns")) // interval_ns
    key = (slot - slot.min()) * (int(codes.max()) + 1) + codes
    _, last_reversed = np.unique(key[::-1], return_index=True)
    keep = np.sort(n - 1 - last_reversed)
    kept = batch.take(numbers(keep))
    return kept.append_column("_ord", numbers(keep + first))


#: The bars' inputs are kept this many rows at a time, not a window's batch at a time (a
#: window's quotes are a few hundred rows; each batch kept costs its calls and, on disk,
#: a row group of the spill): on the 1M-frame capture keeping them took 44 ms of
#: bars:1m's 620 ms, now 20, and the bars' query 25 ms, now 17 (fewer closing quotes).
_BAR_CHUNK = 1 << 16

#: The columns of the bars' inputs the bars' query reads (only those are kept).
_BAR_INPUT = {"quotes": ["recv_ns", "market", "bid", "ask", "mid", "valid", "_ord"],
              "trades": BAR_TRADES}  # fmt: skip


def _no_input(name: str) -> pa.Table:
    """An empty bars' input: the trades, or the quotes with their `_ord`."""
    empty = pa.Table.from_batches([], schema=schema_of(Spec(name)))  # not empty_table(): arrays
    if name == "quotes":
        empty = empty.append_column("_ord", numbers(np.zeros(0, np.int64)))
    return empty.select(_BAR_INPUT[name])


def _public(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` as the API gives it: without the driver's `_frame`, strings as strings."""
    return _typed(batch, pa.string())


def _coded(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` as it is written: without `_frame`, its `schema.CODED` strings coded (the
    kernel's batches come so; rows made elsewhere, such as a restored book's, do not)."""
    return _typed(batch, schema.CODE)


def _typed(batch: pa.RecordBatch, strings: pa.DataType) -> pa.RecordBatch:
    if "_frame" in batch.schema.names:
        batch = batch.drop_columns(["_frame"])
    fields = batch.schema
    for i, field in enumerate(fields):
        if field.name in schema.CODED and field.type != strings:
            column = batch.column(i)
            column = (column.dictionary_encode() if pa.types.is_dictionary(strings)
                      else column.cast(strings))  # fmt: skip
            batch = batch.set_column(i, field.with_type(strings), column)
    return batch


def _starting_in(bars: pa.Table, start_ns: int | None, end_ns: int | None) -> pa.Table:
    """The bars whose interval starts in [start_ns, end_ns)."""
    keep = within(bars.column("ts_ns"), start_ns, end_ns)
    return bars if keep is None else bars.filter(keep)


class _Sink:
    """What both sinks share: the datasets asked for, and the bars' inputs (`bar_input`:
    the trades, and the quotes that may close a bar, numbered in arrival order)."""

    def __init__(self, specs: list[Spec]) -> None:
        self.specs = specs
        # every bar's end is a multiple of this (0: no bars)
        self.bar_step = math.gcd(*(s.interval_ns for s in specs if s.kind == "bars"))
        self.quotes_seen = 0
        self._inputs_due: dict[str, list[pa.RecordBatch]] = {}  # bar inputs not yet kept

    def bar_input(self, folder: str, batch: pa.RecordBatch) -> None:
        """Trades or quotes the bars are made from (not written as datasets), kept
        `_BAR_CHUNK` rows at a time."""
        if not batch.num_rows:
            return
        due = self._inputs_due.setdefault(folder, [])
        due.append(_public(batch).select([c for c in _BAR_INPUT[folder] if c != "_ord"]))
        if sum(b.num_rows for b in due) >= _BAR_CHUNK:
            self._keep_due(folder)

    def _keep_due(self, folder: str) -> None:
        due = self._inputs_due.pop(folder, [])
        if not due:
            return
        batch = due[0] if len(due) == 1 else pa.concat_batches(due)
        if folder == "quotes":
            kept = closing_quotes(batch, self.bar_step, self.quotes_seen)
            self.quotes_seen += batch.num_rows
            batch = kept
        self._keep_input(folder, batch.select(_BAR_INPUT[folder]))

    def _inputs_kept(self) -> None:
        """Keep what `bar_input` still holds (before the bars are made)."""
        for folder in list(self._inputs_due):
            self._keep_due(folder)

    def _keep_input(self, folder: str, batch: pa.RecordBatch) -> None:
        raise NotImplementedError  # each sink keeps them its way


class MemorySink(_Sink):
    """Every dataset as an Arrow table (for `compute` and `table`)."""

    def __init__(self, specs: list[Spec]) -> None:
        super().__init__(specs)
        self.wanted = {s.folder for s in specs}
        self.parts: dict[str, list[pa.RecordBatch]] = {}
        self.inputs: dict[str, list[pa.RecordBatch]] = {}

    def add(self, folder: str, batch: pa.RecordBatch) -> None:
        if batch.num_rows and folder in self.wanted:
            self.parts.setdefault(folder, []).append(_public(batch))

    def _keep_input(self, folder: str, batch: pa.RecordBatch) -> None:
        self.inputs.setdefault(folder, []).append(batch)

    def _input(self, name: str) -> pa.Table:
        parts = self.inputs.get(name)
        return pa.Table.from_batches(parts) if parts else _no_input(name)

    def finish(self, connect: Any, start_ns: int | None = None,
               end_ns: int | None = None) -> dict[str, pa.Table]:  # fmt: skip
        """The tables (bars: those starting in [start_ns, end_ns)); `connect()` gives the
        DuckDB connection the bars need."""
        self._inputs_kept()
        out: dict[str, pa.Table] = {}
        for spec in self.specs:
            if spec.kind == "bars":
                con = connect()
                con.register("trades_src", self._input("trades"))
                con.register("quotes_src", self._input("quotes"))
                out[spec.name] = _starting_in(bars_table(con, spec.interval_ns), start_ns, end_ns)
                con.unregister("trades_src")
                con.unregister("quotes_src")
            else:
                parts = self.parts.get(spec.folder, [])
                out[spec.name] = pa.Table.from_batches(parts, schema=schema_of(spec))
        return out


class DiskSink(_Sink):
    """Requested datasets as Hive-partitioned Parquet under `base` on `fs`."""

    def __init__(self, specs: list[Spec], fs: pafs.FileSystem, base: str, tag: str,
                 wanted: set[str]) -> None:  # fmt: skip
        super().__init__(specs)
        self.fs, self.base, self.tag, self.wanted = fs, base, tag, wanted
        self.writers: dict[tuple[str, str], pq.ParquetWriter] = {}
        self.pending: dict[tuple[str, str], list[pa.RecordBatch]] = {}
        self.pending_bytes: dict[tuple[str, str], int] = {}
        self.rows: dict[str, dict[str, int]] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="kalshi-tape-derive-"))
        self.spill: dict[str, pq.ParquetWriter] = {}

    def _keep_input(self, folder: str, batch: pa.RecordBatch) -> None:
        writer = self.spill.get(folder)
        if writer is None:
            # a local file read once: light compression, no statistics, one dictionary
            writer = self.spill[folder] = pq.ParquetWriter(
                self.tmp / f"{folder}.parquet", batch.schema, compression="lz4",
                use_dictionary=["market"], write_statistics=False)  # fmt: skip
        writer.write_batch(batch)

    def add(self, folder: str, batch: pa.RecordBatch) -> None:
        if not batch.num_rows or folder not in self.wanted:
            return
        batch = _coded(batch)
        time_col = "ts_ns" if "ts_ns" in batch.schema.names else "recv_ns"
        days = values_of(batch.column(time_col)) // NS_DAY
        first, last = int(days.min()), int(days.max())
        if first == last:  # nearly always: a window within one day
            self._write(folder, day_of(first * NS_DAY), batch)
            return
        for day in np.unique(days):
            self._write(folder, day_of(int(day) * NS_DAY), batch.filter(numbers(days == day)))

    def _write(self, folder: str, date: str, batch: pa.RecordBatch) -> None:
        """Buffer `batch`; a row group is written once `_ROW_GROUP_BYTES` are buffered
        (batches come a window at a time, a few thousand rows each: as row groups they
        cost the write more and give readers many small groups)."""
        key = (folder, date)
        self.pending.setdefault(key, []).append(batch)
        self.pending_bytes[key] = self.pending_bytes.get(key, 0) + batch.nbytes
        if self.pending_bytes[key] >= _ROW_GROUP_BYTES:
            self._flush(key)
        counts = self.rows.setdefault(folder, {})
        counts[date] = counts.get(date, 0) + batch.num_rows

    def _flush(self, key: tuple[str, str]) -> None:
        batches = self.pending.pop(key, [])
        self.pending_bytes.pop(key, None)
        if not batches:
            return
        writer = self.writers.get(key)
        if writer is None:
            folder, date = key
            directory = f"{self.base}/{folder}/date={date}"
            self.fs.create_dir(directory, recursive=True)
            path = f"{directory}/part-{self.tag}.parquet"
            writer = pq.ParquetWriter(path, batches[0].schema, filesystem=self.fs,
                                      **_writer_options(batches[0].schema))  # fmt: skip
            self.writers[key] = writer
        table = pa.Table.from_batches(batches)
        writer.write_table(table, row_group_size=max(table.num_rows, 1))

    def finish(self, connect: Any, start_ns: int | None = None,
               end_ns: int | None = None) -> dict[str, dict[str, int]]:  # fmt: skip
        """Close the files and write the bars starting in [start_ns, end_ns)
        (`connect()`: their DuckDB connection); returns the rows written per dataset and
        date."""
        self._inputs_kept()
        for writer in self.spill.values():
            writer.close()
        try:
            for spec in self.specs:
                if spec.kind != "bars":
                    continue
                con = connect()
                for name in ("trades", "quotes"):
                    path = self.tmp / f"{name}.parquet"
                    con.unregister(f"{name}_empty")
                    con.register(f"{name}_empty", _no_input(name))
                    source = f"read_parquet('{path}')" if path.exists() else f"{name}_empty"
                    con.sql(f"CREATE OR REPLACE TEMP VIEW {name}_src AS SELECT * FROM {source}")
                bars = _starting_in(bars_table(con, spec.interval_ns), start_ns, end_ns)
                for batch in bars.to_batches(max_chunksize=1 << 16):
                    self.add(spec.folder, batch)
            for key in list(self.pending):
                self._flush(key)
        finally:
            for writer in self.writers.values():
                writer.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.rows
