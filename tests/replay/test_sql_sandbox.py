"""The query sandbox: reads confined to the capture root, nothing written, config locked.

Two layers are tested apart. The DuckDB connection itself (`connect`) refuses any
file outside the root and any change of its configuration; `run_query` also
refuses statements that are not queries, because DuckDB would let COPY, ATTACH
or EXPORT write inside an allowed directory. On an S3 root (a real S3-protocol
server, `tests/objectstore.py`) the same holds for the bucket's other prefixes and
other buckets, and the filesystem DuckDB reads through is itself read-only and
confined to the root's prefix.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow.fs as pafs
import pytest

from replay.reading.layout import list_capture_files
from replay.sql.connection import QueryRejected, connect, run_query
from replay.sql.remote import ReadOnlyPrefix

from ..objectstore import S3Server
from .capture_factory import StandardCapture, build_standard_capture


@pytest.fixture
def cap(tmp_path: Path) -> StandardCapture:
    return build_standard_capture(tmp_path / "capture")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("key,value\napi,hunter2\n")
    return secret


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_reading_a_file_outside_the_root_fails(cap: StandardCapture, outside: Path) -> None:
    con = connect(cap.root)
    for sql in (
        f"SELECT * FROM read_csv('{outside}')",
        f"SELECT * FROM read_text('{outside}')",
        f"SELECT * FROM '{outside}'",
        f"SELECT * FROM glob('{outside.parent}/*')",
    ):
        with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
            run_query(con, sql).read_all()


def test_dot_dot_paths_cannot_leave_the_root(cap: StandardCapture, outside: Path) -> None:
    escape = cap.root / ".." / "outside" / "secret.csv"
    with pytest.raises(duckdb.PermissionException):
        run_query(connect(cap.root), f"SELECT * FROM read_csv('{escape}')").read_all()


def test_a_sibling_directory_sharing_the_root_prefix_is_outside(tmp_path: Path) -> None:
    cap = build_standard_capture(tmp_path / "cap")
    sibling = build_standard_capture(tmp_path / "cap2")
    (trade,) = [p for p in sibling.paths if "channel=trade/date=2026-11-22" in str(p)]
    with pytest.raises(duckdb.PermissionException):
        run_query(connect(cap.root), f"SELECT * FROM read_parquet('{trade}')").read_all()


def test_a_symlink_out_of_the_root_is_neither_listed_nor_readable(
    cap: StandardCapture, outside: Path
) -> None:
    link = cap.root / "channel=trade" / "date=2026-11-30"
    link.symlink_to(outside.parent, target_is_directory=True)
    assert link in {s.path for s in list_capture_files(cap.root).stray}
    with pytest.raises(duckdb.PermissionException):
        run_query(connect(cap.root), f"SELECT * FROM read_csv('{link}/secret.csv')").read_all()


def test_files_inside_the_root_can_be_read_directly(cap: StandardCapture) -> None:
    reader = run_query(
        connect(cap.root),
        f"SELECT count(*) AS n FROM read_parquet('{cap.root}/channel=trade/*/*.parquet')",
    )
    assert reader.read_all().to_pylist() == [{"n": 6}]


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO '{root}/stolen.csv'",
        "COPY trades TO '{root}/channel=trade/x.parquet' (FORMAT parquet)",
        "EXPORT DATABASE '{root}/export'",
        "ATTACH '{root}/db.duckdb' AS db",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO frames SELECT * FROM frames",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "PRAGMA enable_profiling",
        "CHECKPOINT",
        "EXPLAIN ANALYZE COPY (SELECT 1) TO '{root}/x.csv'",
        "SELECT 1; COPY (SELECT 1) TO '{root}/stolen.csv'",
    ],
)
def test_statements_that_are_not_queries_are_refused_and_write_nothing(
    cap: StandardCapture, sql: str
) -> None:
    before = files_under(cap.root)
    con = connect(cap.root)
    with pytest.raises(QueryRejected) as info:
        run_query(con, sql.format(root=cap.root))
    assert str(info.value).startswith("SQL: ")
    assert "read-only" in str(info.value) or "one query at a time" in str(info.value)
    assert files_under(cap.root) == before


def test_empty_sql_is_refused(cap: StandardCapture) -> None:
    with pytest.raises(QueryRejected, match="no SQL statement"):
        run_query(connect(cap.root), "  -- nothing\n")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM trades",
        "FROM trades LIMIT 1",
        "WITH t AS (SELECT 1 AS a) SELECT * FROM t",
        "DESCRIBE trades",
        "SHOW TABLES",
        "SUMMARIZE SELECT 1 AS a",
        "EXPLAIN SELECT * FROM trades",
        "VALUES (1), (2)",
    ],
)
def test_read_only_statement_forms_are_allowed(cap: StandardCapture, sql: str) -> None:
    assert run_query(connect(cap.root), sql).read_all().num_rows >= 1


def test_the_connection_itself_cannot_write_outside_the_root(
    cap: StandardCapture, tmp_path: Path
) -> None:
    con = connect(cap.root)  # even without run_query's statement check
    target = tmp_path / "stolen.csv"
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"COPY (SELECT 1) TO '{target}'")
    assert not target.exists()


def test_the_configuration_is_locked(cap: StandardCapture) -> None:
    con = connect(cap.root)
    for setting in (
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "SET autoinstall_known_extensions = true",
        "SET temp_directory = '/tmp'",
        "RESET lock_configuration",
    ):
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute(setting)
    settings = dict(
        con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
            "'lock_configuration', 'autoinstall_known_extensions', 'autoload_known_extensions', "
            "'allowed_directories')"
        ).fetchall()
    )
    assert settings == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "allowed_directories": f"[{cap.root}{os.sep}]",
    }


def test_extensions_cannot_be_installed_even_on_the_raw_connection(cap: StandardCapture) -> None:
    con = connect(cap.root)
    with pytest.raises(duckdb.Error):
        con.execute("INSTALL httpfs")
    with pytest.raises(duckdb.Error):
        con.execute("LOAD httpfs")


# ------------------------------------------------------------------ on object storage


@pytest.fixture
def s3_cap(tmp_path: Path, s3: S3Server) -> tuple[str, str]:
    """(a capture root on S3, the bucket) with a secret beside it and a sibling prefix."""
    cap = build_standard_capture(tmp_path / "capture")
    root = s3.upload(cap.root, s3.new_root("sandbox", prefix="cap"))
    bucket = root.removeprefix("s3://").split("/")[0]
    with s3.fs.open_output_stream(f"{bucket}/secret/secret.csv") as out:
        out.write(b"key,value\napi,hunter2\n")
    s3.upload(cap.root, f"s3://{bucket}/cap2")  # shares the root's prefix
    return root, bucket


def test_an_s3_root_is_read_only_and_confined_to_its_prefix(
    s3_cap: tuple[str, str], s3: S3Server, outside: Path
) -> None:
    root, bucket = s3_cap
    con = connect(root, storage=s3.options)
    assert run_query(con, "SELECT count(*) AS n FROM trades").read_all().to_pylist() == [{"n": 6}]
    inside = f"SELECT count(*) AS n FROM read_parquet('{root}/channel=trade/*/*.parquet')"
    assert run_query(con, inside).read_all().to_pylist() == [{"n": 6}]
    before = s3.keys(f"s3://{bucket}")
    for sql in (
        f"SELECT * FROM read_csv('s3://{bucket}/secret/secret.csv')",
        f"SELECT * FROM read_csv('{root}/../secret/secret.csv')",
        f"SELECT * FROM read_parquet('s3://{bucket}/cap2/channel=trade/*/*.parquet')",
        f"SELECT * FROM glob('s3://{bucket}/*')",
        "SELECT * FROM read_parquet('s3://another-bucket/x.parquet')",
        f"SELECT * FROM read_csv('{outside}')",
        "SELECT * FROM read_text('/etc/passwd')",
    ):
        with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
            run_query(con, sql).read_all()
    with pytest.raises(duckdb.Error):  # even on the raw connection, past run_query's check
        con.execute(f"COPY (SELECT 1) TO '{root}/stolen.csv'")
    for sql in (f"COPY (SELECT 1) TO '{root}/stolen.csv'", "INSTALL httpfs", "LOAD httpfs"):
        with pytest.raises(QueryRejected):
            run_query(con, sql)
    assert s3.keys(f"s3://{bucket}") == before  # nothing written anywhere in the bucket
    settings = dict(con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('allowed_directories', "
        "'enable_external_access', 'lock_configuration')").fetchall())  # fmt: skip
    assert settings == {"allowed_directories": f"['{root}/']", "enable_external_access": "false",
                        "lock_configuration": "true"}  # fmt: skip


def test_the_filesystem_duckdb_reads_an_s3_root_through_refuses_every_path_outside_it(
    s3_cap: tuple[str, str], s3: S3Server
) -> None:
    root, bucket = s3_cap
    prefix = root.removeprefix("s3://")
    guard = pafs.PyFileSystem(ReadOnlyPrefix(s3.fs, prefix))
    assert guard.get_file_info(prefix).type == pafs.FileType.Directory
    for path in (f"{bucket}/secret/secret.csv", f"{prefix}/../secret/secret.csv",
                 f"{prefix}2/channel=trade", f"{prefix}/./x", f"{prefix}//x", bucket):  # fmt: skip
        with pytest.raises(PermissionError):
            guard.open_input_stream(path)
    for write in (lambda: guard.open_output_stream(f"{prefix}/x.csv"),
                  lambda: guard.delete_file(f"{prefix}/x"),
                  lambda: guard.create_dir(f"{prefix}/d")):  # fmt: skip
        with pytest.raises(PermissionError, match="read-only"):
            write()


def test_an_interrupt_reaches_every_open_connection_and_stops_its_query() -> None:
    """What Ctrl+C does to `verify`, `inspect` and `report`, whose connections live inside
    library calls: a heavy query on a connection `connect` opened stops at once."""
    import threading
    import time

    import duckdb

    from replay.sql.connection import connect, interrupt_open_connections

    con = connect("examples/sample", threads=1)
    timer = threading.Timer(0.3, interrupt_open_connections)
    timer.start()
    began = time.monotonic()
    with pytest.raises((duckdb.InterruptException, RuntimeError), match=r"(?i)interrupt"):
        con.execute("SELECT sum(a.range * b.range) FROM range(100000000) a, range(1000) b")
    # 0.3 s until the interrupt, then at once (the query alone would run for minutes;
    # the bound leaves a busy machine room)
    assert time.monotonic() - began < 10
    timer.join()
