"""The report of a capture of two feeds: a timeline lane per feed, and the Feeds section.

Two captures: `feeds_capture` (built record by record, every time known: the numbers
are exact) and one recorded by `kalshi-tape record --sim --feeds 2` with both feeds'
first connections dropped at once (the numbers are checked against the capture's own
SQL views). The pages are opened in Debian's Chromium (conftest.py). A capture of one
feed (`report_capture`) must show no trace of feeds.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import replay
from replay.report.assets import SCRIPT, STYLE
from replay.report.feeds import summarise
from replay.report.figures import figures
from replay.report.gather import ReportData, gather_report
from replay.report.page import render_report, write_report
from replay.report.window import Window

from .conftest import OpenedReport
from .feeds_capture import T0, ExpectedFeeds, S, build_feeds_capture

pytestmark = pytest.mark.timeout(180)
T0_MS = T0 / 1e6
RECORD = [sys.executable, "-m", "kalshi_tape", "record", "--no-progress"]


def _ms(seconds: float) -> float:
    return T0_MS + seconds * 1e3


def _view(root: Path, sql: str) -> list[tuple[Any, ...]]:
    con = replay.connect(root)
    try:
        rows: list[tuple[Any, ...]] = con.execute(sql).fetchall()
        return rows
    finally:
        con.close()


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> ExpectedFeeds:
    return build_feeds_capture(tmp_path_factory.mktemp("feeds") / "capture")


@pytest.fixture(scope="module")
def fdata(fx: ExpectedFeeds) -> ReportData:
    return gather_report(fx.root)


@pytest.fixture(scope="module")
def feeds_html(fdata: ReportData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("feeds-report") / "report.html"
    write_report(fdata, out)
    return out


@pytest.fixture
def fpage(feeds_html: Path, chromium: Any) -> Iterator[OpenedReport]:
    report = OpenedReport(chromium, feeds_html)
    yield report
    report.page.close()


@pytest.fixture(scope="module")
def fshared(feeds_html: Path, chromium: Any) -> Iterator[OpenedReport]:
    """The feeds report opened once for the tests that only read it (an element's
    screenshot neither resizes nor redraws the page); a click takes `fpage`."""
    report = OpenedReport(chromium, feeds_html)
    yield report
    report.page.close()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two feeds of the simulated exchange; both first connections drop after 1.5 s."""
    root = tmp_path_factory.mktemp("recorded") / "d"
    done = subprocess.run([*RECORD, "--sim", "--feeds", "2", "--duration", "4s", "--root",
                           str(root), "--sim-fault", "drop@every=1.5s,conn=1+2"],
                          capture_output=True, text=True, timeout=90, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return root


# -- the data -------------------------------------------------------------------------


def test_each_feed_has_its_records_connections_and_time_connected(
    fdata: ReportData, fx: ExpectedFeeds
) -> None:
    f = fdata.feeds
    rows = {r["feed"]: r for r in f["feeds"]}
    assert list(rows) == [0, 1]
    assert {k: r["records"] for k, r in rows.items()} == fx.records
    view = dict(_view(fx.root, "SELECT feed, count(*) FROM frames GROUP BY 1"))
    assert view == fx.records
    assert {k: r["connections"] for k, r in rows.items()} == {0: 2, 1: 2}
    assert {k: r["connected_s"] for k, r in rows.items()} == fx.connected_s
    assert {k: r["down_s"] for k, r in rows.items()} == fx.down_s
    assert f["span_ms"] == [_ms(0), _ms(6)]
    assert f["all_down_s"] == 0.5 and f["all_down_count"] == 1
    assert f["all_down"] == [[_ms(a), _ms(b)] for a, b in fx.all_down]


def test_the_arbitration_moves_are_listed_counted_and_marked(
    fdata: ReportData, fx: ExpectedFeeds
) -> None:
    moves = fdata.feeds["moves"]
    got = [(m["market"], m["from_feed"], m["to_feed"], m["reason"], m["t_ms"])
           for m in moves["list"]]  # fmt: skip
    assert got == [(m, a, b, r, _ms(t)) for m, a, b, r, t in fx.moves]
    assert moves["counts"] == {"total": 6, "moved": 2, "lost": 2, "regained": 2}
    # one mark per batch: both markets at once, each time
    marks = [(m["t_ms"], m["from_feed"], m["to_feed"], m["markets"]) for m in moves["marks"]]
    assert marks == [(_ms(2), 0, 1, 2), (_ms(3), 1, None, 2), (_ms(3.5), None, 1, 2)]


def test_connections_know_their_feed_and_reconnect_within_it(
    fdata: ReportData, fx: ExpectedFeeds
) -> None:
    assert {c["conn"]: c["feed"] for c in fdata.connections} == fx.conn_feed
    view = dict(_view(fx.root, "SELECT conn, feed FROM connections"))
    assert view == fx.conn_feed
    # conn 2 opened while conn 1 (the other feed) was open: not a make-before-break
    assert all(c["overlap_s"] == 0 for c in fdata.connections)
    delays = {c["conn"]: c["reconnect_delay_s"] for c in fdata.connections}
    assert delays == {1: None, 2: None, **fx.reconnect_delay_s}


def test_the_timeline_figure_has_a_lane_per_feed(fdata: ReportData, fx: ExpectedFeeds) -> None:
    fig = figures(fdata)["timeline-chart"]
    traces = {t["name"]: t for t in fig["data"]}
    bars = traces["connection"]
    lanes = {c[0]: y for c, y in zip(bars["customdata"], bars["y"], strict=True)}
    assert lanes == {conn: f"feed {feed}" for conn, feed in fx.conn_feed.items()}
    order = fig["layout"]["yaxis"]["categoryarray"][::-1]  # top down
    assert order == [fdata.runs[0]["run_id"][-8:] + " window", "feed 0", "feed 1",
                     "both feeds down"]  # fmt: skip
    down = traces["both feeds down"]
    assert down["base"] == [_ms(3)] and down["x"] == [pytest.approx(500.0)]
    moves = traces["arbitration move"]
    assert moves["y"] == ["feed 1", "both feeds down", "feed 1"]


def _conn(run: str, conn: int, feed: int, a: float, b: float, **kw: Any) -> dict[str, Any]:
    return {"run_id": run, "conn": conn, "feed": feed, "open_ms": a, "close_ms": b,
            "closed": True, "opened": True, "frames_in": 1, "frames_out": 0} | kw  # fmt: skip


def test_summarise_counts_intervals_as_merge_does() -> None:
    window = Window(0, 100 * S)  # 0 .. 100 000 ms
    runs = [{"run_id": "r", "end_ms": 90_000.0}]
    conns = [
        _conn("r", 1, 0, 10_000, 30_000),
        _conn("r", 2, 0, 25_000, 40_000),  # overlaps conn 1: counted once
        _conn("r", 3, 1, 20_000, 50_000, closed=False),  # never closed: to the run's end
        _conn("r", 4, 2, 60_000, 60_000, opened=False, frames_in=0),  # never connected
        _conn("r", 5, 2, 95_000, 120_000),  # cut at the window's end
    ]
    s = summarise(window, runs, conns, {0: 5, 1: 7, 2: 9})
    rows = {r["feed"]: r for r in s["feeds"]}
    assert {k: r["connected_s"] for k, r in rows.items()} == {0: 30.0, 1: 70.0, 2: 5.0}
    assert {k: r["connections"] for k, r in rows.items()} == {0: 2, 1: 1, 2: 2}
    assert s["span_ms"] == [10_000, 100_000]
    assert {k: r["down_s"] for k, r in rows.items()} == {0: 60.0, 1: 20.0, 2: 85.0}
    assert s["all_down"] == [[90_000, 95_000]] and s["all_down_s"] == 5.0


def test_a_recorded_two_feed_capture(recorded: Path) -> None:
    data = gather_report(recorded)
    f = data.feeds
    rows = {r["feed"]: r for r in f["feeds"]}
    assert list(rows) == [0, 1]
    by_feed = dict(_view(recorded, "SELECT COALESCE(feed, 0), count(*) FROM frames GROUP BY 1"))
    assert {k: r["records"] for k, r in rows.items()} == by_feed
    conns = _view(recorded, "SELECT feed, epoch_us(open_time) / 1e3, epoch_us(close_time) / 1e3 "
                            "FROM connections WHERE opened ORDER BY feed, open_time")  # fmt: skip
    for feed in (0, 1):
        mine = [(a, b) for g, a, b in conns if g == feed]
        assert rows[feed]["connections"] == len(mine) >= 2  # the drop, and the reconnect
        assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(mine))
        assert rows[feed]["connected_s"] == pytest.approx(sum(b - a for a, b in mine) / 1e3,
                                                          abs=0.002)  # fmt: skip
    # Both first connections dropped together: both feeds were down until one came back.
    assert f["all_down_s"] > 0 and f["all_down_count"] >= 1
    for a, b in f["all_down"]:
        assert not any(o < (a + b) / 2 < c for _, o, c in conns)  # no connection open
        assert any(abs(c - a) < 1 for _, _, c in conns)  # it began at a close
        assert any(abs(o - b) < 1 for _, o, _ in conns)  # and ended at an open
    assert f["all_down_s"] <= min(r["down_s"] for r in rows.values())
    counts = _view(recorded, "SELECT count(*), count(*) FILTER (WHERE detail->>'to_feed' IS NULL), "
                             "count(*) FILTER (WHERE detail->>'from_feed' IS NULL) FROM events "
                             "WHERE type = 'arbitrate'")[0]  # fmt: skip
    moves, n = f["moves"], f["moves"]["counts"]
    assert (n["total"], n["lost"], n["regained"]) == counts
    assert n["regained"] > 0  # books valid again after both were down
    assert sum(m["markets"] for m in moves["marks"]) == counts[0]


