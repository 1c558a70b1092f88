"""The report opened in a real browser: Debian's Chromium, headless, through Playwright.

The page is the report of `report_capture` (three connections, a book gap with its
resync, a trade gap, a duplicate, a make-before-break rotation). Each test asserts on
what the page drew, against what the capture and its SQL views hold; screenshots go
to the test's tmp_path (the path is printed). Tests that only read the page share one
(`shared`); the others open their own (`opened`), see conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import replay
from replay.report.timeline import PLANNED_REASONS

from .conftest import OpenedReport
from .report_capture import ExpectedReport

#: The marks each chart draws (plotly's SVG classes), by the element it is drawn in.
MARKS = {
    "timeline-chart": ".barlayer .point path",
    "rates-chart": ".scatterlayer .js-line",
    "latency-hist": ".barlayer .point path",
    "latency-time": ".scatterlayer .js-line",
    "market-chart": ".scatterlayer .js-line",
    "storage-chart": ".barlayer .point path",
}


def _view(root: Path, sql: str) -> list[tuple]:
    con = replay.connect(root)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_page_opens_offline_with_no_console_error(opened: OpenedReport, tmp_path: Path) -> None:
    assert opened.errors == []
    assert opened.outside == []  # every script and style is inlined
    assert opened.js("document.querySelectorAll('script[src], link[href]').length") == 0
    assert opened.js("performance.getEntriesByName('report-ready').length") == 1
    assert opened.js("document.getElementById('verdict').dataset.verdict") == "OK"
    opened.screenshot(tmp_path, "report.png")


def test_the_timeline_shows_exactly_the_connections_with_their_close_codes(
    shared: OpenedReport, expected: ExpectedReport
) -> None:
    rows = shared.js(
        "[...document.querySelectorAll('#connections tbody tr')]"
        ".map(r => [Number(r.dataset.conn), Number(r.dataset.closeCode)])"
    )
    view = _view(expected.root, "SELECT conn, close_code FROM connections ORDER BY conn")
    assert [tuple(r) for r in rows] == list(expected.connections) == view
    bars = shared.js(
        "document.getElementById('timeline-chart').data.find(t => t.name === 'connection')"
        ".customdata.map(c => [c[0], c[1]])"
    )
    assert [tuple(b) for b in bars] == list(expected.connections)
    texts = shared.js(
        "[...document.querySelectorAll('#timeline-chart .barlayer .bartext')]"
        ".map(t => t.textContent)"
    )
    for conn, code in expected.connections:
        assert f"conn {conn} · {code}" in texts
    # conn 2 ended in a planned rotation to conn 3, which opened before it closed
    cells = shared.js(
        "[...document.querySelectorAll('#connections tbody tr')].map(r => "
        "[...r.cells].map(c => c.textContent))"
    )
    assert cells[1][9] == "to conn 3" and cells[1][7] == "0.250"
    assert float(cells[2][8]) > 0  # the overlap of make-before-break


def test_the_gap_table_lists_the_gaps_and_links_them_to_the_timeline(
    opened: OpenedReport, expected: ExpectedReport, tmp_path: Path
) -> None:
    rows = opened.js(
        "[...document.querySelectorAll('#gaps tbody tr')].map(r => "
        "[r.dataset.channel, r.dataset.kind, r.cells[7].textContent.split(' → ')[1]])"
    )
    assert [(c, k, int(s)) for c, k, s in rows] == list(expected.gaps)
    view = _view(expected.root, "SELECT channel, kind, seq FROM gaps ORDER BY gap_time, idx")
    assert [(c, k, int(s)) for c, k, s in rows] == view
    markets = opened.js("[...document.querySelectorAll('#gaps tbody tr')].map(r => r.cells[5]"
                        ".textContent)")  # fmt: skip
    assert set(markets) <= set(expected.markets)
    t = opened.js("Number(document.querySelectorAll('#gaps tbody tr')[1].dataset.t)")
    opened.page.click("#gaps tbody tr:nth-child(2) a.goto")
    opened.page.wait_for_function("document.getElementById('timeline-chart').dataset.focus")
    lo, hi = opened.js(
        "document.getElementById('timeline-chart').layout.xaxis.range"
        ".map(v => typeof v === 'number' ? v : new Date(v.replace(' ', 'T') + 'Z').getTime())"
    )
    assert lo < t < hi and hi - lo < 60_000  # zoomed in on the gap
    assert float(opened.js("document.querySelector('#gaps tr.focused').dataset.t")) == t
    opened.screenshot(tmp_path, "gap-focused.png")


def test_each_chart_drew_its_marks(shared: OpenedReport, expected: ExpectedReport) -> None:
    for chart, selector in MARKS.items():
        count = shared.js(f"document.querySelectorAll('#{chart} {selector}').length")
        assert count > 0, f"{chart} drew no {selector}"
    bars = shared.js("document.querySelectorAll('#timeline-chart .barlayer .point path').length")
    assert bars >= len(expected.connections)
    # trades as points, and the book's invalid intervals shaded
    assert shared.js("document.querySelectorAll('#market-chart .scatterlayer .point').length") > 0
    meta = shared.js("document.getElementById('market-chart').layout.meta")
    assert meta["invalid"] >= 1
    shaded = shared.js("document.querySelectorAll('#market-chart .shapelayer path').length")
    assert shaded == meta["invalid"]
    # disconnects and gaps marked on the rates chart's time axis
    names = shared.js("document.getElementById('rates-chart').data.map(t => [t.name, t.x.length])")
    marks = dict(names)
    # a close the client planned (conn 2's rotation, conn 3 at the run's end) is not a
    # disconnect: only conn 1's 1011 is; the planned ones have their own mark
    reasons = ", ".join(f"'{r}'" for r in PLANNED_REASONS)
    unplanned, planned = _view(
        expected.root,
        "SELECT count(*) FILTER (WHERE disconnect_reason "
        f"NOT IN ({reasons})), count(*) FILTER (WHERE disconnect_reason IN "
        f"({reasons})) FROM connections WHERE close_code IS NOT NULL",
    )[0]
    assert (marks["disconnect"], marks["planned close"]) == (unplanned, planned) == (1, 2)
    assert marks["gap"] == sum(1 for _, kind, _ in expected.gaps if kind != "duplicate")


def test_choosing_another_market_redraws_the_book_chart(
    opened: OpenedReport, expected: ExpectedReport, tmp_path: Path
) -> None:
    first, second = expected.markets
    chart = "document.getElementById('market-chart')"
    assert opened.js(f"{chart}.dataset.market") == first
    before = opened.js(f"{chart}.data[0].y")
    opened.page.select_option("#market-select", second)
    opened.page.wait_for_function(f"{chart}.dataset.market === {second!r}")
    assert opened.js(f"{chart}.layout.meta.market") == second
    assert opened.js(f"{chart}.data[0].y") != before
    title = opened.js("document.querySelector('#market-chart .gtitle').textContent")
    assert title.startswith(second)
    assert opened.errors == []
    opened.screenshot(tmp_path, "second-market.png")
