"""`derive` and `kalshi-tape derive`: Hive Parquet that every reader opens, incremental
runs, the manifest, the SQL views, `table` and `compute`, day shards on Dask."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from replay import connect
from replay.datasets import compute, derive, manifest, table
from replay.reading.capture import Capture
from schemas.errors import ConfigError
from tests.replay.capture_factory import (
    BASE_NS,
    M1,
    RUN_B,
    RunBuilder,
    build_standard_capture,
    subscribe,
    subscribed,
    trade,
    write_rows,
)
from tests.replay.datasets.reference import switch_times

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sample"
ALL = "book_changes,quotes,trades,depth:3@1s,bars:1m"


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    root = tmp_path / "capture"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("_datasets"))
    return root


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "kalshi-tape"
    return subprocess.run([str(exe), *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_derive_writes_hive_parquet_every_reader_opens(sample: Path) -> None:
    report = derive(sample, datasets=ALL)
    out = sample / "_datasets"
    assert report.built["quotes"] == ["2026-11-21"]
    for folder in ("book_changes", "quotes", "trades", "depth_3_1s", "bars_1m"):
        files = list((out / folder).glob("date=*/*.parquet"))
        assert [f.parent.name for f in files] == ["date=2026-11-21"], folder
    quotes = pads.dataset(out / "quotes", partitioning="hive").to_table()
    assert quotes.schema.field("bid").type == pa.decimal128(12, 4)
    assert quotes.num_rows == report.rows["quotes"]
    assert pl.scan_parquet(out / "bars_1m" / "**" / "*.parquet").collect().height == (
        report.rows["bars:1m"])  # fmt: skip
    spreads = duckdb.sql(
        f"SELECT max(spread) FROM read_parquet('{out}/quotes/*/*.parquet', hive_partitioning=1)"
    ).fetchall()[0]
    assert 0 < spreads[0] <= 1
    # the same exact numbers in every reader (decimals stored as INT64: prices as
    # dictionaries, sizes delta-coded)
    changes = f"{out}/book_changes/*/*.parquet"
    meta = pq.ParquetFile(next((out / "book_changes").glob("date=*/*.parquet"))).metadata
    price = meta.row_group(0).column(meta.schema.names.index("price"))
    assert price.physical_type == "INT64" and "RLE_DICTIONARY" in price.encodings
    size = meta.row_group(0).column(meta.schema.names.index("size"))
    assert size.physical_type == "INT64" and "DELTA_BINARY_PACKED" in size.encodings
    recv = meta.row_group(0).column(meta.schema.names.index("recv_ns")).statistics
    assert recv is not None and recv.has_min_max and recv.min <= recv.max  # time filters skip
    rows = table(sample, "book_changes")
    sums = [pc.sum(rows.column(c)).as_py() for c in ("price", "size", "delta")]
    assert all(isinstance(v, Decimal) and v for v in sums)
    assert list(duckdb.sql(f"SELECT sum(price), sum(size), sum(delta) FROM '{changes}'")
                .fetchall()[0]) == sums  # fmt: skip
    assert list(pl.scan_parquet(changes).select(pl.col("price", "size", "delta").sum())
                .collect().row(0)) == sums  # fmt: skip
    # the same rows as on the fly
    assert table(sample, "quotes").equals(compute(sample, "quotes"))
    assert table(sample, "bars:1m").equals(compute(sample, "bars:1m"))


def test_a_second_run_derives_only_the_days_whose_files_changed(tmp_path: Path) -> None:
    build_standard_capture(tmp_path)
    first = derive(tmp_path, datasets="trades,quotes")
    assert first.built["trades"] == ["2026-11-21", "2026-11-22"]
    again = derive(tmp_path, datasets="trades,quotes")
    assert again.built == {} and again.fresh["trades"] == ["2026-11-21", "2026-11-22"]
    # a new segment lands on the second day
    b = RunBuilder(tmp_path, RUN_B, BASE_NS + 17 * 3600 * 1_000_000_000, next_idx=100)
    b.send(subscribe(7, ["trade"]))
    b.receive(subscribed(7, "trade", 9))
    b.receive(trade(9, 1, M1, "0.5300", "0.4700", "1.00"))
    write_rows(tmp_path, b.records, RUN_B, 1)
    third = derive(tmp_path, datasets="trades,quotes")
    assert third.built["trades"] == ["2026-11-22"] and third.fresh["trades"] == ["2026-11-21"]
    day2 = table(tmp_path, "trades", start="2026-11-22")
    assert "0.5300" in [str(p) for p in day2.column("yes_price").to_pylist()]


def test_days_an_older_derive_built_are_built_again_and_force_builds_every_day(
    sample: Path,
) -> None:
    import json

    assert derive(sample, datasets="trades").built == {"trades": ["2026-11-21"]}
    path = sample / "_datasets" / "_manifest.json"
    book = json.loads(path.read_text())
    assert book["datasets"]["trades"]["2026-11-21"]["rules"] == manifest.RULES
    del book["datasets"]["trades"]["2026-11-21"]["rules"]  # as a derive before rules were kept
    path.write_text(json.dumps(book))
    assert derive(sample, datasets="trades").built == {"trades": ["2026-11-21"]}
    assert derive(sample, datasets="trades").fresh == {"trades": ["2026-11-21"]}
    assert derive(sample, datasets="trades", force=True).built == {"trades": ["2026-11-21"]}
    out = _cli("derive", str(sample), "--datasets", "trades", "--force")
    assert out.returncode == 0, out.stderr
    assert "1 day(s) built" in out.stderr


def test_query_sees_each_built_dataset_as_a_view(sample: Path) -> None:
    derive(sample, datasets=ALL)
    con = connect(sample)
    names = {r[0] for r in con.sql("SELECT view_name FROM duckdb_views()").fetchall()}
    assert {"book_changes", "quotes", "trade_table", "depth_3_1s", "bars_1m", "trades"} <= names
    [(raw, derived)] = con.sql("SELECT (SELECT count(*) FROM trades), "
                               "(SELECT count(*) FROM trade_table)").fetchall()  # fmt: skip
    assert raw == derived
    out = _cli("query", str(sample), "SELECT count(*) AS n FROM quotes WHERE valid")
    assert out.returncode == 0, out.stderr
    assert "(1 row)" in out.stdout


def test_the_command(sample: Path, tmp_path: Path) -> None:
    to = tmp_path / "elsewhere"
    out = _cli("derive", str(sample), "--datasets", "quotes,bars:1h", "--to", str(to))
    assert out.returncode == 0, out.stderr
    assert "quotes" in out.stderr and (to / "bars_1h").is_dir()
    bad = _cli("derive", str(sample), "--datasets", "quotes,candles")
    assert bad.returncode == 2 and "unknown dataset 'candles'" in bad.stderr


def test_a_root_holding_only_gitkeep_is_like_an_empty_one(tmp_path: Path) -> None:
    empty, kept = tmp_path / "empty", tmp_path / "kept"
    empty.mkdir()
    kept.mkdir()
    (kept / ".gitkeep").touch()
    a, b = _cli("derive", str(empty)), _cli("derive", str(kept))
    assert (a.returncode, a.stderr.replace(str(empty), "ROOT")) == (
        b.returncode, b.stderr.replace(str(kept), "ROOT"))  # fmt: skip
    assert derive(kept).built == {}
    assert sorted(p.name for p in kept.iterdir()) == [".gitkeep"]  # nothing written


def _by_time(rows: pa.Table, column: str) -> list[dict[str, object]]:
    """Rows ordered by (time, market), each market's rows in their own order: a burst of
    several markets' rows at one time (a disconnect clears every book) comes in the
    engine's order, which depends on where the reading began."""
    listed = rows.to_pylist()
    return sorted(listed, key=lambda r: (r[column], r["market"]))