def test_a_capture_of_one_feed_shows_no_feeds(expected: Any) -> None:
    data = gather_report(expected.root)
    assert data.feeds == {}
    fig = figures(data)["timeline-chart"]
    assert [t["name"] for t in fig["data"]] == ["capture window", "connection",
                                                 "make-before-break overlap", "close"]  # fmt: skip
    assert "categoryarray" not in fig["layout"]["yaxis"]
    page = render_report(data, library_js="").replace(STYLE, "").replace(SCRIPT, "")
    assert "feed" not in page.lower()


# -- in the browser -----------------------------------------------------------------

_LANES = """() => {
  const el = document.getElementById('timeline-chart');
  const ticks = {};
  el.querySelectorAll('.ytick text').forEach(t => {
    const r = t.getBoundingClientRect(); ticks[t.textContent] = (r.top + r.bottom) / 2;
  });
  const bars = [];  // every drawn bar: its trace, its point's customdata, its centre
  el.querySelectorAll('.barlayer .trace').forEach(g => {
    const trace = g.__data__[0].trace;
    g.querySelectorAll('.point').forEach((p, i) => {
      const r = p.getBoundingClientRect();
      bars.push({name: trace.name, data: (trace.customdata || [])[p.__data__.i ?? i],
                 y: (r.top + r.bottom) / 2, left: r.left, right: r.right, width: r.width});
    });
  });
  return {ticks, bars};
}"""


