"""`inspect`: runs, time range, channels, markets, frames, bytes and compression."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kalshi_tape.cli import main
from replay.sql.summary import FeedCount, summarize_capture

from .capture_factory import RUN_A, RUN_B, StandardCapture, build_standard_capture, truncate_file
from .two_feeds import record_two_feeds


@pytest.fixture
def cap(tmp_path: Path) -> StandardCapture:
    return build_standard_capture(tmp_path / "capture")


def test_summary_counts_runs_frames_channels_and_markets(cap: StandardCapture) -> None:
    s = summarize_capture(cap.root)
    records = cap.run_a.records + cap.run_b.records
    assert s.frames == len(records)
    assert s.files == len(cap.paths)
    assert s.markets == 2
    assert s.dates == ["2026-11-21", "2026-11-22"]
    assert s.first_time == "2026-11-21T08:00:00+00:00"
    assert s.last_time == "2026-11-22T00:00:00.005000+00:00"
    assert [(r.run_id, r.frames, r.connections, r.clean_stop) for r in s.runs] == [
        (RUN_A, len(cap.run_a.records), 2, True),
        (RUN_B, len(cap.run_b.records), 1, False),
    ]
    expected: dict[str, int] = {}
    for r in records:
        expected[r.channel] = expected.get(r.channel, 0) + 1
    assert {c["channel"]: c["frames"] for c in s.channels} == expected


def test_bytes_on_disk_and_compression_ratio_are_exact(cap: StandardCapture) -> None:
    s = summarize_capture(cap.root)
    raw = sum(len(r.raw) for r in cap.run_a.records + cap.run_b.records)
    on_disk = sum(p.stat().st_size for p in cap.paths)
    assert (s.raw_bytes, s.bytes_on_disk) == (raw, on_disk)
    assert s.compression_ratio == pytest.approx(raw / on_disk)
    trade = next(c for c in s.channels if c["channel"] == "trade")
    assert trade["files"] == 3
    assert trade["bytes_on_disk"] == sum(
        p.stat().st_size for p in cap.paths if "channel=trade" in str(p)
    )


def test_an_unreadable_file_is_left_out_and_counted(cap: StandardCapture) -> None:
    (ticker,) = [p for p in cap.paths if "channel=ticker" in str(p)]
    truncate_file(ticker, 50)
    s = summarize_capture(cap.root)
    assert s.unreadable_files == 1
    assert "ticker" not in {c["channel"] for c in s.channels}


def test_an_empty_root_summarises_to_nothing(tmp_path: Path) -> None:
    s = summarize_capture(tmp_path)
    assert (s.frames, s.files, s.markets, s.runs, s.compression_ratio) == (0, 0, 0, [], None)


def test_the_command_prints_a_readable_summary(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(cap.root)]) == 0
    out = capsys.readouterr().out
    assert (
        "time range: 2026-11-21T08:00:00+00:00 .. 2026-11-22T00:00:00.005000+00:00 (2 dates)" in out
    )
    frames = len(cap.run_a.records) + len(cap.run_b.records)
    assert f"frames: {frames} in {len(cap.paths)} files; markets: 2" in out
    assert "runs: 2" in out
    assert RUN_B in out


def test_the_command_prints_json(cap: StandardCapture, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(cap.root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["markets"] == 2
    assert data["runs"][0]["run_id"] == RUN_A
    assert data["compression_ratio"] == pytest.approx(data["raw_bytes"] / data["bytes_on_disk"])


def test_a_capture_of_two_feeds_says_what_each_feed_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two = record_two_feeds(tmp_path)
    s = summarize_capture(two.root)
    assert s.feeds == [0, 1]
    (run,) = s.runs
    assert (run.frames, run.connections) == (sum(two.records.values()), 3)
    assert run.feeds == tuple(FeedCount(f, two.records[f], len(two.connections[f])) for f in (0, 1))
    for c in s.channels:
        expected = [(f, n) for (ch, f), n in sorted(two.by_channel.items()) if ch == c["channel"]]
        assert [(x["feed"], x["frames"]) for x in c["feeds"]] == expected, c["channel"]

    assert main(["inspect", str(two.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].endswith("; feeds: 2")
    feeds = lines.index("feeds:")
    for f in (0, 1):
        row = [RUN_A, str(f), str(two.records[f]), str(len(two.connections[f]))]
        assert lines[feeds + 3 + f].split() == row
    header = lines[lines.index("channels:") + 1].split()
    assert header[-4:] == ["feed", "0", "feed", "1"]
    checkpoint = next(line for line in lines if line.split()[0] == "_checkpoint").split()
    assert checkpoint[-2:] == ["0", "1"]  # the checkpoint of connection 3 is feed 1's

    assert main(["inspect", str(two.root), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["feeds"] == [0, 1]
    assert data["runs"][0]["feeds"] == [
        {"feed": f, "frames": two.records[f], "connections": len(two.connections[f])}
        for f in (0, 1)
    ]
    trade = next(c for c in data["channels"] if c["channel"] == "trade")
    assert trade["feeds"] == [{"feed": f, "frames": two.by_channel[("trade", f)]} for f in (0, 1)]


def test_a_capture_of_one_feed_prints_no_feeds(
    cap: StandardCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    s = summarize_capture(cap.root)
    assert s.feeds == [0]  # its files predate feeds: null is feed 0
    assert all(r.feeds == () for r in s.runs)
    assert all("feeds" not in c for c in s.channels)
    assert main(["inspect", str(cap.root)]) == 0
    out = capsys.readouterr().out.split("\n", 1)[1]  # after the root's path
    assert "feeds" not in out and "feed 0" not in out
    assert main(["inspect", str(cap.root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert all("feeds" not in run for run in data["runs"])
    assert all("feeds" not in c for c in data["channels"])


def test_a_missing_root_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kalshi-tape: error: ROOT: capture root")
