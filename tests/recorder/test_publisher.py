"""The publisher: sealed segments become Parquet partitions, atomically and idempotently.

Real segments from a real JournalWriter, real Parquet files read back with pyarrow,
and for object stores pyarrow's own in-memory filesystem.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recorder.errors import PublishError
from recorder.storage._segment import read_segment
from recorder.storage._table import segment_table
from recorder.storage.journal import JournalWriter
from recorder.storage.publisher import Publisher, sealed_segments
from schemas.arrow import CAPTURE_SCHEMA
from schemas.parquet import ParquetSettings, encode_for_storage, encode_parquet, sort_for_storage
from schemas.record import partition_file

from ..objectstore import S3Server
from .helpers import BASE_NS, RUN_A, append_frames, expected_row, published, published_idx

DAY_NS = 86_400 * 10**9


def journal_with(tmp_path: Path, count: int, *, two_days: bool = False) -> Path:
    journal = tmp_path / "journal"
    with JournalWriter(journal, RUN_A) as w:
        for i in range(count):
            recv = BASE_NS + i * 1000 + (DAY_NS if two_days and i >= count // 2 else 0)
            append_frames(w, i, 1, recv_ns=recv)
    return journal


def test_publish_writes_one_file_per_channel_and_date_named_by_the_segment(
    tmp_path: Path,
) -> None:
    journal = journal_with(tmp_path, 200, two_days=True)
    (segment,) = sealed_segments(journal)
    files = Publisher(journal, tmp_path / "root").publish(segment)
    expected = {
        partition_file(channel, date, RUN_A, 0)
        for channel in ("orderbook_delta", "ticker", "trade", "_unknown")
        for date in ("2026-01-01", "2026-01-02")
    }
    assert {f.path for f in files} == expected
    assert sum(f.rows for f in files) == 200
    assert not segment.exists()
    for f in files:
        table = pq.read_table(tmp_path / "root" / f.path)
        assert table.schema.equals(CAPTURE_SCHEMA)
        channel = f.path.split("/")[0].removeprefix("channel=")
        assert set(table.column("channel").to_pylist()) == {channel}


def test_published_rows_are_the_appended_rows_bytes_exact(tmp_path: Path) -> None:
    journal = journal_with(tmp_path, 300)
    Publisher(journal, tmp_path / "root").publish_pending()
    rows = published(tmp_path / "root").drop_columns(["mono_ns"]).to_pylist()
    assert rows == [expected_row(i) for i in range(300)]


def test_rows_within_a_file_follow_one_of_the_storage_orders(tmp_path: Path) -> None:
    journal = journal_with(tmp_path, 300)
    files = Publisher(journal, tmp_path / "root").publish_pending()
    for f in files:
        table = pq.read_table(tmp_path / "root" / f.path, columns=["type", "market_ticker", "idx"])
        rows = table.to_pylist()
        by_order = {
            order: sorted(rows, key=lambda r: tuple(_key(r[c]) for c in order))
            for order in ParquetSettings().sort_orders
        }
        assert rows in by_order.values(), f.path


def _key(value: object) -> tuple[bool, object]:
    return (value is None, value)  # nulls last, as the sort puts them


def test_the_order_written_is_the_smallest_of_the_candidates(tmp_path: Path) -> None:
    journal = journal_with(tmp_path, 2000)
    (segment,) = sealed_segments(journal)
    table = segment_table(read_segment(segment))
    settings = ParquetSettings()
    chosen = encode_for_storage(table, settings).size
    each = [encode_parquet(sort_for_storage(table, o), settings).size for o in settings.sort_orders]
    assert chosen == min(each)


def test_republishing_a_segment_replaces_its_files_instead_of_adding_copies(
    tmp_path: Path,
) -> None:
    journal = journal_with(tmp_path, 150)
    (segment,) = sealed_segments(journal)
    root = tmp_path / "root"
    publisher = Publisher(journal, root)
    first = publisher.publish_data(read_segment(segment))  # as if killed before the delete
    contents = {f.path: (root / f.path).read_bytes() for f in first}
    second = publisher.publish(segment)
    assert [f.path for f in second] == [f.path for f in first]
    assert {f.path: (root / f.path).read_bytes() for f in second} == contents
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == sorted(
        contents
    )
    assert set(published_idx(root).values()) == {1}


def test_a_failed_write_keeps_the_segment_and_leaves_no_partial_file(tmp_path: Path) -> None:
    journal = journal_with(tmp_path, 100)
    (segment,) = sealed_segments(journal)
    root = tmp_path / "root"

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "injected")

    with pytest.raises(PublishError, match="injected"):
        Publisher(journal, root, fsync=failing_fsync).publish(segment)
    assert segment.exists()
    assert [p for p in root.rglob("*") if p.is_file()] == []
    Publisher(journal, root).publish(segment)
    assert len(published_idx(root)) == 100


def test_publishing_to_an_object_store_puts_each_file_once_under_its_final_key(
    tmp_path: Path, s3: S3Server
) -> None:
    journal = journal_with(tmp_path, 100)
    root = s3.new_root("publish")
    files = Publisher(journal, root, storage=s3.options).publish_pending()
    assert s3.keys(root) == sorted(f.path for f in files)  # no temporary or second copy
    base = root.removeprefix("s3://")
    rows = sum(pq.read_table(f"{base}/{f.path}", filesystem=s3.fs).num_rows for f in files)
    assert rows == 100
    assert sealed_segments(journal) == []
    Publisher(journal_with(tmp_path / "again", 100), root, storage=s3.options).publish_pending()
    assert s3.keys(root) == sorted(f.path for f in files)  # republished: the same keys


def test_a_graceful_stop_publishes_everything(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    publisher = Publisher(journal, root)
    publisher.start()
    writer = JournalWriter(
        journal, RUN_A, commit_interval_s=0.005, segment_max_bytes=8192, on_sealed=publisher.submit
    )
    for start in range(0, 2000, 100):
        append_frames(writer, start, 100)
        writer.wait_durable(start + 99, 5)
    append_frames(writer, 2000, 50)  # not yet durable when close() is called
    writer.close()
    stats = publisher.close()
    assert sorted(p.name for p in journal.iterdir()) == ["LOCK"]
    assert published_idx(root) == {(RUN_A, i): 1 for i in range(2050)}
    assert stats.rows_published == 2050
    assert stats.segments_published >= 3
    assert stats.queued == 0


def test_a_failing_segment_is_retried_before_any_later_one(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    broken = threading.Event()
    broken.set()

    def fsync(fd: int) -> None:
        if broken.is_set():
            raise OSError(errno.ENOSPC, "injected")
        os.fsync(fd)

    order: list[str] = []
    publisher = Publisher(
        journal,
        root,
        fsync=fsync,
        retry_interval_s=0.01,
        on_published=lambda seg, _files: order.append(seg.name),
    )
    publisher.start()
    with JournalWriter(journal, RUN_A, segment_max_bytes=4096, on_sealed=publisher.submit) as w:
        for start in range(0, 300, 50):
            append_frames(w, start, 50)
            assert w.wait_durable(start + 49, 5)
    deadline = time.monotonic() + 10
    while publisher.stats().errors == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # the publisher thread gets its turn (late on a loaded machine)
    assert publisher.stats().errors > 0
    assert order == []
    broken.clear()
    stats = publisher.close()
    assert order == sorted(order)
    assert len(order) >= 3
    assert stats.last_error is None
    assert published_idx(root) == {(RUN_A, i): 1 for i in range(300)}


def test_a_file_takes_the_utc_date_of_its_rows_recv_ns(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    with JournalWriter(journal, RUN_A) as w:
        append_frames(w, 0, 1, recv_ns=BASE_NS - 1)  # 2025-12-31T23:59:59.999999999Z
        append_frames(w, 1, 1, recv_ns=BASE_NS)
    files = Publisher(journal, tmp_path / "root").publish_pending()
    assert sorted(f.path.split("/")[1] for f in files) == ["date=2025-12-31", "date=2026-01-01"]
