"""Row groups hold consecutive idx values: replay restores arrival order one window at a time.

Files keep rows sorted for compression, but only within a row group; every row group
of a file covers an idx range that no other row group of the file overlaps, and no
row group exceeds the configured size. This is what bounds replay's memory (the
reader sorts one window of overlapping row groups at a time).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow.parquet as pq

from recorder.storage.compaction import compact
from recorder.storage.journal import JournalWriter
from recorder.storage.publisher import Publisher
from replay.reading.capture import Capture
from schemas.parquet import ParquetSettings

from .helpers import RUN_A as RUN_ID

SMALL = ParquetSettings(row_group_rows=1000)


def record(tmp_path: Path, frames: int, segment_bytes: int) -> Path:
    journal_dir, root = tmp_path / "journal", tmp_path / "capture"
    publisher = Publisher(journal_dir, root, settings=SMALL)
    with JournalWriter(journal_dir, RUN_ID, segment_max_bytes=segment_bytes,
                       on_sealed=publisher.publish) as journal:  # fmt: skip
        for i in range(frames):
            channel, type_ = ("trade", "trade") if i % 3 else ("ticker", "ticker")
            raw = f'{{"type":"{type_}","sid":1,"seq":{i},"msg":{{"market_ticker":"M{i % 7}"}}}}'
            journal.append(1, 1_795_244_476_000_000_000 + i, i, "in", channel, type_, 1, i,
                           f"M{i % 7}", raw.encode())  # fmt: skip
            if i % 200 == 199:
                journal.wait_durable(i, 5)  # segments roll at a commit: make the size bite
    return root


def row_group_ranges(path: Path) -> list[tuple[int, int, int]]:
    meta = pq.ParquetFile(path).metadata
    col = meta.schema.names.index("idx")
    out = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(col).statistics
        out.append((stats.min, stats.max, meta.row_group(i).num_rows))
    return out


def assert_ranges_disjoint_and_bounded(root: Path) -> int:
    files = sorted(root.glob("channel=*/date=*/*.parquet"))
    assert files
    for path in files:
        ranges = row_group_ranges(path)
        for (_, hi, _), (next_lo, _, _) in itertools.pairwise(ranges):
            assert hi < next_lo, f"{path.name}: row groups overlap in idx"
        assert all(rows <= SMALL.row_group_rows for _, _, rows in ranges)
    return len(files)


def test_published_files_have_row_groups_of_consecutive_idx(tmp_path: Path) -> None:
    root = record(tmp_path, 6000, 200_000)
    assert assert_ranges_disjoint_and_bounded(root) >= 2


def test_compacted_files_keep_row_groups_of_consecutive_idx(tmp_path: Path) -> None:
    root = record(tmp_path, 9000, 40_000)  # many small segments
    for partition in ("channel=trade/date=2026-11-21", "channel=ticker/date=2026-11-21"):
        report = compact(root, partition, settings=SMALL, min_age_s=0, delete_grace_s=0)
        assert report.outputs, partition
    assert assert_ranges_disjoint_and_bounded(root) == 2


def test_replay_reads_a_compacted_capture_in_bounded_windows_and_arrival_order(
    tmp_path: Path,
) -> None:
    root = record(tmp_path, 9000, 40_000)
    for partition in ("channel=trade/date=2026-11-21", "channel=ticker/date=2026-11-21"):
        compact(root, partition, settings=SMALL, min_age_s=0, delete_grace_s=0)
    capture = Capture(root)
    windows = list(capture.read_run(RUN_ID, ["trade", "ticker"], with_state=False))
    idx = [i for w in windows for i in w.column("idx").to_pylist()]
    assert idx == list(range(9000))
    assert max(w.num_rows for w in windows) <= 2 * SMALL.row_group_rows  # two channels


def test_replay_loads_a_file_only_when_its_idx_range_comes_up(tmp_path: Path) -> None:
    # 40 segments: a whole day's worth of files must not all be held at once.
    root = record(tmp_path, 8000, 8000)
    capture = Capture(root)
    assert len({p.path for p in capture.runs[RUN_ID].pieces}) >= 40
    loaded: list[int] = []
    import replay.reading.capture as rc

    original = rc._FileStream.load

    def counting(self: rc._FileStream) -> bool:
        ok = original(self)
        loaded.append(sum(1 for s in streams if s.current is not None))
        return ok

    streams: list[rc._FileStream] = []
    rc._FileStream.load = counting  # type: ignore[method-assign]
    original_init = rc._FileStream.__init__

    def tracking(self: rc._FileStream, *args: object) -> None:
        original_init(self, *args)  # type: ignore[arg-type]
        streams.append(self)

    rc._FileStream.__init__ = tracking  # type: ignore[method-assign]
    try:
        idx = [i for w in capture.read_run(RUN_ID, ["trade", "ticker"], with_state=False)
               for i in w.column("idx").to_pylist()]  # fmt: skip
    finally:
        rc._FileStream.load = original  # type: ignore[method-assign]
        rc._FileStream.__init__ = original_init  # type: ignore[method-assign]
    assert idx == list(range(8000))
    assert max(loaded) <= 4  # a couple of files at a time, not 80


def test_a_row_group_is_cut_once_its_frames_reach_the_byte_bound(tmp_path: Path) -> None:
    import pyarrow as pa

    from schemas.parquet import encode_parquet

    raws = [b"x" * 1000] * 50 + [b"y" * 10] * 50  # 50 kB of large frames, then small ones
    table = pa.table({"idx": list(range(100)), "raw": raws})
    settings = ParquetSettings(row_group_rows=80, row_group_bytes=10_000)
    path = tmp_path / "f.parquet"
    path.write_bytes(encode_parquet(table, settings).to_pybytes())
    meta = pq.ParquetFile(path).metadata
    rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert rows == [10, 10, 10, 10, 10, 50]  # 10 kB each, then the row bound is not reached
    assert pq.read_table(path).column("raw").to_pylist() == raws  # nothing lost or moved


def test_rows_of_a_row_group_already_in_idx_order_are_read_without_a_copy(
    tmp_path: Path,
) -> None:
    """The recorder sorts a row group by market only where that helps compression (the
    book channel); a trade file's row groups are in idx order as written, and reading
    them in idx order hands out slices of the row group, not copies of its bytes."""
    import replay.reading.capture as rc

    root = record(tmp_path, 3000, 10_000_000)
    capture = Capture(root)
    (path,) = {p.path for p in capture.runs[RUN_ID].pieces if "channel=trade" in str(p.path)}
    pieces = [p for p in capture.runs[RUN_ID].pieces if p.path == path]
    stream = rc._FileStream(path, pieces, ["idx", "raw"])
    assert stream.load()
    assert stream.order is None  # nothing to reorder
    held = stream.current.column("raw").chunk(0).buffers()[2]
    rows = stream.take(100)
    taken = rows.column("raw").chunk(0)
    assert taken.buffers()[2].address == held.address  # the same bytes, not a copy
    assert rows.column("idx").to_pylist() == sorted(rows.column("idx").to_pylist())
    assert taken.to_pylist() == stream.current.column("raw").slice(0, 100).to_pylist()
