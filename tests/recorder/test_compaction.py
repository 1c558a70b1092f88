"""Compaction and retention: merged files replace their inputs atomically for readers.

Partitions are built by a real JournalWriter and Publisher; readers are real pyarrow
and DuckDB reads; the kill test SIGKILLs a real compaction process at each fsync.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.errors import CompactionError
from recorder.storage._segment import read_segment
from recorder.storage.compaction import apply_retention, compact
from recorder.storage.journal import JournalWriter
from recorder.storage.publisher import Publisher, sealed_segments
from schemas.record import live_files, parse_file_name

from ..objectstore import S3Server
from ..results import ResultLog
from .helpers import BASE_NS, RUN_A, RUN_B, append_frames, feed_of, published, unreadable_files
from .journal_driver import Driver

PARTITION = "channel=orderbook_delta/date=2026-01-01"
DAY_NS = 86_400 * 10**9


def build_root(
    tmp_path: Path, segments: int = 8, per_segment: int = 50, run_id: str = RUN_A
) -> Path:
    """A root whose partitions hold one small file per segment."""
    journal, root = tmp_path / f"journal-{run_id}", tmp_path / "root"
    with JournalWriter(journal, run_id, commit_interval_s=0.002, segment_max_bytes=4096) as w:
        for s in range(segments):
            append_frames(w, s * per_segment, per_segment)
            assert w.wait_durable((s + 1) * per_segment - 1, 5)
    Publisher(journal, root).publish_pending()
    return root


def partition_idx(root: Path, partition: str = PARTITION) -> Counter[int]:
    names = [p.name for p in (root / partition).iterdir()]
    counts: Counter[int] = Counter()
    for name in live_files(names):
        counts.update(pq.read_table(root / partition / name, columns=["idx"])["idx"].to_pylist())
    return counts


def test_a_compacted_file_hides_exactly_the_files_its_range_covers() -> None:
    """The rule is `schemas.record`'s; compaction's atomicity rests on it."""
    names = [
        f"{RUN_A}-00000001.parquet",
        f"{RUN_A}-00000002.parquet",
        f"{RUN_A}-00000003.parquet",
        f"{RUN_A}-00000001-c00000002.parquet",
        f"{RUN_B}-00000001.parquet",
        f".{RUN_A}-00000004.parquet.tmp",
        "foreign.parquet",
    ]
    assert live_files(names) == sorted(
        [
            f"{RUN_A}-00000001-c00000002.parquet",
            f"{RUN_A}-00000003.parquet",
            f"{RUN_B}-00000001.parquet",
        ]
    )  # a temporary file and a foreign name are never live
    wider = [*names, f"{RUN_A}-00000001-c00000003.parquet"]
    assert f"{RUN_A}-00000001-c00000002.parquet" not in live_files(wider)
    parsed = parse_file_name(f"{RUN_A}-00000001-c00000003.parquet")
    assert parsed is not None
    assert (parsed.lo, parsed.hi, parsed.compacted) == (1, 3, True)


def test_compaction_merges_a_runs_small_files_into_one_sorted_file(tmp_path: Path) -> None:
    root = build_root(tmp_path)
    before = published(root).drop_columns(["mono_ns"]).to_pylist()
    inputs = sorted(p.name for p in (root / PARTITION).iterdir())
    report = compact(root, PARTITION, min_age_s=0, delete_grace_s=0)
    (output, merged), *_ = report.outputs
    assert merged == inputs
    assert output == f"{PARTITION}/{RUN_A}-00000000-c00000007.parquet"
    assert sorted(p.name for p in (root / PARTITION).iterdir()) == [output.rsplit("/", 1)[1]]
    assert published(root).drop_columns(["mono_ns"]).to_pylist() == before
    types = pq.read_table(root / output, columns=["type"])["type"].to_pylist()
    assert types == sorted(types)  # grouped by type, whichever storage order won
    assert report.bytes_out < report.bytes_in


def test_compacted_files_keep_each_records_feed(tmp_path: Path) -> None:
    root = build_root(tmp_path, segments=4)
    # A file an older recorder wrote, before the `feed` column: its rows read as null.
    oldest = sorted((root / PARTITION).iterdir())[0]
    old_idx = set(pq.read_table(oldest, columns=["idx"])["idx"].to_pylist())
    pq.write_table(pq.read_table(oldest).drop_columns(["feed"]), oldest, compression="zstd")
    (output, _), *_ = compact(root, PARTITION, min_age_s=0, delete_grace_s=0).outputs
    assert pq.read_schema(root / output).field("feed").type == pa.int8()
    rows = pq.read_table(root / output, columns=["idx", "feed"]).to_pylist()
    assert {r["feed"] for r in rows} == {None, 0, 1}
    assert all(r["feed"] == (None if r["idx"] in old_idx else feed_of(r["idx"])) for r in rows)


def test_files_younger_than_min_age_are_left_alone(tmp_path: Path) -> None:
    root = build_root(tmp_path, segments=4)
    report = compact(root, PARTITION, min_age_s=3600)
    assert report.outputs == []
    newest = max(p.stat().st_mtime_ns for p in (root / PARTITION).iterdir())
    report = compact(root, PARTITION, min_age_s=3600, now_ns=newest + 3600 * 10**9)
    assert len(report.outputs) == 1


def test_groups_are_cut_at_target_rows_and_stay_contiguous(tmp_path: Path) -> None:
    root = build_root(tmp_path, segments=8)
    rows = pq.read_metadata(next((root / PARTITION).iterdir())).num_rows
    report = compact(root, PARTITION, min_age_s=0, target_rows=3 * rows, delete_grace_s=0)
    ranges = [parse_file_name(out.rsplit("/", 1)[1]) for out, _ in report.outputs]
    assert [(r.lo, r.hi) for r in ranges if r] == [(0, 2), (3, 5), (6, 7)]
    assert set(partition_idx(root).values()) == {1}


def test_a_lone_published_file_is_rewritten_once_and_then_left_alone(tmp_path: Path) -> None:
    root = build_root(tmp_path, segments=1)
    (original,) = (root / PARTITION).iterdir()
    first = compact(root, PARTITION, min_age_s=0, delete_grace_s=0)
    assert first.outputs == [(f"{PARTITION}/{RUN_A}-00000000-c00000000.parquet", [original.name])]
    assert compact(root, PARTITION, min_age_s=0, delete_grace_s=0).outputs == []
    assert set(partition_idx(root).values()) == {1}


def test_superseded_files_are_deleted_only_after_the_grace_period(tmp_path: Path) -> None:
    root = build_root(tmp_path, segments=3)
    first = compact(root, PARTITION, min_age_s=0, delete_grace_s=300)
    assert first.deleted == []
    assert len(list((root / PARTITION).iterdir())) == 4
    merged = root / first.outputs[0][0]
    later = merged.stat().st_mtime_ns + 301 * 10**9
    second = compact(root, PARTITION, min_age_s=0, delete_grace_s=300, now_ns=later)
    assert len(second.deleted) == 3
    assert [p.name for p in (root / PARTITION).iterdir()] == [merged.name]


def test_a_segment_republished_after_compaction_is_hidden_not_doubled(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    with JournalWriter(journal, RUN_A, commit_interval_s=0.002, segment_max_bytes=4096) as w:
        for s in range(3):
            append_frames(w, s * 50, 50)
            assert w.wait_durable(s * 50 + 49, 5)
    publisher = Publisher(journal, root)
    segments = sealed_segments(journal)
    kept = read_segment(segments[1])  # as if the recorder died before deleting segment 1
    publisher.publish_pending()
    compact(root, PARTITION, min_age_s=0, delete_grace_s=0)
    publisher.publish_data(kept)  # recovery republishes it after the restart
    assert set(partition_idx(root).values()) == {1}
    assert compact(root, PARTITION, min_age_s=0, delete_grace_s=0).deleted != []


def test_a_concurrent_reader_never_sees_rows_missing_or_doubled(tmp_path: Path) -> None:
    root = build_root(tmp_path, segments=12, per_segment=40)
    expected = sorted(partition_idx(root).elements())
    stop = threading.Event()
    problems: list[str] = []
    reads = Counter[str]()

    def reader(use_duckdb: bool) -> None:
        con = duckdb.connect()
        while not stop.is_set():
            names = live_files([p.name for p in (root / PARTITION).iterdir()])
            paths = [str(root / PARTITION / n) for n in names]
            try:
                if use_duckdb:
                    rows = con.sql(f"select idx from read_parquet({paths!r})").fetchall()
                    got = sorted(r[0] for r in rows)
                else:
                    got = sorted(
                        i
                        for p in paths
                        for i in pq.read_table(p, columns=["idx"])["idx"].to_pylist()
                    )
            except (FileNotFoundError, duckdb.IOException):
                reads["vanished"] += 1  # a file listed before a swap was deleted: list again
                continue
            reads["duckdb" if use_duckdb else "pyarrow"] += 1
            if got != expected:
                problems.append(f"{len(got)} rows, {len(set(got))} distinct, want {len(expected)}")

    def settle() -> None:
        """Let both readers finish a few reads of the current state."""
        start = reads.copy()
        while min(reads[k] - start[k] for k in ("pyarrow", "duckdb")) < 3 and not problems:
            stop.wait(0.005)

    threads = [threading.Thread(target=reader, args=(d,)) for d in (False, True)]
    for t in threads:
        t.start()
    try:
        settle()
        # Merge, leaving the inputs in place (superseded); merge the merged files; then
        # merge everything into one file and delete what is superseded while reading.
        compact(root, PARTITION, min_age_s=0, delete_grace_s=300, target_rows=80)
        settle()
        compact(root, PARTITION, min_age_s=0, delete_grace_s=300, target_rows=200)
        settle()
        compact(root, PARTITION, min_age_s=0, delete_grace_s=0, target_rows=1000)
        settle()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert problems == []
    assert len(live_files([p.name for p in (root / PARTITION).iterdir()])) == 1


def compaction_points(root: Path) -> int:
    out = Driver("compact", str(root), PARTITION).run().split()
    assert out[-1] == "DONE"
    return out.count("F")


def test_compaction_killed_at_any_fsync_leaves_old_or_new_files_never_both_or_neither(
    tmp_path: Path, results: ResultLog, request: pytest.FixtureRequest
) -> None:
    pristine = build_root(tmp_path, segments=5)
    expected = partition_idx(pristine)
    points = compaction_points(shutil.copytree(pristine, tmp_path / "probe"))
    assert points >= 3
    lost = doubled = unreadable = 0
    wrong: list[str] = []  # "<fsync point> <when>": rows not exactly those before the kill
    for point in range(1, points + 1):
        root = shutil.copytree(pristine, tmp_path / f"root{point}")
        proc = Driver("compact", str(root), PARTITION, "--pause-at", str(point))
        for line in proc.stdout:
            if line.strip() == f"F {point}":
                break
        proc.kill()
        proc.close()
        unreadable += len(unreadable_files(root))
        after_kill = partition_idx(root)
        compact(root, PARTITION, min_age_s=0, delete_grace_s=0)
        after_next = partition_idx(root)
        for when, held in (
            ("after the kill", after_kill),
            ("after the next compaction", after_next),
        ):
            lost += sum(1 for idx in expected if idx not in held)
            doubled += sum(n - 1 for n in held.values() if n > 1)
            if held != expected:
                wrong.append(f"{point} {when}")
        if len(list((root / PARTITION).iterdir())) != 1:
            wrong.append(f"{point} after the next compaction: more than one file")
    results.add("crash", {
        "case": "compaction, at each of its fsyncs, then compaction again",
        "cycles": points, "durable": sum(expected.values()) * points,
        "lost": lost, "doubled": doubled, "unreadable": unreadable,
        "wrong": wrong,
    }, request)  # fmt: skip
    assert wrong == []
    assert unreadable == 0


def test_compaction_works_on_an_object_store(tmp_path: Path, s3: S3Server) -> None:
    journal = tmp_path / "journal"
    with JournalWriter(journal, RUN_A, commit_interval_s=0.002, segment_max_bytes=4096) as w:
        for s in range(3):
            append_frames(w, s * 50, 50)
            assert w.wait_durable(s * 50 + 49, 5)
    root = s3.new_root("compact")
    Publisher(journal, root, storage=s3.options).publish_pending()
    inputs = [k for k in s3.keys(root) if k.startswith(PARTITION)]
    assert len(inputs) == 3  # one file per segment
    base = root.removeprefix("s3://")
    rows = sorted(
        i for k in inputs for i in pq.read_table(f"{base}/{k}", filesystem=s3.fs)["idx"].to_pylist()
    )
    report = compact(root, PARTITION, storage=s3.options, min_age_s=0, delete_grace_s=0)
    assert len(report.outputs) == 1
    assert [k for k in s3.keys(root) if k.startswith(PARTITION)] == [report.outputs[0][0]]
    merged = pq.read_table(f"{base}/{report.outputs[0][0]}", filesystem=s3.fs)
    assert sorted(merged.column("idx").to_pylist()) == rows


def test_a_malformed_partition_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CompactionError, match="not a partition"):
        compact(tmp_path, "channel=ticker/../../etc")


def test_retention_removes_whole_date_partitions_older_than_the_cutoff(tmp_path: Path) -> None:
    journal, root = tmp_path / "journal", tmp_path / "root"
    with JournalWriter(journal, RUN_A) as w:
        for day in range(4):  # 2026-01-01 .. 2026-01-04
            append_frames(w, day * 20, 20, recv_ns=BASE_NS + day * DAY_NS)
    Publisher(journal, root).publish_pending()
    leftover = root / "channel=ticker" / ".deleting-date=2025-12-01"
    leftover.mkdir(parents=True)
    report = apply_retention(root, 2, today="2026-01-04")
    assert report.leftovers_removed == 1
    assert sorted({r.split("/")[1] for r in report.removed}) == ["date=2026-01-01"]
    dates = {p.name for p in root.glob("channel=*/date=*")}
    assert dates == {"date=2026-01-02", "date=2026-01-03", "date=2026-01-04"}
    assert list(root.rglob(".deleting-*")) == []
    assert sorted(published(root)["idx"].to_pylist()) == list(range(20, 80))
