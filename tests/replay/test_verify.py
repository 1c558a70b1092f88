"""`verify`: each kind of corruption is found and exits 1; a clean capture exits 0."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kalshi_tape.cli import main
from replay.sql.verify import VerifyReport, verify_capture
from schemas.events import CaptureGap, Closed, Opened, RunStart, RunStop
from schemas.record import partition_file

from .capture_factory import (
    M1,
    RUN_A,
    URL,
    RunBuilder,
    StandardCapture,
    build_standard_capture,
    read_rows,
    subscribe,
    subscribed,
    trade,
    truncate_file,
    write_rows,
)
from .two_feeds import TwoFeeds, record_two_feeds


def clean_run(root: Path, *, stop: bool = True, hole_after: int | None = None) -> RunBuilder:
    """One run: open, subscribe, 20 trades, close, run_stop; optionally an idx hole."""
    run = RunBuilder(root)
    run.event(RunStart(run_id=run.run_id, version="0.1.0"), 0)
    run.event(Opened(url=URL, standby=False), 1)
    run.send(subscribe(1, ["trade"]))
    run.receive(subscribed(1, "trade", 1))
    for seq in range(1, 21):
        run.receive(trade(1, seq, M1, "0.5000", "0.5000", "1.00"))
        if seq == hole_after:
            run.skip_idx(3)
    if stop:
        run.event(Closed(code=1000, reason="", disconnect_reason="shutdown"), 1)
        run.event(RunStop(reason="signal"), 0)
    return run


@pytest.fixture
def cap(tmp_path: Path) -> StandardCapture:
    return build_standard_capture(tmp_path / "capture")


def trade_file(cap: StandardCapture) -> Path:
    return next(p for p in cap.paths if "channel=trade/date=2026-11-21" in str(p))


def test_a_clean_capture_is_ok_with_no_problems_or_warnings(tmp_path: Path) -> None:
    clean_run(tmp_path).write((0, 10))
    report = verify_capture(tmp_path)
    assert not report.corrupt
    assert report.problems() == [] and report.warnings() == []
    (run,) = report.runs
    assert (run.first_idx, run.last_idx, run.frames, run.clean_stop) == (1, 26, 26, True)
    assert main(["verify", str(tmp_path), "--strict"]) == 0


def test_the_standard_capture_is_not_corrupt_but_warns(cap: StandardCapture) -> None:
    report = verify_capture(cap.root)
    assert not report.corrupt
    assert report.seq_summary == {
        "gap": 2,
        "reset": 1,
        "duplicate": 0,
        "missing": 3,
        "unrecovered": 1,
        "unresyncable": 1,
    }
    warnings = report.warnings()
    assert any("20261122T000000Z-bbbbbbbb ended without run_stop" in w for w in warnings)
    assert "order book seq gaps or resets not followed by a resync: 1" in warnings
    assert main(["verify", str(cap.root)]) == 0
    assert main(["verify", str(cap.root), "--strict"]) == 1


def test_a_truncated_file_is_unreadable_and_corrupt(cap: StandardCapture) -> None:
    path = trade_file(cap)
    truncate_file(path, path.stat().st_size // 2)
    report = verify_capture(cap.root)
    assert report.corrupt
    assert [p.path for p in report.unreadable] == [str(path)]
    assert "partial or not Parquet" in report.unreadable[0].problem
    assert report.runs  # the rest of the capture is still checked
    assert main(["verify", str(cap.root)]) == 1


def test_a_file_that_is_not_parquet_is_unreadable(cap: StandardCapture) -> None:
    path = cap.root / partition_file("trade", "2026-11-21", RUN_A, 7)
    path.write_bytes(b"PAR1 this is not a parquet file PAR1")
    report = verify_capture(cap.root)
    assert [p.path for p in report.unreadable] == [str(path)]
    assert report.corrupt


def test_a_file_with_another_schema_is_unreadable(cap: StandardCapture) -> None:
    path = cap.root / partition_file("trade", "2026-11-21", RUN_A, 7)
    pq.write_table(pa.table({"idx": [1], "raw": [b"{}"]}), path)
    report = verify_capture(cap.root)
    assert [p.path for p in report.unreadable] == [str(path)]
    assert "schema differs" in report.unreadable[0].problem


def test_a_damaged_data_page_behind_a_good_footer_is_unreadable(cap: StandardCapture) -> None:
    path = trade_file(cap)
    raw_column = pq.ParquetFile(path).metadata.row_group(0).column(11)
    data = bytearray(path.read_bytes())
    offset = raw_column.data_page_offset
    data[offset : offset + 48] = b"\xff" * 48  # the page header no longer decodes
    path.write_bytes(bytes(data))
    report = verify_capture(cap.root)
    assert [p.path for p in report.unreadable] == [str(path)]
    assert "data does not decode" in report.unreadable[0].problem
    assert report.corrupt


def test_rows_stored_twice_are_duplicates(cap: StandardCapture) -> None:
    path = trade_file(cap)
    copies = read_rows(path)
    write_rows(cap.root, copies, RUN_A, 7)  # the same rows published under a second segment
    report = verify_capture(cap.root)
    assert report.corrupt
    assert report.duplicate_count == len(copies)
    assert {(d["idx"], d["copies"], d["identical"]) for d in report.duplicates} == {
        (r.idx, 2, True) for r in copies
    }
    assert main(["verify", str(cap.root)]) == 1


def test_two_different_rows_with_one_idx_are_conflicting_duplicates(tmp_path: Path) -> None:
    run = clean_run(tmp_path)
    run.write()
    other = dataclasses.replace(run.records[5], raw=b'{"type":"trade","sid":1,"seq":99}')
    write_rows(tmp_path, [other], run.run_id, 9)
    report = verify_capture(tmp_path)
    assert report.duplicates == [
        {"run_id": run.run_id, "idx": other.idx, "copies": 2, "identical": False}
    ]
    assert report.corrupt


def test_an_idx_hole_in_the_middle_of_a_run_is_corruption(tmp_path: Path) -> None:
    clean_run(tmp_path, hole_after=10).write()
    report = verify_capture(tmp_path)
    assert report.corrupt
    (hole,) = report.holes
    assert (hole.first_missing, hole.last_missing, hole.count, hole.at_tail) == (15, 17, 3, False)
    assert any("idx 15..17 missing (3) in the middle of the run" in p for p in report.problems())
    assert main(["verify", str(tmp_path)]) == 1


def test_a_hole_in_the_last_segment_of_a_crashed_run_is_a_warning(tmp_path: Path) -> None:
    run = clean_run(tmp_path, stop=False)
    run.receive({"id": 9, "type": "error", "msg": {"code": 1, "msg": "Unable to process message"}})
    run.receive(trade(1, 21, M1, "0.5000", "0.5000", "1.00"))
    paths = run.write((0, 10))
    # The crash came while the last segment was being published: its _control file is missing.
    (pending,) = [
        p for p in paths if "channel=_control" in str(p) and p.name.endswith("01.parquet")
    ]
    pending.unlink()
    report = verify_capture(tmp_path)
    assert not report.corrupt
    (hole,) = report.holes
    assert hole.at_tail and hole.count == 1
    assert any("in its last segment" in w for w in report.warnings())
    assert any("ended without run_stop" in w for w in report.warnings())
    assert main(["verify", str(tmp_path)]) == 0


def test_a_hole_before_the_last_segment_of_a_crashed_run_is_corruption(tmp_path: Path) -> None:
    run = clean_run(tmp_path, stop=False, hole_after=3)
    run.write((0, 12))
    report = verify_capture(tmp_path)
    assert [h.at_tail for h in report.holes] == [False]
    assert report.corrupt


def test_frames_the_recorder_declared_lost_are_a_warning(tmp_path: Path) -> None:
    run = clean_run(tmp_path, stop=False)
    gap = run.event(CaptureGap(lost_frames=120, reason="disk full"), 0)
    run.event(RunStop(reason="signal"), 0)
    run.write()
    report = verify_capture(tmp_path)
    assert not report.corrupt
    assert report.warnings() == [
        f"run {run.run_id} idx {gap.idx}: the recorder lost 120 frames (disk full)"
    ]


def test_a_hole_the_recorder_recorded_as_a_capture_gap_is_not_corruption(
    tmp_path: Path,
) -> None:
    # The journal drops frames when the disk is full and says so; the hole those idx
    # leave is the recorded loss, not damage to the capture.
    run = clean_run(tmp_path, stop=False, hole_after=10)  # idx 15..17 never stored
    run.event(CaptureGap(lost_frames=3, first_idx=15, last_idx=17, reason="disk full"), 0)
    run.skip_idx(2)  # and 2 more that nothing explains
    run.receive(trade(1, 21, M1, "0.5000", "0.5000", "1.00"))
    run.event(RunStop(reason="signal"), 0)
    run.write()
    report = verify_capture(tmp_path)
    assert [(h.first_missing, h.recorded) for h in report.holes] == [(15, True), (29, False)]
    assert report.problems() == [
        f"run {run.run_id}: idx 29..30 missing (2) in the middle of the run"
    ]
    assert report.corrupt  # the unexplained hole still is

    alone = tmp_path / "alone"
    run = clean_run(alone, stop=False, hole_after=10)
    run.event(CaptureGap(lost_frames=3, first_idx=15, last_idx=17, reason="disk full"), 0)
    run.event(RunStop(reason="signal"), 0)
    run.write()
    report = verify_capture(alone)
    assert not report.corrupt and report.problems() == []
    assert any("the recorder lost 3 frames (disk full)" in w for w in report.warnings())
    assert main(["verify", str(alone)]) == 0


def test_rows_filed_under_the_wrong_channel_are_corruption(cap: StandardCapture) -> None:
    src = trade_file(cap)
    dest = cap.root / partition_file("ticker", "2026-11-21", RUN_A, 5)
    src.rename(dest)
    report = verify_capture(cap.root)
    assert report.corrupt
    (problem,) = report.misfiled
    assert problem.path == str(dest)
    assert "channel trade" in problem.problem


def test_stray_files_are_warnings_only(cap: StandardCapture) -> None:
    (cap.root / "README.txt").write_text("my capture")
    report = verify_capture(cap.root)
    assert not report.corrupt
    assert any("README.txt" in w for w in report.warnings())


def test_reconnects_are_listed_with_close_code_and_downtime(cap: StandardCapture) -> None:
    (reconnect,) = verify_capture(cap.root).reconnects
    assert (reconnect["run_id"], reconnect["closed_conn"], reconnect["next_conn"]) == (RUN_A, 1, 2)
    assert (reconnect["close_code"], reconnect["disconnect_reason"]) == (1006, "transport")
    assert reconnect["downtime_s"] == pytest.approx(0.503)


def test_coverage_counts_frames_per_channel_market_and_hour(cap: StandardCapture) -> None:
    coverage = verify_capture(cap.root).coverage
    trades = [
        (c["market_ticker"], c["hour"], c["frames"]) for c in coverage if c["channel"] == "trade"
    ]
    assert trades == [
        ("KXBTCD-26NOV21-T100000", "2026-11-21T08:00:00+00:00", 2),
        ("KXBTCD-26NOV21-T100000", "2026-11-22T00:00:00+00:00", 2),
        ("KXETHD-26NOV21-T4000", "2026-11-21T08:00:00+00:00", 2),
    ]


def test_json_report_has_the_verdict_and_every_section(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    truncate_file(trade_file(cap), 10)
    assert main(["verify", str(cap.root), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["corrupt"] is True
    assert data["problems"][0].startswith("unreadable file ")
    for key in ("runs", "holes", "duplicates", "seq_gaps", "reconnects", "coverage", "warnings"):
        assert key in data


def test_text_report_ends_with_the_verdict(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(cap.root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "result: OK (0 problems, 2 warnings)"
    assert "reconnects: 1" in out


@pytest.fixture
def two_feeds(tmp_path: Path) -> TwoFeeds:
    return record_two_feeds(tmp_path)


def test_a_capture_of_two_feeds_is_counted_per_feed_and_reconnects_within_each(
    two_feeds: TwoFeeds,
) -> None:
    report = verify_capture(two_feeds.root)
    assert not report.corrupt
    assert report.problems() == [] and report.warnings() == []
    assert report.feeds == [0, 1]
    (run,) = report.runs
    assert run.frames == sum(two_feeds.records.values())
    assert run.feeds == [
        {"feed": f, "frames": two_feeds.records[f], "connections": len(two_feeds.connections[f])}
        for f in (0, 1)
    ]
    # Feed 1 reconnected (2 -> 3) while feed 0's connection 1 stayed up: connection 2 is
    # no reconnect of connection 1.
    (reconnect,) = report.reconnects
    assert (reconnect["feed"], reconnect["closed_conn"], reconnect["next_conn"]) == (1, 2, 3)
    assert reconnect["disconnect_reason"] == "transport"
    trades = {c["feed"]: c["frames"] for c in report.coverage if c["channel"] == "trade"}
    assert trades == {0: two_feeds.by_channel[("trade", 0)], 1: two_feeds.by_channel[("trade", 1)]}


def test_the_reports_of_two_feeds_show_both(
    two_feeds: TwoFeeds, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(two_feeds.root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    feeds = lines.index("feeds: 2")
    assert lines[feeds + 1].split() == ["run", "feed", "frames", "connections"]
    for f in (0, 1):
        row = [RUN_A, str(f), str(two_feeds.records[f]), str(len(two_feeds.connections[f]))]
        assert lines[feeds + 3 + f].split() == row
    header = next(line for line in lines if line.split()[:2] == ["channel", "markets"])
    assert header.split()[-4:] == ["feed", "0", "feed", "1"]
    trade = next(line for line in lines if line.split()[0] == "trade").split()
    assert trade[-2:] == [str(two_feeds.by_channel[("trade", f)]) for f in (0, 1)]
    assert "reconnects: 1" in out

    assert main(["verify", str(two_feeds.root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["feeds"] == [0, 1]
    assert [f["frames"] for f in data["runs"][0]["feeds"]] == [
        two_feeds.records[0],
        two_feeds.records[1],
    ]
    assert data["reconnects"][0]["feed"] == 1


def test_a_capture_of_one_feed_is_reported_without_feeds(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    report = verify_capture(cap.root)
    assert report.feeds == [0]  # its files predate feeds: null is feed 0
    assert all(r.feeds == [] for r in report.runs)
    assert all("feed" not in r for r in report.reconnects + report.coverage)
    assert main(["verify", str(cap.root)]) == 0
    out = capsys.readouterr().out.split("\n", 1)[1]  # after the root's path
    assert "feeds:" not in out and "feed 0" not in out
    assert main(["verify", str(cap.root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["feeds"] == [0]
    assert all("feeds" not in run for run in data["runs"])


def test_a_missing_root_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(tmp_path / "nope")]) == 2
    assert "ROOT: capture root" in capsys.readouterr().err


def test_report_type_is_exported() -> None:
    assert VerifyReport(root="/x").corrupt is False


def test_connection_checkpoints_take_their_place_in_the_run_order(tmp_path: Path) -> None:
    # The recorder journals checkpoints like any record: each takes an idx. A run with
    # one in the middle has no hole.
    run = clean_run(tmp_path)
    records = run.records
    middle = records[len(records) // 2]
    checkpoint = dataclasses.replace(
        middle, dir="event", channel="_checkpoint", type="checkpoint", sid=None, seq=None,
        market_ticker=None, raw=b'{"version":1,"conn":1,"subs":[]}',
    )  # fmt: skip
    run.records[len(records) // 2] = checkpoint
    run.write((0, 10))
    report = verify_capture(tmp_path)
    assert report.problems() == []
    (checked,) = report.runs
    assert checked.missing == 0 and checked.frames == len(records)