def test_the_timeline_draws_each_feed_on_its_own_lane(
    fshared: OpenedReport, fx: ExpectedFeeds, tmp_path: Path
) -> None:
    assert fshared.errors == [] and fshared.outside == []
    drawn = fshared.js(_LANES)
    ticks = drawn["ticks"]
    assert {"feed 0", "feed 1", "both feeds down"} <= set(ticks)
    assert ticks["feed 0"] < ticks["feed 1"] < ticks["both feeds down"]  # top down
    conns = [b for b in drawn["bars"] if b["name"] == "connection"]
    assert sorted(b["data"][0] for b in conns) == sorted(fx.conn_feed)
    for bar in conns:  # each connection's bar sits on its feed's lane
        lane = f"feed {fx.conn_feed[bar['data'][0]]}"
        assert abs(bar["y"] - ticks[lane]) < 3, (bar, ticks)
    (down,) = [b for b in drawn["bars"] if b["name"] == "both feeds down"]
    assert abs(down["y"] - ticks["both feeds down"]) < 3
    # the both-down bar spans from conn 2's close to conn 3's open, on screen
    by_conn = {b["data"][0]: b for b in conns}
    assert abs(down["left"] - by_conn[2]["right"]) < 2
    assert abs(down["right"] - by_conn[3]["left"]) < 2
    assert down["width"] > 20
    diamonds = fshared.js("[...document.querySelectorAll('#timeline-chart .scatterlayer .trace')]"
                        ".filter(g => g.__data__[0].trace.name === 'arbitration move')"
                        ".map(g => g.querySelectorAll('.point').length)")  # fmt: skip
    assert diamonds == [3]  # the arbitration batches, drawn
    fshared.page.locator("#timeline").screenshot(path=str(tmp_path / "feeds-timeline.png"))
    print(f"screenshot: {tmp_path / 'feeds-timeline.png'}")


