"""Where derived rows go: Arrow tables in memory, or Hive-partitioned Parquet files.

A sink takes batches per dataset folder in order (`add`) and, at `finish`, builds
the bars from the trades and quotes it saw (bars need the whole range: they are
aggregates with a closing quote) with one DuckDB query. `MemorySink` keeps
everything as Arrow tables (the API's on-the-fly path); `DiskSink` writes each
requested dataset as `DIR/<folder>/date=YYYY-MM-DD/part-<tag>.parquet` (one file
per day and shard, a day's old files replaced) on any pyarrow filesystem, and
spills the trades and quotes the bars need to a local temporary directory, so a
day is never held in memory.
"""

from __future__ import annotations

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
from replay.datasets.schema import decimals
from replay.datasets.spec import Spec

__all__ = ["DiskSink", "MemorySink", "bars_table", "day_of"]

NS_DAY = 86_400 * 10**9
#: Written with a dictionary (repeating strings) and with statistics (what readers filter
#: on: time and market); zstd level 1. A third faster to write than every column's
#: statistics and dictionary at the default level, for 9% more bytes (book_changes).
_DICTIONARY = ("run_id", "market", "kind", "side", "taker_side")
_STATISTICS = ("recv_ns", "ts_ns", "exchange_ns", "market", "seq", "date")

_BARS = """
WITH t AS (
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
FROM b ASOF LEFT JOIN quotes_src q ON b.market = q.market AND b.end_ns > q.recv_ns
ORDER BY b.ts_ns, b.market
"""


def day_of(ns: int) -> str:
    """The UTC date (YYYY-MM-DD) of a time in ns."""
    return str(np.datetime64(ns // NS_DAY, "D"))


def bars_table(con: Any, interval_ns: int) -> pa.Table:
    """Bars from the relations `trades_src` and `quotes_src` registered on `con`."""
    table = con.sql(_BARS.format(i=interval_ns)).to_arrow_table()
    vwap = table.column("vwap_units").combine_chunks()
    ok = np.asarray(vwap.is_valid())
    cols = {name: table.column(name) for name in table.column_names}
    cols["vwap"] = decimals(np.asarray(vwap.fill_null(0), np.int64), schema.MID, ok)
    cols["trades"] = pc.cast(cols["trades"], pa.int64())
    return pa.table([cols[f.name] for f in schema.BARS], schema=schema.BARS)


def _empty(spec: Spec) -> pa.Schema:
    if spec.kind == "depth":
        return schema.depth_schema(spec.levels)
    return {"book_changes": schema.BOOK_CHANGES, "quotes": schema.QUOTES,
            "trades": schema.TRADES, "bars": schema.BARS}[spec.kind]  # fmt: skip


def _public(batch: pa.RecordBatch) -> pa.RecordBatch:
    if "_frame" in batch.schema.names:
        return batch.drop_columns(["_frame"])
    return batch


class MemorySink:
    """Every dataset as an Arrow table (for `compute` and `table`)."""

    def __init__(self, specs: list[Spec]) -> None:
        self.specs = specs
        self.parts: dict[str, list[pa.RecordBatch]] = {}

    def add(self, folder: str, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.parts.setdefault(folder, []).append(_public(batch))

    def _table(self, spec: Spec) -> pa.Table:
        parts = self.parts.get(spec.folder, [])
        return pa.Table.from_batches(parts, schema=_empty(spec))

    def finish(self, connect: Any) -> dict[str, pa.Table]:
        """The tables; `connect()` gives the DuckDB connection the bars need."""
        out: dict[str, pa.Table] = {}
        for spec in self.specs:
            if spec.kind == "bars":
                con = connect()
                con.register("trades_src", self._table(Spec("trades")))
                con.register("quotes_src", self._table(Spec("quotes")))
                out[spec.name] = bars_table(con, spec.interval_ns)
                con.unregister("trades_src")
                con.unregister("quotes_src")
            else:
                out[spec.name] = self._table(spec)
        return out


class DiskSink:
    """Requested datasets as Hive-partitioned Parquet under `base` on `fs`."""

    def __init__(self, specs: list[Spec], fs: pafs.FileSystem, base: str, tag: str,
                 wanted: set[str]) -> None:  # fmt: skip
        self.specs, self.fs, self.base, self.tag, self.wanted = specs, fs, base, tag, wanted
        self.writers: dict[tuple[str, str], pq.ParquetWriter] = {}
        self.rows: dict[str, dict[str, int]] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="kalshi-tape-derive-"))
        self.spill: dict[str, pq.ParquetWriter] = {}

    def add(self, folder: str, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        batch = _public(batch)
        if folder in ("trades", "quotes") and any(s.kind == "bars" for s in self.specs):
            writer = self.spill.get(folder)
            if writer is None:
                writer = self.spill[folder] = pq.ParquetWriter(self.tmp / f"{folder}.parquet",
                                                               batch.schema)  # fmt: skip
            writer.write_batch(batch)
        if folder not in self.wanted:
            return
        time_col = "ts_ns" if "ts_ns" in batch.schema.names else "recv_ns"
        days = np.asarray(batch.column(time_col), np.int64) // NS_DAY
        for day in np.unique(days):
            part = batch.filter(pa.array(days == day)) if len(np.unique(days)) > 1 else batch
            self._write(folder, day_of(int(day) * NS_DAY), part)

    def _write(self, folder: str, date: str, batch: pa.RecordBatch) -> None:
        key = (folder, date)
        writer = self.writers.get(key)
        if writer is None:
            directory = f"{self.base}/{folder}/date={date}"
            self.fs.create_dir(directory, recursive=True)
            path = f"{directory}/part-{self.tag}.parquet"
            names = batch.schema.names
            writer = pq.ParquetWriter(
                path, batch.schema, filesystem=self.fs, compression="zstd", compression_level=1,
                use_dictionary=[n for n in _DICTIONARY if n in names],
                write_statistics=[n for n in _STATISTICS if n in names],
            )  # fmt: skip
            self.writers[key] = writer
        writer.write_batch(batch)
        counts = self.rows.setdefault(folder, {})
        counts[date] = counts.get(date, 0) + batch.num_rows

    def finish(self, connect: Any) -> dict[str, dict[str, int]]:
        """Close the files and write the bars (`connect()`: their DuckDB connection);
        returns the rows written per dataset and date."""
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
                    con.register(f"{name}_empty", _empty(Spec(name)).empty_table())
                    source = f"read_parquet('{path}')" if path.exists() else f"{name}_empty"
                    con.sql(f"CREATE OR REPLACE TEMP VIEW {name}_src AS SELECT * FROM {source}")
                bars = bars_table(con, spec.interval_ns)
                for batch in bars.to_batches(max_chunksize=1 << 16):
                    self.add(spec.folder, batch)
        finally:
            for writer in self.writers.values():
                writer.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.rows
