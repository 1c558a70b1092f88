"""`kalshi-tape merge` over captures whose every time is known (`tests.replay.merge.hosts`).

The hosts' captures are real capture files; the offsets, connections and gaps the merge
must report are computed by the test from what it wrote. The run with real recorder
processes is `test_merge_recorded.py`.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import replay.merge.api as merge_api
from kalshi_tape.cli import main
from recorder.storage.compaction import compact
from replay.merge.api import merge_captures
from replay.reading.capture import Capture
from replay.reading.layout import list_capture_files
from replay.reading.session import ReplaySession
from replay.sql.verify import verify_capture

from ...objectstore import S3Server
from .hosts import Conn, Run, exchange_trades, record_host, s

A1, A2 = "20261121T080000Z-aaaaaaa1", "20261121T080012Z-aaaaaaa2"
B1 = "20261121T080001Z-bbbbbbb1"
SHIFT = 250_000_000
MIDNIGHT = 1_795_305_600_000_000_000  # 2026-11-22T00:00:00Z


def _hosts(tmp: Path, *, clock_b: int = SHIFT, trades_b: int = 0) -> dict[str, Any]:
    """A: run 1 killed at about 9.5 s, run 2 from 12 s to 20 s. B (clock `clock_b` ahead):
    one run, connected 0.9-6 s and 7.9-11 s. Neither covers 11-12 s."""
    trades = exchange_trades(0, 20, 0.5)
    a = record_host(tmp / "a", [Run(A1, (Conn(0, 9.6, closed=False),)), Run(A2, (Conn(12, 20),))],
                    trades, delay_s=0.001)  # fmt: skip
    other = [(f"other-{i}", t) for i, (_, t) in enumerate(trades)] if trades_b else trades
    b = record_host(tmp / "b", [Run(B1, (Conn(0.9, 6), Conn(7.9, 11)))], other, delay_s=0.001,
                    clock_ns=clock_b)  # fmt: skip
    return {"a": tmp / "a", "b": tmp / "b", "truth_a": a, "truth_b": b}


def _records(root: Path | str, **kw: Any) -> Counter[tuple[str, int | None]]:
    """(run_id, feed) -> records, over every file of the capture."""
    out: Counter[tuple[str, int | None]] = Counter()
    listing = list_capture_files(root, kw.get("storage"))
    for f in listing.files:
        handle = pq.ParquetFile(str(f.path), filesystem=listing.filesystem)
        t = handle.read(columns=["run_id", "feed"])
        out.update(zip(t.column("run_id").to_pylist(), t.column("feed").to_pylist(), strict=True))
    return out


def test_the_merge_finds_the_offset_and_reports_each_sources_coverage_and_the_gap(
    tmp_path: Path,
) -> None:
    h = _hosts(tmp_path)
    report = merge_captures(h["a"], h["b"], tmp_path / "m")
    assert report.offset.offset_ns == SHIFT  # every trade 1 ms late on both: the clocks only
    assert report.offset.evidence.mad_ns == 0
    a, b = report.sources
    # B's connections, moved onto A's clock, are when they truly were.
    assert [c.interval for c in a.connections] == h["truth_a"][A1] + h["truth_a"][A2]
    assert [c.interval for c in b.connections] == h["truth_b"][B1]
    assert [c.closed for c in a.connections] == [False, True]
    b_close, a_open = h["truth_b"][B1][1][1], h["truth_a"][A2][0][0]
    assert report.gaps == [(b_close, a_open)]
    assert (b_close, a_open) == (s(11), s(12))
    assert report.covered == [(s(0), s(11)), (s(12), s(20))]
    expected = Counter({(run, 0): n for (run, _), n in _records(h["a"]).items()})
    expected.update({(run, 1): n for (run, _), n in _records(h["b"]).items()})
    assert _records(tmp_path / "m") == expected
    verified = verify_capture(tmp_path / "m")
    assert not verified.corrupt and verified.feeds == [0, 1] and not verified.misfiled
    assert sorted(Capture(tmp_path / "m").runs) == sorted([A1, A2, B1])


def test_the_report_as_json_and_as_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = _hosts(tmp_path)
    argv = ["merge", str(h["a"]), str(h["b"]), "--to", str(tmp_path / "m"), "--format", "json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["offset"] | {"p5_ns": 0, "p95_ns": 0} == {
        "offset_ns": SHIFT, "source": "trades", "trades_a": 36, "trades_b": 16, "matches": 14,
        "median_ns": SHIFT, "p5_ns": 0, "p95_ns": 0, "mad_ns": 0, "min_ns": SHIFT,
        "max_ns": SHIFT,
    }  # fmt: skip
    assert [s_["feed"] for s_ in data["sources"]] == [0, 1]
    assert data["sources"][1]["shift_ns"] == -SHIFT
    assert data["gaps"] == [{"start": "2026-11-21T08:00:11.000Z", "end": "2026-11-21T08:00:12.000Z",
                             "start_ns": s(11), "end_ns": s(12), "duration_s": 1.0}]  # fmt: skip
    assert data["gaps_s"] == 1.0 and data["covered_s"] == 19.0
    assert data["records"] == sum(_records(tmp_path / "m").values())
    assert err.startswith("merge: ") and "1 gap(s) covered by neither (1.000 s)" in err
    assert main(["merge", str(h["a"]), str(h["b"]), "--to", str(tmp_path / "m2"),
                 "--report", str(tmp_path / "r.txt")]) == 0  # fmt: skip
    out, _ = capsys.readouterr()
    assert out == ""
    text = (tmp_path / "r.txt").read_text()
    assert "B's clock offset: +250.000 ms (B's clock ahead of A's), the median over 14" in text
    assert "gaps (covered by neither): 1, 1.000 s in all" in text
    assert "2026-11-21T08:00:11.000Z .. 2026-11-21T08:00:12.000Z" in text


def test_rows_moved_across_midnight_land_in_their_dates_partition_even_from_compacted_files(
    tmp_path: Path,
) -> None:
    """B's clock is 3 s ahead around midnight: its records of the last seconds of the day
    were filed under the next day; on A's clock they belong to the day before. One of
    B's segments spans midnight, and the first day's files are compacted (so a
    compacted file and a plain one hold that segment)."""
    trades = exchange_trades(-8, 8, 0.25)
    record_host(tmp_path / "a", [Run("20261121T235950Z-aaaaaaaa", (Conn(-8, 8),))], trades,
                delay_s=0.001, base_ns=MIDNIGHT)  # fmt: skip
    record_host(tmp_path / "b", [Run("20261121T235952Z-bbbbbbbb", (Conn(-7, 7),))], trades,
                delay_s=0.001, base_ns=MIDNIGHT, clock_ns=3_000_000_000,
                segment_every=10)  # fmt: skip
    for channel in ("trade", "ticker", "_session", "_control"):
        compact(tmp_path / "b", f"channel={channel}/date=2026-11-21", min_age_s=0,
                delete_grace_s=0)  # fmt: skip
    before = _records(tmp_path / "b")
    report = merge_captures(tmp_path / "a", tmp_path / "b", tmp_path / "m")
    assert report.offset.offset_ns == 3_000_000_000
    after = _records(tmp_path / "m")
    assert after[("20261121T235952Z-bbbbbbbb", 1)] == sum(before.values())
    verified = verify_capture(tmp_path / "m")
    assert not verified.corrupt and not verified.misfiled and verified.duplicate_count == 0

    def first_day_rows(root: Path) -> int:
        return sum(pq.ParquetFile(f.path).metadata.num_rows
                   for f in list_capture_files(root).files
                   if f.run_id.endswith("bbbbbbbb") and f.date == "2026-11-21")  # fmt: skip

    # B's records of 23:59:57-24:00:00 on A's clock, filed under the next day by B's host.
    moved = first_day_rows(tmp_path / "m") - first_day_rows(tmp_path / "b")
    assert moved >= 3 * 2 * 4  # 3 s of a trade and a ticker every 0.25 s, at least


def test_a_given_offset_is_applied_as_given_and_checked_against_the_trades(
    tmp_path: Path,
) -> None:
    h = _hosts(tmp_path)
    report = merge_captures(h["a"], h["b"], tmp_path / "m", offset_ns=0)
    assert report.offset.source == "given" and report.offset.offset_ns == 0
    assert report.offset.evidence.median_ns == SHIFT
    assert any("--offset-ns 0 is outside what the 14 trades" in w for w in report.warnings)
    b_first = report.sources[1].connections[0]
    assert b_first.start_ns == h["truth_b"][B1][0][0] + SHIFT  # left on B's own clock
    # Without common trades, a given offset is all there is.
    other = _hosts(tmp_path / "x", trades_b=1)
    alone = merge_captures(other["a"], other["b"], tmp_path / "m2", offset_ns=SHIFT)
    assert alone.offset.evidence.matches == 0 and alone.warnings == []


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_inputs_that_cannot_be_merged_are_one_line_and_exit_2_leaving_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = _hosts(tmp_path / "h")
    other = _hosts(tmp_path / "o", trades_b=1)
    shutil.copytree(h["a"], tmp_path / "a-copy")
    (tmp_path / "link").symlink_to(h["a"])
    c_run = Run("20261121T080030Z-ccccccc1", (Conn(0, 5),))
    record_host(tmp_path / "c", [c_run], exchange_trades(0, 5, 0.5))
    assert main(["merge", str(h["a"]), str(h["b"]), "--to", str(tmp_path / "merged")]) == 0
    capsys.readouterr()
    cases = [
        ([str(h["a"]), str(tmp_path / "link")], "ROOT_B: " + str(tmp_path / "link") +
         " is the same capture as ROOT_A (give the capture the other host recorded)"),
        ([str(h["a"]), str(tmp_path / "a-copy")], f"ROOT_B: run {A1} and 1 more is in both"),
        ([str(other["a"]), str(other["b"])], "ROOT_B: no trade of " + str(other["b"]) +
         " (16) is one of " + str(other["a"]) + " (36), so B's clock offset cannot be "
         "estimated: different markets, or times that do not overlap (give the offset with "
         "--offset-ns N"),
        ([str(tmp_path / "merged"), str(tmp_path / "c")], "ROOT_A: " + str(tmp_path / "merged") +
         " holds records of feed 1: it is a capture of redundant feeds already"),
        ([str(h["a"]), str(tmp_path / "nope")], "ROOT_B: capture root '" + str(tmp_path / "nope")
         + "' does not exist"),
    ]  # fmt: skip
    for roots, says in cases:
        before = sorted(p.name for p in tmp_path.iterdir())
        status = main(["merge", *roots, "--to", str(tmp_path / "out")])
        _, err = capsys.readouterr()
        assert status == 2, err
        line = _one_line(err)
        assert line.startswith("kalshi-tape: error: ") and says in line, line
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary
    refused = [
        (tmp_path / "merged", f"--to: {tmp_path / 'merged'} already exists (the merge writes"),
        (h["b"] / "inside", f"--to: {h['b'] / 'inside'} is inside ROOT_B"),
    ]
    for to, says in refused:
        status = main(["merge", str(h["a"]), str(h["b"]), "--to", str(to)])
        line = _one_line(capsys.readouterr().err)
        assert status == 2 and says in line, line
    assert not (h["b"] / "inside").exists()


def test_an_interrupted_merge_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _hosts(tmp_path / "h")
    calls = []

    def encode_then_stop(table: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(table)

    real = merge_api.encode
    monkeypatch.setattr(merge_api, "encode", encode_then_stop)
    status = main(["merge", str(h["a"]), str(h["b"]), "--to", str(tmp_path / "m"),
                   "--report", str(tmp_path / "r.json")])  # fmt: skip
    assert status == 130
    assert _one_line(capsys.readouterr().err).endswith("interrupted (Ctrl+C)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h"]


def test_a_journal_not_yet_published_is_named_in_the_report(tmp_path: Path) -> None:
    h = _hosts(tmp_path)
    journal = h["b"] / "_journal"
    journal.mkdir()
    (journal / f"{B1}-00000007.seg").write_bytes(b"")
    report = merge_captures(h["a"], h["b"], tmp_path / "m")
    (warning,) = report.warnings
    assert warning.startswith(f"ROOT_B {h['b']}: its journal holds 1 segment(s) not yet published")


def test_roots_and_the_merged_capture_on_object_storage(tmp_path: Path, s3: S3Server) -> None:
    h = _hosts(tmp_path)
    root_b = s3.upload(h["b"], s3.new_root("merge-b"))
    to = s3.new_root("merge-to", prefix="merged")
    report = merge_captures(h["a"], root_b, to, storage=s3.options)
    assert report.offset.offset_ns == SHIFT and report.gaps == [(s(11), s(12))]
    keys = s3.keys(to)
    assert keys and all(k.startswith("channel=") for k in keys)
    merged = _records(to, storage=s3.options)
    assert sum(merged.values()) == sum(_records(h["a"]).values()) + sum(_records(h["b"]).values())
    assert sorted(Capture(to, storage=s3.options).runs) == sorted([A1, A2, B1])
    with pytest.raises(Exception, match="already holds objects"):
        merge_captures(h["a"], root_b, to, storage=s3.options)


async def test_a_replay_of_the_merged_capture_delivers_each_trade_once(tmp_path: Path) -> None:
    """A received 36 of the exchange's 40 trades, B 16, two of them (10.0 s, 10.5 s)
    while A was down: the merged capture holds 38, and a replay delivers each once."""
    h = _hosts(tmp_path)
    merge_captures(h["a"], h["b"], tmp_path / "m")
    got: list[str] = []
    session = ReplaySession(tmp_path / "m", channels=["trade"])

    @session.on("trade")
    def on_trade(message: Any) -> None:
        got.append(message.msg.trade_id)

    async with session:
        await session.run_forever()
    assert len(got) == len(set(got)) == 38