@pytest.mark.parametrize("eighth", [1, 3, 5])
def test_a_range_on_the_fly_holds_the_rows_one_pass_has_in_it(eighth: int) -> None:
    """compute(start, end) seeks (checkpoint restore) and reads around the range; its rows
    are the whole capture's rows in [start, end): bars whole at both ends (their trades
    and closing quote read past the range), depth at every interval end in it."""
    names = {"book_changes": "recv_ns", "quotes": "recv_ns", "trades": "recv_ns",
             "depth:2@1s": "ts_ns", "bars:1s": "ts_ns", "bars:10s": "ts_ns"}  # fmt: skip
    switches = set(switch_times(Capture(SAMPLE)).values())
    span = Capture(SAMPLE).time_range()
    assert span is not None
    lo, hi = span
    start = (lo + (hi - lo) * eighth // 8) // 10**9 * 10**9 + 500_000_000  # mid-second
    end = start + (hi - lo) // 3 + 250_000_000
    for name, column in names.items():
        whole = compute(SAMPLE, name)
        t = whole.column(column)
        want = whole.filter(pc.and_(pc.greater_equal(t, start), pc.less(t, end)))
        got = compute(SAMPLE, name, start=start, end=end)
        assert got.num_rows == want.num_rows > 0, name
        if name.startswith(("book_changes", "quotes")):
            assert _by_time(got, column) == _by_time(want, column), name
        elif name.startswith("depth"):
            for mine, one_pass in zip(got.to_pylist(), want.to_pylist(), strict=True):
                # a book restored at the seek carries its last frame's time, one pass the
                # time a make-before-break switch handed it over, if that came later
                if mine["recv_ns"] != one_pass["recv_ns"]:
                    assert one_pass["recv_ns"] in switches and mine["recv_ns"] < start
                    mine["recv_ns"] = one_pass["recv_ns"]
                assert mine == one_pass
        else:
            assert got.equals(want), name


def test_names_are_checked() -> None:
    with pytest.raises(ConfigError, match="depth levels"):
        compute(SAMPLE, "depth:0@1s")
    with pytest.raises(ConfigError, match="divide a day"):
        compute(SAMPLE, "bars:7m")


def test_day_shards_on_dask_equal_one_pass(tmp_path: Path, dask_client: object) -> None:
    build_standard_capture(tmp_path)
    address = dask_client.scheduler.address  # type: ignore[attr-defined]
    names = ("book_changes", "trades", "quotes", "depth:2@1s", "bars:1s", "bars:1h")
    report = derive(tmp_path, datasets=",".join(names), scheduler=address)
    assert report.built["trades"] == ["2026-11-21", "2026-11-22"]
    for name in names:
        assert table(tmp_path, name).equals(compute(tmp_path, name)), name
    day2 = compute(tmp_path, "trades", start="2026-11-22")
    assert day2.num_rows == 2 and day2.equals(table(tmp_path, "trades", start="2026-11-22"))


def test_object_storage_both_ways(tmp_path: Path, s3: object) -> None:
    build_standard_capture(tmp_path)
    root = s3.upload(tmp_path, s3.new_root("derive"))  # type: ignore[attr-defined]
    options = s3.options  # type: ignore[attr-defined]
    to = root.rsplit("/", 1)[0] + "/datasets"
    report = derive(root, to=to, datasets="trades,quotes", storage=options)
    assert report.built["trades"] == ["2026-11-21", "2026-11-22"]
    keys = s3.keys(to)  # type: ignore[attr-defined]
    assert any("trades/date=2026-11-22/" in k for k in keys) and any("_manifest" in k for k in keys)
    assert derive(root, to=to, datasets="trades", storage=options).built == {}
    got = table(root, "trades", datasets_dir=to, storage=options)
    assert got.equals(compute(tmp_path, "trades"))
    derive(root, datasets="quotes", storage=options)  # under the root: a view of the root
    con = connect(root, storage=options)
    [(n,)] = con.sql("SELECT count(*) FROM quotes").fetchall()
    assert n == compute(tmp_path, "quotes").num_rows


def test_workers_without_dask_name_the_flags_and_the_extra(tmp_path: Path) -> None:
    """Dask is an extra: `--workers` on a machine without it is one line naming the
    flags the user gave and the install, exit 2 (an import that fails, as it does
    where `distributed` is not installed)."""
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from kalshi_tape.cli import main\n"
        f"raise SystemExit(main(['derive', 'examples/sample', '--workers', '2', '--to', "
        f"{str(tmp_path / 'out')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "kalshi-tape: error: --workers / --scheduler: Dask distributed is not installed "
        "(pip install 'kalshi-tape[dask]', or leave out --workers and --scheduler to run "
        "in this process)"
    ]
    assert not (tmp_path / "out").exists()


