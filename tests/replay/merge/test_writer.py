"""The merged capture's files: `replay.merge.writer` (grouping, restamping, layout, output)."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path, PurePath

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.merge.writer import (
    OutputRoot,
    SourceFile,
    as_capture_schema,
    by_date,
    encode,
    plan,
    restamp,
)
from schemas.arrow import CAPTURE_SCHEMA
from schemas.errors import ConfigError
from schemas.record import CaptureRecord, split_live_files

RUN = "20261121T080000Z-aaaaaaaa"
OTHER = "20261121T090000Z-bbbbbbbb"
DAY = 86_400 * 10**9
MIDNIGHT = 1_795_305_600_000_000_000  # 2026-11-22T00:00:00Z


def _file(lo: int, hi: int | None = None, *, date: str = "2026-11-21", rows: int = 10,
          channel: str = "trade", run: str = RUN) -> SourceFile:  # fmt: skip
    hi = lo if hi is None else hi
    return SourceFile(PurePath(f"{channel}/{date}/{run}-{lo}-{hi}"), channel, date, run, lo, hi,
                      hi > lo, rows)  # fmt: skip


def test_files_whose_segments_overlap_go_together_and_names_never_supersede_each_other() -> None:
    files = [
        _file(0, 5, date="2026-11-21"),  # compacted on the first day...
        _file(5, date="2026-11-22"),  # ...segment 5 spans midnight: its rest on the next day
        _file(6, date="2026-11-22"),
        _file(7, date="2026-11-22"),
        _file(8, date="2026-11-22", rows=30),
        _file(0, channel="ticker"),
        _file(0, run=OTHER),
    ]
    chunks = plan(files, target_rows=40)
    trade = [c for c in chunks if c.channel == "trade" and c.run_id == RUN]
    # {0-5, 5} overlap: one group (20 rows); 6 joins it (30); 7 would make 40: still in; 8
    # (30 more) starts the next.
    assert [(c.lo, c.hi, c.compacted, c.rows) for c in trade] == [(0, 7, True, 40),
                                                                   (8, 8, False, 30)]  # fmt: skip
    assert {(c.channel, c.run_id) for c in chunks} == {("trade", RUN), ("ticker", RUN),
                                                        ("trade", OTHER)}  # fmt: skip
    assert sum(c.rows for c in chunks) == sum(f.rows for f in files)
    for date in ("2026-11-21", "2026-11-22"):
        names = [c.name(date).rsplit("/", 1)[1] for c in trade]
        assert names == [f"{RUN}-00000000-c00000007.parquet", f"{RUN}-00000008.parquet"]
        live, superseded = split_live_files(names)
        assert sorted(live) == sorted(names) and not superseded
    assert trade[0].name("2026-11-22") == (
        f"channel=trade/date=2026-11-22/{RUN}-00000000-c00000007.parquet"
    )


def test_a_group_larger_than_the_target_is_still_one_group() -> None:
    chunks = plan([_file(0, rows=100), _file(1, rows=5), _file(2, rows=5)], target_rows=10)
    assert [(c.lo, c.hi, c.rows) for c in chunks] == [(0, 0, 100), (1, 2, 10)]


def _table(recv: list[int], idx: list[int] | None = None, *, old: bool = False) -> pa.Table:
    idx = idx or list(range(1, len(recv) + 1))
    frame = b'{"type":"trade"}'
    rows = [
        CaptureRecord(RUN, i, 1, r, 5_000 + i, "in", "trade", "trade", 1, i, "KX-A", frame, 1)
        for i, r in zip(idx, recv, strict=True)
    ]
    table = pa.Table.from_pylist([{n: getattr(r, n) for n in CAPTURE_SCHEMA.names} for r in rows],
                                 schema=CAPTURE_SCHEMA)  # fmt: skip
    if old:  # a file of a capture made before `opcode` and `feed`, `channel` a dictionary
        table = table.drop_columns(["opcode", "feed"])
        channel = table.column("channel").dictionary_encode()
        table = table.set_column(table.schema.get_field_index("channel"), "channel", channel)
    return table


def test_restamp_sets_the_feed_moves_recv_ns_and_keeps_everything_else() -> None:
    table = _table([300, 100, 200], idx=[3, 1, 2])
    out = restamp(table, feed=1, shift_ns=-50)
    assert out.schema == CAPTURE_SCHEMA
    assert out.column("idx").to_pylist() == [1, 2, 3]
    assert out.column("recv_ns").to_pylist() == [50, 150, 250]
    assert out.column("feed").to_pylist() == [1, 1, 1]
    assert out.column("mono_ns").to_pylist() == [5_001, 5_002, 5_003]
    assert out.column("opcode").to_pylist() == [1, 1, 1]
    old = restamp(_table([1, 2], old=True), feed=0, shift_ns=0)
    assert old.schema == CAPTURE_SCHEMA
    assert old.column("feed").to_pylist() == [0, 0]
    assert old.column("opcode").to_pylist() == [None, None]
    assert as_capture_schema(old) is old


def test_rows_moved_across_midnight_go_to_the_partition_of_their_new_date() -> None:
    table = restamp(_table([MIDNIGHT + 10, MIDNIGHT + 20, MIDNIGHT + 400]), feed=1,
                    shift_ns=-100)  # fmt: skip
    parts = [(date, t.column("idx").to_pylist()) for date, t in by_date(table)]
    assert parts == [("2026-11-21", [1, 2]), ("2026-11-22", [3])]
    assert list(by_date(table.slice(0, 0))) == []
    (whole,) = by_date(table.slice(2, 1))
    assert whole[0] == "2026-11-22"


def test_encoded_files_hold_consecutive_idx_in_each_row_group() -> None:
    n = 70_000
    table = restamp(_table(list(range(n))), feed=0, shift_ns=0)
    handle = pq.ParquetFile(io.BytesIO(encode(table).to_pybytes()))
    assert handle.schema_arrow == CAPTURE_SCHEMA
    meta = handle.metadata
    assert meta.num_rows == n and meta.num_row_groups == 2
    ranges = [(meta.row_group(i).column(1).statistics.min,
               meta.row_group(i).column(1).statistics.max) for i in range(2)]  # fmt: skip
    assert ranges == [(1, 65_536), (65_537, n)]
    assert handle.read().column("idx").to_pylist() == list(range(1, n + 1))


def test_the_output_appears_whole_at_commit_and_not_at_all_after_a_failure(tmp_path: Path) -> None:
    target = tmp_path / "merged"
    with OutputRoot(str(target)) as out:
        out.put("channel=trade/date=2026-11-21/x.parquet", b"data")
        assert not target.exists()
        (hidden,) = [p for p in tmp_path.iterdir() if p.name.startswith(".merged.")]
    assert (target / "channel=trade/date=2026-11-21/x.parquet").read_bytes() == b"data"
    assert not hidden.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask
    failed = tmp_path / "failed"
    with pytest.raises(RuntimeError), OutputRoot(str(failed)) as out:
        out.put("channel=trade/date=2026-11-21/x.parquet", b"data")
        raise RuntimeError("stopped")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_an_existing_target_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "there").mkdir()
    with pytest.raises(ConfigError, match=r"--to: .* already exists"):
        OutputRoot(str(tmp_path / "there"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"]
