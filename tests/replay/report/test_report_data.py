"""What `gather_report` reads from a capture, and the page it makes, without a browser."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import replay
from replay.report import gather_report, render_report
from replay.report.window import MAX_BUCKETS, Window
from tests.replay.capture_factory import BASE_NS

from .report_capture import ExpectedReport

S = 1_000_000_000


@pytest.fixture(scope="module")
def data(expected: ExpectedReport):
    return gather_report(expected.root)


def test_connections_carry_what_the_timeline_draws(data, expected: ExpectedReport) -> None:
    conns = {c["conn"]: c for c in data.connections}
    assert [(c["conn"], c["close_code"]) for c in data.connections] == list(expected.connections)
    assert conns[1]["initiator"] == "server" and not conns[1]["planned"]
    assert conns[2]["reconnect_delay_s"] == pytest.approx(0.25)
    assert conns[2]["planned"] and conns[2]["switched_to"] == 3
    assert conns[3]["standby"] and conns[3]["overlap_s"] > 0
    assert conns[1]["overlap_s"] == conns[2]["overlap_s"] == 0
    for c in data.connections:
        assert c["open_ms"] < c["close_ms"]
    (run,) = data.runs
    assert run["clean_stop"] and run["connections"] == 3


def test_gaps_have_their_market_and_how_they_recovered(data, expected: ExpectedReport) -> None:
    assert [(g["channel"], g["kind"], g["seq"]) for g in data.gaps] == list(expected.gaps)
    assert data.gaps_total == len(expected.gaps)
    book_gap, trade_gap, duplicate = data.gaps
    assert book_gap["how"] == "get_snapshot, then a snapshot" and book_gap["recovery_s"] > 0
    assert trade_gap["how"].startswith("not resyncable") and trade_gap["missing"] == 2
    assert duplicate["how"] == "duplicate dropped"
    assert {g["market"] for g in data.gaps} <= set(expected.markets)


def test_rates_count_every_frame_received(data, expected: ExpectedReport) -> None:
    rates = data.rates
    con = replay.connect(expected.root)
    counts = dict(
        con.execute(
            "SELECT channel, count(*) FROM frames WHERE dir = 'in' AND "
            "channel NOT IN ('_session', '_checkpoint') GROUP BY 1"
        ).fetchall()
    )
    con.close()  # fmt: skip
    got = {ch: round(sum(v) * rates["bucket_s"]) for ch, v in rates["channels"].items()}
    assert got == counts
    assert len(rates["t"]) == len(next(iter(rates["channels"].values())))


def test_latency_and_the_book_chart_data(data, expected: ExpectedReport) -> None:
    lat = data.latency
    assert set(lat["channels"]) == {"orderbook_delta", "trade", "ticker"}
    for c in lat["channels"].values():
        assert sum(c["hist"]) == c["count"] and c["p50"] <= c["p99"]
    markets = data.markets
    assert markets["chosen"] == sorted(expected.markets, key=markets["chosen"].index)
    assert set(markets["chosen"]) == set(expected.markets)
    book = markets["data"][expected.markets[0]]
    assert book["t"] == sorted(book["t"]) and len(book["t"]) > 10
    assert all(b < a for b, a in zip(book["bid"], book["ask"], strict=True) if b and a)
    # invalid while the book sat between the gap and its resync, and at the disconnect
    close_1 = data.connections[0]["close_ms"]
    assert any(a <= close_1 <= b for a, b in book["invalid"])
    gap = data.gaps[0]["gap_ms"]
    assert any(a <= gap <= b for a, b in book["invalid"])
    assert book["trades"]["total"] == len(book["trades"]["t"]) > 0


def test_storage_and_header(data, expected: ExpectedReport) -> None:
    assert {p["channel"] for p in data.storage} == {c["channel"] for c in data.header["channels"]}
    assert all(p["state"] == "single file" and p["files"] == 1 for p in data.storage)
    assert data.header["frames"] == sum(c["frames"] for c in data.header["channels"])
    assert data.header["markets"] == 2 and data.verify["verdict"] == "OK"
    assert data.header["compression"] > 1


def test_a_narrowed_range_keeps_what_it_touches(expected: ExpectedReport) -> None:
    start = BASE_NS + 3600 * S + 5 * S  # inside conn 2
    data = gather_report(expected.root, start_ns=start, end_ns=start + 2 * S)
    assert data.window.narrowed
    assert [c["conn"] for c in data.connections] == [2]
    assert data.gaps == [] and data.gaps_total == 0
    assert all(start / 1e6 <= t < (start + 2 * S) / 1e6 for t in data.rates["t"])


def test_the_page_is_one_self_contained_file(data) -> None:
    page = render_report(data, library_js="/* plotly.js */")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert "https://" not in page.split("/* plotly.js */")[1].split("<script>")[0]
    assert page.count('id="report-figures"') == 1 and page.count('id="market-select"') == 1
    full = render_report(data)
    assert len(full) < 6_000_000  # plotly.js (~4.8 MB) plus the data


def test_buckets_stay_bounded() -> None:
    day = Window(0, 86_400 * S)
    assert day.bucket_ns == 60 * S and 86_400 * S / day.bucket_ns <= MAX_BUCKETS
    assert Window(0, 61 * S).bucket_ns == S
    week = Window(0, 7 * 86_400 * S)
    assert 7 * 86_400 * S / week.bucket_ns <= MAX_BUCKETS


def test_importing_replay_loads_no_plotly() -> None:
    code = ("import sys, replay, replay.report; replay.report.__all__;"
            "print(sorted(m for m in ('plotly', 'duckdb') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[3])  # fmt: skip
    assert out.stdout.strip() == "[]"