def test_a_derive_that_must_compile_its_kernels_says_so(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first derive in an environment compiles the kernels (half a minute, silent
    otherwise): it says so before it starts, and only then (the export and `table`'s
    derive on the fly go through the same range)."""
    compute_module = importlib.import_module("replay.datasets.compute")  # not the function

    derive(sample, to=tmp_path / "first", datasets="quotes")  # compiles, if not yet here
    caplog.set_level(logging.INFO, logger="replay.datasets.compute")
    derive(sample, to=tmp_path / "warm", datasets="quotes")
    assert not [r for r in caplog.records if "compiling" in r.getMessage()]
    monkeypatch.setattr(compute_module, "kernels_cached", lambda: False)
    derive(sample, to=tmp_path / "cold", datasets="quotes")
    assert [r.getMessage() for r in caplog.records if "compiling" in r.getMessage()] == [
        "compiling the datasets' kernels for this environment (numba; once, about half a minute)"
    ]
    caplog.clear()
    derive(sample, to=tmp_path / "cold", datasets="quotes")  # fresh: nothing to compute
    assert not [r for r in caplog.records if "compiling" in r.getMessage()]


def test_whether_the_kernels_are_cached_is_read_from_numbas_cache(tmp_path: Path) -> None:
    """Compiled and saved here (a derive ran in this process): cached; with numba's cache
    pointed at an empty folder: not, and telling costs no compilation."""
    from replay.datasets.compute import kernels_cached

    compute(SAMPLE, "quotes")
    assert kernels_cached()
    code = "from replay.datasets.compute import kernels_cached; print(kernels_cached())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)},
                          timeout=120, check=True)  # fmt: skip
    assert done.stdout.split() == ["False"]
    assert not list(tmp_path.rglob("*.nbi"))  # nothing was compiled to answer


def test_a_built_range_of_some_markets_reads_as_it_derives(tmp_path: Path) -> None:
    """`table` over built files with a start, an end and markets: the rows `compute`
    derives for the same range (row groups outside it skipped, the rest filtered). Depth
    alone for some markets raised (its rows are not a batch to filter)."""
    build_standard_capture(tmp_path)
    names = ("trades", "quotes", "book_changes", "bars:1s", "depth:2@1s")
    derive(tmp_path, datasets=",".join(names))
    full = compute(tmp_path, "book_changes")
    times = full.column("recv_ns").to_pylist()
    start, end = times[len(times) // 4], times[3 * len(times) // 4]
    ranges: list[dict[str, Any]] = [
        {"start": start, "end": end}, {"markets": [M1]}, {"start": start, "markets": [M1]},
        {"start": end, "end": end + 1},
    ]  # fmt: skip
    for name in names:
        for where in ranges:
            got = table(tmp_path, name, **where)
            assert got.equals(compute(tmp_path, name, **where)), (name, where)
    trades = compute(tmp_path, "trades").column("recv_ns").to_pylist()  # distinct times
    assert table(tmp_path, "trades", start=trades[1]).num_rows == len(trades) - 1


def test_reading_built_datasets_never_imports_pandas(sample: Path) -> None:
    derive(sample, datasets="quotes,bars:1m")
    code = ("import sys; from replay.datasets import table;"
            f"rows = table({str(sample)!r}, 'quotes', markets=['KXNBAGAME-26MAR19-B1825']).num_rows"
            f" + table({str(sample)!r}, 'bars:1m', start='2026-11-21T09:31:00Z').num_rows;"
            "print(rows > 0, 'pandas' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    assert done.stdout.split() == ["True", "False"]
