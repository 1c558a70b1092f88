"""The report page: one HTML file with plotly.js, the data, the style and the script inlined.

`render_report` assembles the page from `ReportData`: the header and tables as HTML
(`replay.report.tables`), every chart as a plotly figure spec (`replay.report.figures`)
in one JSON block, the per-market figures in another, and the page script
(`replay.report.assets`) that draws them, redraws the book chart when another market
is chosen, and moves the timeline to a gap or an arbitration move when its row is
clicked. A capture of several feeds gets a Feeds section after the timeline (one feed:
no trace of feeds anywhere on the page). plotly.js comes from the plotly package
itself, inlined once: the file needs no network and no server.
When every chart has drawn, `<body data-ready="1">` and the `report-ready`
performance mark are set (the browser tests and the load-time bench wait for them).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from replay.report import figures, tables
from replay.report.assets import SCRIPT, STYLE
from replay.report.gather import ReportData, iso_ms

__all__ = ["plotly_js", "render_report", "write_report"]


def plotly_js() -> str:
    """The plotly.js bundle shipped in the plotly package (no network)."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def _json_block(element_id: str, value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=_plain)
    text = text.replace("</", "<\\/")  # never ends the script element early
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return float(value)  # Decimal and numpy scalars


def _clean(value: Any) -> Any:
    """NaN and infinities (no JSON for them) as null, all the way down."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def render_report(data: ReportData, *, library_js: str | None = None) -> str:
    """The report as one HTML document (pass `library_js` to reuse a loaded bundle)."""
    figs = _clean(figures.figures(data))
    markets = _clean({m: figures.market_figure(data, m) for m in data.markets.get("data", {})})
    title = f"kalshi-tape report: {data.root}"
    body = "\n".join(
        part
        for part in [
            tables.header(data),
            _section("timeline", "Connection timeline", tables.connections(data),
                     chart="timeline-chart"),
            _section("feeds", "Feeds", tables.feeds(data)) if data.feeds else "",
            _section("rates", "Frame rates", tables.rates_note(data), chart="rates-chart"),
            _section("latency", "Latency", tables.latency(data),
                     chart="latency-hist", chart2="latency-time"),
            _section("gaps", "Sequence gaps", tables.gaps(data)),
            _section("market", "Per market", tables.market_picker(data), chart="market-chart"),
            _section("storage", "Storage", tables.storage(data), chart="storage-chart"),
        ]
        if part
    )  # fmt: skip
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f'<meta name="generator" content="kalshi-tape report"><style>{STYLE}</style>'
        f"<script>{library_js if library_js is not None else plotly_js()}</script></head>"
        f'<body data-ready="0"><main><h1>{html.escape(title)}</h1>'
        f'<p class="sub">{html.escape(iso_ms(data.window.start_ms))} to '
        f"{html.escape(iso_ms(data.window.end_ms))}"
        f"{' (narrowed by --start / --end)' if data.window.narrowed else ''}</p>"
        f"{_nav(data)}{body}</main>"
        f"{_json_block('report-figures', figs)}{_json_block('report-markets', markets)}"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def _nav(data: ReportData) -> str:
    links = [("header", "Summary"), ("timeline", "Timeline"), ("rates", "Rates"),
             ("latency", "Latency"), ("gaps", "Gaps"), ("market", "Per market"),
             ("storage", "Storage")]  # fmt: skip
    if data.feeds:
        links.insert(2, ("feeds", "Feeds"))
    return "<nav>" + " ".join(f'<a href="#{a}">{t}</a>' for a, t in links) + "</nav>"


def _section(
    section_id: str, title: str, content: str, *, chart: str | None = None,
    chart2: str | None = None,
) -> str:  # fmt: skip
    charts = "".join(f'<div class="chart" id="{c}"></div>' for c in (chart, chart2) if c)
    if section_id == "market":  # the picker above the chart it redraws
        return f'<section id="{section_id}"><h2>{title}</h2>{content}{charts}</section>'
    return f'<section id="{section_id}"><h2>{title}</h2>{charts}{content}</section>'


def write_report(
    data: ReportData, output: str | os.PathLike[str], *, library_js: str | None = None
) -> int:
    """Write the page to `output` (replacing it); the number of bytes written."""
    text = render_report(data, library_js=library_js).encode()
    Path(output).write_bytes(text)
    return len(text)