def test_the_feeds_section_shows_the_numbers(
    fshared: OpenedReport, fx: ExpectedFeeds, tmp_path: Path
) -> None:
    page = fshared.page
    assert page.locator("#feeds").is_visible()
    assert page.locator("nav a[href='#feeds']").is_visible()
    cells = fshared.js("[...document.querySelectorAll('#feeds-table tbody tr')].map(r => "
                     "[r.dataset.feed, ...[...r.cells].map(c => c.textContent)])")  # fmt: skip
    assert cells == [
        ["0", "0", f"{fx.records[0]:,}", "2", "4.000", "2.000", "66.7%"],
        ["1", "1", f"{fx.records[1]:,}", "2", "5.500", "0.500", "91.7%"],
    ]
    down = page.locator("#all-down")
    assert down.is_visible() and down.get_attribute("data-seconds") == "0.5"
    assert "Both feeds down at once: 0.500 s in 1 interval" in down.inner_text()
    assert fshared.js("[...document.querySelectorAll('#feeds-down tbody tr')].map(r => "
                    "r.cells[2].textContent)") == ["0.500"]  # fmt: skip
    assert page.locator("#arbitration").get_attribute("data-moves") == "6"
    text = page.locator("#arbitration").inner_text()
    assert "6 arbitration moves" in text and "2 to another feed" in text
    rows = fshared.js("[...document.querySelectorAll('#moves-table tbody tr')].map(r => "
                    "[...r.cells].slice(1).map(c => c.textContent))")  # fmt: skip
    feed = {None: "none", 0: "feed 0", 1: "feed 1"}
    assert rows == [[m, feed[a], feed[b], r] for m, a, b, r, _ in fx.moves]
    assert page.locator("#moves-table").is_visible()
    # the connections table says each connection's feed
    feeds = fshared.js("[...document.querySelectorAll('#connections tbody tr')].map(r => "
                     "[Number(r.dataset.conn), Number(r.cells[2].textContent)])")  # fmt: skip
    assert dict(feeds) == fx.conn_feed
    page.locator("#feeds").screenshot(path=str(tmp_path / "feeds-section.png"))
    print(f"screenshot: {tmp_path / 'feeds-section.png'}")


def test_clicking_a_move_moves_the_timeline_to_it(fpage: OpenedReport) -> None:
    row = "#moves-table tbody tr:nth-child(3)"
    t = float(fpage.js(f"document.querySelector('{row}').dataset.t"))
    assert t == _ms(3)
    fpage.page.click(f"{row} a.goto")
    fpage.page.wait_for_function("document.getElementById('timeline-chart').dataset.focus")
    assert float(fpage.js("document.getElementById('timeline-chart').dataset.focus")) == t
    assert fpage.page.locator(f"{row}.focused").count() == 1
    assert fpage.errors == []


def test_a_recorded_capture_draws_its_feed_lanes(
    recorded: Path, chromium: Any, tmp_path: Path
) -> None:
    out = tmp_path / "recorded.html"
    write_report(gather_report(recorded), out)
    opened = OpenedReport(chromium, out)
    try:
        assert opened.errors == []
        drawn = opened.js(_LANES)
        assert {"feed 0", "feed 1", "both feeds down"} <= set(drawn["ticks"])
        feed_of = dict(_view(recorded, "SELECT conn, feed FROM connections"))
        conns = [b for b in drawn["bars"] if b["name"] == "connection"]
        assert len(conns) == len(feed_of)
        for bar in conns:
            assert abs(bar["y"] - drawn["ticks"][f"feed {feed_of[bar['data'][0]]}"]) < 3
        assert [b for b in drawn["bars"] if b["name"] == "both feeds down"]
        assert opened.page.locator("#feeds-table").is_visible()
        total = _view(recorded, "SELECT count(*) FROM events WHERE type = 'arbitrate'")[0][0]
        assert opened.page.locator("#arbitration").get_attribute("data-moves") == str(total)
        opened.screenshot(tmp_path, "recorded-feeds.png")
    finally:
        opened.page.close()


def test_a_capture_of_one_feed_draws_no_feed(shared: OpenedReport) -> None:
    assert shared.page.locator("#feeds").count() == 0
    assert shared.page.locator("nav a[href='#feeds']").count() == 0
    ticks = shared.js("[...document.querySelectorAll('#timeline-chart .ytick text')]"
                      ".map(t => t.textContent)")  # fmt: skip
    assert ticks and not any("feed" in t for t in ticks)
    heads = shared.js("[...document.querySelectorAll('#connections th')].map(h => h.textContent)")
    assert "feed" not in heads
