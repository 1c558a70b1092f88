"""SQL over a capture: a sandboxed DuckDB connection and read-only queries.

This module owns two things (the file listing is `replay.reading.layout`):

* `connect`, an in-memory DuckDB confined to the capture root: file access only
  under the resolved root (`allowed_directories`, `enable_external_access=false`;
  on an object store, under its prefix, read-only, through `replay.sql.remote`),
  no extension install or autoload, no spilling to a temp directory, and the
  configuration locked before any view is created or any user SQL runs.
* `check_read_only` / `run_query`: user SQL must be one SELECT-like statement.
  DuckDB lets the allowed directory be written to (COPY TO, ATTACH, EXPORT), so the
  statement type is checked too; results are streamed out as Arrow, and files are
  written by our code (`replay.sql.output`), never by DuckDB.
* resource limits: a memory limit per connection (a quarter of the machine's
  memory by default, where DuckDB's own default is most of it) and a time limit
  per query (five minutes by default), which interrupts the statement through
  DuckDB's `interrupt()` and raises `QueryTimeout`; the connection stays usable.

It must not know how files are written (recorder) or what frames mean (stream);
the view definitions themselves are in `replay.sql.views` and `replay.sql.derived`.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections.abc import Iterator
from typing import Final

import duckdb
import pyarrow as pa

from replay.reading.layout import CaptureListing, RootLocation, list_capture_files, locate_root
from replay.sql.build import parquet_source
from replay.sql.derived import derived_statements
from replay.sql.views import (
    BOOK_SNAPSHOT_LEVELS,
    TYPED_VIEWS,
    dataset_view_statements,
    typed_view_sql,
)
from schemas.errors import ConfigError, QueryLimit
from schemas.storage import StorageOptions
from schemas.units import physical_memory_bytes

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "VIEW_NAMES",
    "QueryMemoryLimit",
    "QueryRejected",
    "QueryTimeout",
    "check_read_only",
    "connect",
    "default_memory_limit_bytes",
    "interrupt_open_connections",
    "run_query",
    "view_statements",
]

#: A query runs at most this long unless told otherwise (`run_query(timeout_s=...)`).
DEFAULT_TIMEOUT_S: Final = 300.0
#: The share of physical memory a connection may use unless told otherwise.
_MEMORY_SHARE: Final = 0.25
_MEMORY_FALLBACK: Final = 4 << 30  # where the OS does not say how much memory there is

#: Names of every view `connect` creates.
VIEW_NAMES: Final[tuple[str, ...]] = (
    "frames",
    "events",
    "control",
    "connections",
    "gaps",
    *(v.name for v in TYPED_VIEWS),
    "book_snapshot_levels",
)


class QueryRejected(ConfigError):
    """User SQL that the read-only query sandbox refuses to run."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__("SQL", problem, fix)


class QueryTimeout(QueryLimit):
    """A query ran longer than its time limit and was interrupted (the connection lives on)."""


class QueryMemoryLimit(QueryLimit):
    """A query needed more memory than the connection's limit (nothing spills to disk)."""


def default_memory_limit_bytes() -> int:
    """A quarter of the machine's physical memory (4 GiB where the OS does not say)."""
    total = physical_memory_bytes()
    return _MEMORY_FALLBACK if total is None else max(256 << 20, int(total * _MEMORY_SHARE))


def view_statements(listing: CaptureListing) -> list[str]:
    """Every CREATE VIEW statement for a capture listing, in dependency order."""
    typed = [typed_view_sql(v, parquet_source(listing.sources(v.channels))) for v in TYPED_VIEWS]
    return [*derived_statements(listing), *typed, BOOK_SNAPSHOT_LEVELS]


#: Every connection `connect` opened that is still alive: what Ctrl+C interrupts.
_OPEN: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


def interrupt_open_connections() -> None:
    """Interrupt whatever query runs on any connection `connect` opened, from any thread.

    For a command whose connections live inside a library call (`verify`, `inspect`,
    `report`): a signal handler cannot name them, and DuckDB checks Python's signals
    only now and then, so Ctrl+C would wait for the query (tens of seconds on a
    large capture). The query raises; the command reports the interrupt."""
    for con in list(_OPEN):
        try:
            con.interrupt()
        except duckdb.Error:  # closed meanwhile
            pass


