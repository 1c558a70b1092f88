"""Writing a query result: an aligned table, CSV, JSON lines (`jsonl`) or Parquet.

Our code writes every output from the Arrow stream DuckDB hands back, so the
DuckDB sandbox never needs write access (`replay.sql.connection`). A file is written under a
temporary name in its directory and renamed when complete: a query that fails
half-way leaves no partial file. Decimals keep their exact text (JSON strings,
like the wire); times are RFC3339 in UTC.

This module knows Arrow and output formats; it knows nothing of captures.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import sys
from pathlib import Path
from typing import IO, Any, Final

import msgspec
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from replay.reading.atomic import atomic_file
from replay.sql.formats import FORMAT_ALIASES, FORMATS
from schemas.errors import ConfigError

__all__ = ["FORMATS", "FORMAT_ALIASES", "format_cell", "render_table", "write_result"]

_CELL_MAX: Final = 60


def write_result(
    reader: pa.RecordBatchReader,
    fmt: str,
    output: Path | None,
    *,
    max_rows: int = 100,
    stdout: IO[str] | None = None,
    sink: IO[bytes] | None = None,
) -> int:
    """Write a result in a format to `output` (or `sink`, or stdout); return the rows written.

    `table` goes to stdout only and shows at most `max_rows` rows; the other
    formats write every row. `sink` is an open binary file that stands for `output`
    (the command line opens it, so that a failed write names its flag).

    Raises:
        ConfigError: the format cannot hold the result (nested columns in CSV), or
            needs a file (parquet) that was not given.
    """
    out = stdout if stdout is not None else sys.stdout
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if fmt == "table":
        if output is not None or sink is not None:
            raise ConfigError("--output", "table output goes to the terminal", "use --format csv")
        return _write_table(reader, out, max_rows)
    if fmt == "parquet" and output is None and sink is None:
        raise ConfigError("--output", "parquet output needs a file", "add --output result.parquet")
    if sink is not None:
        return _write_stream(reader, fmt, sink)
    if output is not None:
        with atomic_file(output) as handle:
            return _write_stream(reader, fmt, handle)
    out.flush()
    binary = getattr(out, "buffer", None)
    if binary is not None:
        rows = _write_stream(reader, fmt, binary)
        binary.flush()
        return rows
    sink = pa.BufferOutputStream()  # a text-only stream (no .buffer): collect, then decode
    rows = _write_stream(reader, fmt, sink)
    out.write(sink.getvalue().to_pybytes().decode())
    return rows


def _write_stream(reader: pa.RecordBatchReader, fmt: str, sink: Any) -> int:
    rows = 0
    if fmt == "jsonl":
        encoder = msgspec.json.Encoder(enc_hook=_json_default, decimal_format="string")
        for batch in reader:
            for row in batch.to_pylist():
                sink.write(encoder.encode(row) + b"\n")
            rows += batch.num_rows
        return rows
    if fmt == "csv":
        _check_flat(reader.schema, "csv")
        with pa_csv.CSVWriter(sink, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    if fmt == "parquet":
        with pq.ParquetWriter(sink, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    raise ConfigError("--format", f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")


def _check_flat(schema: pa.Schema, fmt: str) -> None:
    for field in schema:
        if pa.types.is_nested(field.type):
            raise ConfigError(
                "--format",
                f"{fmt} cannot hold column {field.name!r} of type {field.type}",
                "use --format json or parquet, or unnest the column in SQL",
            )


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def format_cell(value: Any) -> str:
    """One value as table text: NULL, exact decimals, RFC3339 times, readable bytes."""
    if value is None:
        text = "NULL"
    elif isinstance(value, decimal.Decimal):
        text = format(value, "f")
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, bytes):
        try:
            text = value.decode()
        except UnicodeDecodeError:
            text = "base64:" + base64.b64encode(value).decode()
    elif isinstance(value, (list, dict)):
        text = msgspec.json.encode(value, enc_hook=str).decode()
    else:
        text = str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= _CELL_MAX else text[: _CELL_MAX - 1] + "…"


def render_table(names: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    """A plain aligned table: header, rule, rows; numbers right-aligned."""
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(names), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _write_table(reader: pa.RecordBatchReader, out: IO[str], max_rows: int) -> int:
    names = reader.schema.names
    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in reader.schema
    ]
    rows: list[list[str]] = []
    more = False
    for batch in reader:
        take = min(batch.num_rows, max_rows - len(rows))
        columns = [batch.column(i).slice(0, take).to_pylist() for i in range(batch.num_columns)]
        rows += [[format_cell(v) for v in cells] for cells in zip(*columns, strict=True)]
        if take < batch.num_rows:
            more = True
            break
    out.write(render_table(names, rows, numeric) + "\n")
    noun = "row" if len(rows) == 1 else "rows"
    if more:
        out.write(
            f"(first {len(rows)} rows; raise --max-rows or write --format csv/json/parquet)\n"
        )
    else:
        out.write(f"({len(rows)} {noun})\n")
    return len(rows)
