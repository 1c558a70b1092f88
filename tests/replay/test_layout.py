"""The capture listing: what counts as a file of the capture, and what compaction hides."""

from __future__ import annotations

from pathlib import Path

from replay.reading.layout import list_capture_files
from replay.sql.connection import connect, run_query
from schemas.record import compacted_file_suffix

from .capture_factory import RUN_A, RunBuilder, read_rows, trade, write_rows


def test_a_compacted_file_supersedes_the_segments_it_covers_and_no_row_is_counted_twice(
    tmp_path: Path,
) -> None:
    run = RunBuilder(tmp_path)
    for seq in range(1, 7):
        run.receive(trade(1, seq, "KX-A", 45, 55, 3))
    run.write(segment_starts=(0, 2, 4))  # segments 0, 1, 2
    sources = sorted(tmp_path.glob("channel=trade/*/*.parquet"))
    rows = [r for p in sources[:2] for r in read_rows(p)]
    write_rows(tmp_path, rows, RUN_A, 0, suffix=compacted_file_suffix(1))  # covers 0..1

    listing = list_capture_files(tmp_path)
    names = sorted(f.path.name for f in listing.files)
    assert names == [f"{RUN_A}-00000000-c00000001.parquet", f"{RUN_A}-00000002.parquet"]
    assert sorted(f.path.name for f in listing.superseded) == [p.name for p in sources[:2]]
    con = connect(tmp_path)
    count = run_query(con, "SELECT count(*) AS n FROM trades").read_all()
    assert count.column("n")[0].as_py() == 6


def test_files_named_outside_the_pattern_are_stray_and_never_read(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path)
    run.receive(trade(1, 1, "KX-A", 45, 55, 3))
    (path,) = run.write()
    odd = path.with_name(path.stem + "-copy.parquet")
    odd.write_bytes(path.read_bytes())
    listing = list_capture_files(tmp_path)
    assert [f.path for f in listing.files] == [path]
    assert odd in {s.path for s in listing.stray}


def test_the_recorders_own_files_under_a_root_are_neither_read_nor_stray(tmp_path: Path) -> None:
    # Today's names (`_journal/`, `_status.json`) and an older layout's (`journal/`,
    # `status.json`): a user's first `verify data` must not warn about the recorder's files.
    for journal in ("_journal", "journal"):
        (tmp_path / journal).mkdir()
        (tmp_path / journal / "LOCK").write_text("pid 1")
    for status in ("_status.json", "status.json"):
        (tmp_path / status).write_text("{}")
    run = RunBuilder(tmp_path)
    run.receive(trade(1, 1, "KX-A", 45, 55, 3))
    (path,) = run.write()
    listing = list_capture_files(tmp_path)
    assert listing.stray == ()
    assert [f.path for f in listing.files] == [path]
