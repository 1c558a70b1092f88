"""A capture root every reader opens as-is: pyarrow, DuckDB, Polars and Dask, local and S3.

The root is fresh from `kalshi-tape record` (the recorder's `_journal/` and
`_status.json` still in it), recorded where a recorder of the older layout had left
its `journal/` (with a segment to publish) and `status.json`. Each outside reader,
with its ordinary Hive options, counts the same rows per channel as `kalshi-tape
query`, and sees `channel` as a string. The readers' recipes are the README's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from fsspec.implementations.arrow import ArrowFSWrapper

from kalshi_tape.cli import main
from recorder.storage.journal import JournalWriter

from ..objectstore import S3Server
from ..recorder.helpers import RUN_A, append_frames
from ..reliability._procs import REPO

pytestmark = pytest.mark.timeout(120)
Counts = dict[str, int]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fresh") / "data"
    with JournalWriter(root / "journal", RUN_A, segment_max_bytes=4096) as writer:
        append_frames(writer, 0, 120)  # an older recorder's journal, not yet published
    (root / "status.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "kalshi_tape", "record", "--sim", "--duration", "1s",
         "--root", str(root), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def test_a_recorder_moves_an_older_layouts_files_out_of_the_readers_way(fresh: Path) -> None:
    assert sorted(p.name for p in fresh.iterdir() if not p.name.startswith("channel=")) == [
        "_journal",
        "_status.json",
    ]
    assert [p.name for p in (fresh / "_journal").iterdir()] == ["LOCK"]
    published = {p.name[: len(RUN_A)] for p in fresh.glob("channel=*/*/*.parquet")}
    assert RUN_A in published and len(published) == 2  # the old journal's run, and the new


def query_counts(root: str, capsys: pytest.CaptureFixture[str]) -> Counts:
    capsys.readouterr()
    sql = "SELECT channel, count(*) AS n FROM frames GROUP BY 1"
    assert main(["query", root, sql, "--format", "json"]) == 0
    return {row["channel"]: row["n"] for row in map(json.loads, capsys.readouterr().out.split())}


def counts_of(table: pa.Table) -> Counts:
    return {row["channel"]: row["n"] for row in table.to_pylist()}


def pyarrow_counts(dataset: ds.Dataset) -> Counts:
    assert dataset.schema.field("channel").type == pa.string()
    assert "date" in dataset.schema.names
    return counts_of(dataset.to_table(columns=["channel"]).group_by("channel").aggregate(
        [("channel", "count")]).rename_columns(["channel", "n"]))  # fmt: skip


def duckdb_counts(con: duckdb.DuckDBPyConnection, root: str) -> Counts:
    sql = (
        "SELECT channel, count(*) AS n, any_value(typeof(channel)) AS t, "
        f"any_value(typeof(date)) AS d FROM read_parquet('{root}/**/*.parquet', "
        "hive_partitioning = true) GROUP BY 1"
    )
    rows = con.sql(sql).fetchall()
    assert {(t, d) for _, _, t, d in rows} == {("VARCHAR", "DATE")}
    return {channel: n for channel, n, _, _ in rows}


def polars_counts(frame: pl.LazyFrame) -> Counts:
    assert frame.collect_schema()["channel"] == pl.String
    return dict(frame.group_by("channel").agg(pl.len()).collect().iter_rows())


def dask_counts(frame: Any) -> Counts:
    assert str(frame["channel"].dtype) in ("string", "object")
    return {str(k): int(v) for k, v in frame.groupby("channel").size().compute().items()}


def test_every_reader_opens_a_fresh_local_root_as_is_and_counts_what_query_counts(
    fresh: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = query_counts(str(fresh), capsys)
    assert sum(expected.values()) > 1000 and "_session" in expected
    readers: dict[str, Callable[[], Counts]] = {
        "pyarrow": lambda: pyarrow_counts(ds.dataset(fresh, format="parquet", partitioning="hive")),
        "duckdb": lambda: duckdb_counts(duckdb.connect(), str(fresh)),
        "polars": lambda: polars_counts(
            pl.scan_parquet(f"{fresh}/**/*.parquet", hive_partitioning=True)
        ),
        "dask": lambda: dask_counts(dd.read_parquet(fresh, dataset={"partitioning": None})),
    }
    assert {name: read() for name, read in readers.items()} == dict.fromkeys(readers, expected)


def test_every_reader_opens_the_same_root_on_s3_as_is_and_counts_what_query_counts(
    fresh: Path, s3: S3Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = s3.upload(fresh, s3.new_root("readers"))  # `_journal/` and `_status.json` too
    assert "_status.json" in s3.keys(root)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    expected = query_counts(root, capsys)
    assert expected == query_counts(str(fresh), capsys)
    path = root.removeprefix("s3://")
    duck = duckdb.connect()  # DuckDB's httpfs is a download: read through pyarrow instead
    duck.register_filesystem(ArrowFSWrapper(s3.fs))
    polars_options = {"aws_endpoint_url": s3.endpoint_url, "aws_region": s3.options.region,
                      "aws_access_key_id": s3.options.access_key_id,
                      "aws_secret_access_key": s3.options.secret_access_key,
                      "aws_allow_http": "true"}  # fmt: skip
    dask_options = {"key": s3.options.access_key_id, "secret": s3.options.secret_access_key,
                    "client_kwargs": {"endpoint_url": s3.endpoint_url}}  # fmt: skip
    readers: dict[str, Callable[[], Counts]] = {
        "pyarrow": lambda: pyarrow_counts(
            ds.dataset(path, filesystem=s3.fs, format="parquet", partitioning="hive")
        ),
        "duckdb": lambda: duckdb_counts(duck, root),
        "polars": lambda: polars_counts(pl.scan_parquet(
            f"{root}/**/*.parquet", hive_partitioning=True, storage_options=polars_options)),
        "dask": lambda: dask_counts(dd.read_parquet(
            root, dataset={"partitioning": None}, storage_options=dask_options)),
    }  # fmt: skip
    assert {name: read() for name, read in readers.items()} == dict.fromkeys(readers, expected)