def connect(
    root: str | os.PathLike[str] | RootLocation,
    *,
    listing: CaptureListing | None = None,
    threads: int | None = None,
    memory_limit_bytes: int | None = None,
    storage: StorageOptions | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB with views over the capture at `root`.

    The connection can read files only under the resolved root, cannot install
    or load extensions, and its configuration is locked. Views: `frames`, one
    typed view per channel (`trades`, `tickers`, `book_deltas`...), `events`,
    `control`, `connections` and `gaps` (see `VIEW_NAMES`), and one view per research
    dataset built under `<root>/_datasets` (`quotes`, `bars_1m`, `trade_table`...).

    Run untrusted SQL through `run_query`, which also refuses statements that
    write (DuckDB may write inside an allowed directory: COPY TO, ATTACH).

    Args:
        root: the capture root: a directory or an object-store URI (`s3://bucket/prefix`).
        listing: the files to expose (default: `list_capture_files(root)`); verify
            passes a listing without the files it could not read.
        threads: DuckDB worker threads (default: one per core).
        memory_limit_bytes: the most memory the connection's queries may use (default
            `default_memory_limit_bytes()`); a query that needs more fails with
            `QueryMemoryLimit` through `run_query`.
        storage: endpoint, region and credentials of an object-store root (default:
            the AWS environment).

    Raises:
        ConfigError: the root does not exist or is not a directory, or a file the
            views must read first is damaged.
        StorageError: an object-store root cannot be reached.
    """
    location = locate_root(
        listing.location if listing is not None and listing.location else root, storage
    )
    base = location.uri
    if listing is None:
        listing = list_capture_files(location)
    config: dict[str, str | bool | int | float | list[str]] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_persistent_secrets": False,
        "temp_directory": "",  # no spilling: the sandbox writes nowhere
        "memory_limit": f"{memory_limit_bytes or default_memory_limit_bytes()}B",
    }
    if threads is not None:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    _OPEN.add(con)
    con.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ output in UTC, whatever the host says
    allowed = str(base) + os.sep
    if location.filesystem is not None:  # DuckDB reads the prefix through pyarrow, read-only
        try:
            from replay.sql.remote import duckdb_filesystem
        except ModuleNotFoundError as exc:
            con.close()
            raise ConfigError(
                "ROOT", f"SQL over {base} needs {exc.name}", "pip install 'kalshi-tape[s3]'"
            ) from None

        scheme = base.split("://", 1)[0]
        con.register_filesystem(duckdb_filesystem(location.filesystem, str(location.path), scheme))
        allowed = base + "/"
    # allowed_directories cannot be given at start-up; it must be set before access is cut.
    con.execute("SET allowed_directories = ?", [[allowed]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    try:
        for statement in [*view_statements(listing), *dataset_view_statements(location)]:
            con.execute(statement)
    except duckdb.Error as exc:
        con.close()
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            "ROOT",
            f"cannot build the views over {base}: {detail}",
            f"run `kalshi-tape verify {base}` to find damaged files",
        ) from None
    return con


#: What a read-only query may be (DESCRIBE, SHOW, SUMMARIZE and VALUES parse as SELECT).
_READ_ONLY: Final = frozenset({duckdb.StatementType.SELECT})
_EXPLAIN: Final = re.compile(r"^\s*explain\s+(?:analyze\s+)?", re.IGNORECASE)


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one SELECT (or EXPLAIN of one SELECT).

    Raises:
        QueryRejected: empty input, several statements, or a statement that is not
            a query (COPY, ATTACH, EXPORT, INSTALL, LOAD, SET, CREATE...).
        duckdb.ParserException: the SQL does not parse.
    """
    statements = con.extract_statements(sql)
    if not statements:
        raise QueryRejected("no SQL statement given", 'e.g. "SELECT count(*) FROM trades"')
    if len(statements) > 1:
        raise QueryRejected(f"{len(statements)} statements given; run one query at a time")
    statement = statements[0]
    if statement.type == duckdb.StatementType.EXPLAIN:
        inner = _EXPLAIN.sub("", statement.query, count=1)
        inner_statements = con.extract_statements(inner) if inner != statement.query else []
        if len(inner_statements) == 1 and inner_statements[0].type in _READ_ONLY:
            return
    elif statement.type in _READ_ONLY:
        return
    words = statement.query.split(maxsplit=1)
    kind = words[0].upper() if words else statement.type.name
    what = "EXPLAIN of anything but a SELECT is" if kind == "EXPLAIN" else f"{kind} statements are"
    raise QueryRejected(
        f"{what} not allowed: queries over a capture are read-only",
        "use SELECT (or DESCRIBE, SHOW, SUMMARIZE, EXPLAIN); write results with --output",
    )


def run_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    *,
    batch_rows: int = 8192,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> pa.RecordBatchReader:
    """Check that `sql` is read-only, run it, and stream the result as Arrow batches.

    Args:
        timeout_s: interrupt the query if it has not finished (result read to the
            end) this many seconds after the call; None or 0: no limit.

    Raises:
        QueryRejected: see `check_read_only`.
        QueryTimeout: the time limit passed (raised here or while reading batches).
        QueryMemoryLimit: the query needed more than the connection's memory limit.
        duckdb.Error: the query failed (parse, bind, permission or runtime error).
    """
    check_read_only(con, sql)
    deadline = _Deadline(con, timeout_s)
    try:
        relation = con.sql(sql)
        if relation is None:  # pragma: no cover - a SELECT always yields a relation
            raise QueryRejected("the statement returned no result")
        reader = relation.to_arrow_reader(batch_rows)
    except duckdb.Error as exc:
        deadline.cancel()
        raise deadline.translate(exc) from None
    except BaseException:
        deadline.cancel()
        raise
    return pa.RecordBatchReader.from_batches(reader.schema, deadline.batches(reader))


class _Deadline:
    """Interrupts a connection's running query once `timeout_s` has passed."""

    def __init__(self, con: duckdb.DuckDBPyConnection, timeout_s: float | None) -> None:
        self._con = con
        self.timeout_s = timeout_s
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        self._timer: threading.Timer | None = None
        if timeout_s:
            self._timer = threading.Timer(timeout_s, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if not self._done:
                self.fired = True
                self._con.interrupt()

    def cancel(self) -> None:
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()

    def translate(self, exc: duckdb.Error) -> Exception:
        if isinstance(exc, duckdb.InterruptException) and self.fired:
            return QueryTimeout(
                f"SQL: the query ran longer than its time limit of {self.timeout_s:g} s "
                "and was stopped",
                "raise --timeout (0: no limit), or narrow the query: fewer columns, "
                "a WHERE on date or recv_time, a LIMIT",
            )
        if isinstance(exc, duckdb.OutOfMemoryException):
            limit = self._con.execute("SELECT current_setting('memory_limit')").fetchone()
            return QueryMemoryLimit(
                f"SQL: the query needs more memory than its limit of "
                f"{limit[0] if limit else 'the memory limit'}",
                "raise --memory-limit, or narrow the query: fewer columns, a WHERE on date "
                "or recv_time, a smaller GROUP BY",
            )
        return exc

    def batches(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except duckdb.Error as exc:
            raise self.translate(exc) from None
        finally:
            self.cancel()
