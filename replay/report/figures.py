"""The report's charts as plotly figure specs: plain dicts of traces and layout.

Each function takes `ReportData` (or one market's data) and returns `{"data": [...],
"layout": {...}}`, which the page hands to `Plotly.newPlot` / `Plotly.react`. Time
axes are plotly date axes fed epoch ms (shown in UTC). Every mark the page's tests
look for carries `customdata` or a trace `name` saying what it is. No plotly Python
import: the specs are JSON, so building them costs nothing next to reading the data.
"""

from __future__ import annotations

import math
from typing import Any

from replay.report.feeds import all_down_label
from replay.report.gather import ReportData, iso_ms

__all__ = ["figures", "market_figure"]

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#d62728")  # fmt: skip
_CLOSE_COLORS = {"server": "#d62728", "network": "#ff7f0e", "client": "#1f77b4"}


def _layout(data: ReportData, title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 14}},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
        "xaxis": {"type": "date", "range": [data.window.start_ms, data.window.end_ms]},
        "legend": {"orientation": "h", "y": -0.15},
        "hovermode": "closest",
        "height": 320,
    }
    layout.update(extra)
    return layout


def figures(data: ReportData) -> dict[str, dict[str, Any]]:
    """Every chart but the per-market one, by the id of the element it is drawn in."""
    return {
        "timeline-chart": timeline(data),
        "rates-chart": rates(data),
        "latency-hist": latency_histogram(data),
        "latency-time": latency_over_time(data),
        "storage-chart": storage(data),
    }


def _row(conn: dict[str, Any], by_feed: bool = False) -> str:
    """The timeline row of a connection: its run's (one feed) or its feed's (several)."""
    lane = " standby" if conn.get("lane") else ""
    return (f"feed {conn['feed']}" if by_feed else f"{conn['run_id'][-8:]}") + lane


def timeline(data: ReportData) -> dict[str, Any]:
    """A bar per connection (a row per run; overlapping ones a row below), the runs'
    capture windows behind them, overlaps and close markers. A capture of several feeds
    has a row per feed instead of per run, a row of the times every feed was down, and
    the arbitration moves marked on the row of the feed a book moved to."""
    conns, by_feed = data.connections, bool(data.feeds)
    # A bar is drawn at least 1/500 of the window wide, so a short connection on a long
    # window stays visible (its hover text gives the exact times).
    least = max(1.0, (data.window.end_ms - data.window.start_ms) / 500)
    last: dict[tuple[str, int], dict[str, Any]] = {}  # the one before, per run and feed
    for conn in conns:
        prev = last.get((conn["run_id"], conn["feed"]))
        conn["lane"] = (1 - prev.get("lane", 0)) if prev is not None and conn["overlap_s"] else 0
        last[(conn["run_id"], conn["feed"])] = conn
    rows = [_row(c, by_feed) for c in conns]
    windows = {
        "type": "bar", "orientation": "h", "name": "capture window",
        "y": [r["run_id"][-8:] + " window" for r in data.runs],
        "base": [r["start_ms"] for r in data.runs],
        "x": [max(least, r["end_ms"] - r["start_ms"]) for r in data.runs],
        "marker": {"color": "rgba(120,120,120,0.25)"},
        "customdata": [r["run_id"] for r in data.runs],
        "hovertemplate": "run %{customdata}<extra>capture window</extra>",
    }  # fmt: skip
    bars = {
        "type": "bar", "orientation": "h", "name": "connection",
        "y": rows,
        "base": [c["open_ms"] for c in conns],
        "x": [max(least, c["close_ms"] - c["open_ms"]) for c in conns],
        "marker": {"color": [_conn_color(c) for c in conns], "line": {"width": 1, "color": "#fff"}},
        "text": [f"conn {c['conn']} · {c['close_code'] if c['close_code'] is not None else '-'}"
                 for c in conns],
        "textposition": "inside", "insidetextanchor": "middle",
        "customdata": [[c["conn"], c["close_code"], c["run_id"]] for c in conns],
        "hovertext": [_conn_hover(c) for c in conns], "hoverinfo": "text",
    }  # fmt: skip
    overlaps = [(c, r) for c, r in zip(conns, rows, strict=True) if c["overlap_s"]]
    overlap = {
        "type": "bar", "orientation": "h", "name": "make-before-break overlap",
        "y": [r for _, r in overlaps], "base": [c["open_ms"] for c, _ in overlaps],
        "x": [max(least / 2, c["overlap_s"] * 1e3) for c, _ in overlaps],
        "marker": {"color": "#ff7f0e"}, "width": 0.3,
        "hovertext": [f"conn {c['conn']} overlapped the one before for {c['overlap_s']:.3f} s"
                      for c, _ in overlaps], "hoverinfo": "text",
    }  # fmt: skip
    closed = [(c, r) for c, r in zip(conns, rows, strict=True) if c["closed"]]
    closes = {
        "type": "scatter", "mode": "markers", "name": "close",
        "x": [c["close_ms"] for c, _ in closed], "y": [r for _, r in closed],
        "marker": {"symbol": "line-ns-open", "size": 14, "color": "#000"},
        "customdata": [[c["conn"], c["close_code"]] for c, _ in closed],
        "hovertext": [_conn_hover(c) for c, _ in closed], "hoverinfo": "text",
    }  # fmt: skip
    traces = [windows, bars, overlap, closes]
    lanes = len(set(rows)) + len(data.runs)
    layout = _layout(data, "Connections", barmode="overlay", height=max(220, 60 + 45 * lanes))
    layout["yaxis"] = {"type": "category", "automargin": True}
    if by_feed:
        order = [r["run_id"][-8:] + " window" for r in data.runs]
        for f in data.feeds["feeds"]:
            order += [x for x in (f"feed {f['feed']}", f"feed {f['feed']} standby")
                      if x in rows or x == f"feed {f['feed']}"]  # fmt: skip
        order.append(all_down_label(data.feeds))
        traces += [_all_down(data, least), _moves(data)]
        layout["yaxis"] |= {"categoryorder": "array", "categoryarray": order[::-1]}  # top down
        layout["height"] = max(220, 60 + 45 * len(order))
    return {"data": traces, "layout": layout}


def _all_down(data: ReportData, least: float) -> dict[str, Any]:
    """The times no feed had a connection, as red bars on their own row."""
    label, down = all_down_label(data.feeds), data.feeds["all_down"]
    return {
        "type": "bar", "orientation": "h", "name": label, "y": [label] * len(down),
        "base": [a for a, _ in down], "x": [max(least, b - a) for a, b in down],
        "marker": {"color": "#d62728"}, "customdata": [[a, b] for a, b in down],
        "hovertext": [f"{label}: {iso_ms(a)} to {iso_ms(b)} ({(b - a) / 1e3:.3f} s)"
                      for a, b in down], "hoverinfo": "text",
    }  # fmt: skip


_MOVE_COLORS = {"moved": "#9467bd", "lost": "#d62728", "regained": "#2ca02c"}


def _moves(data: ReportData) -> dict[str, Any]:
    """Arbitration moves on the row of the feed the books moved to (no feed: the
    all-down row): purple to the other feed, red to no valid book, green valid again."""
    marks, label = data.feeds["moves"]["marks"], all_down_label(data.feeds)

    def feed(f: int | None) -> str:
        return "none" if f is None else f"feed {f}"

    def kind(m: dict[str, Any]) -> str:
        return "lost" if m["to_feed"] is None else "regained" if m["from_feed"] is None else "moved"

    return {
        "type": "scatter", "mode": "markers", "name": "arbitration move",
        "x": [m["t_ms"] for m in marks],
        "y": [label if m["to_feed"] is None else f"feed {m['to_feed']}" for m in marks],
        "marker": {"symbol": "diamond", "size": 9, "line": {"width": 1, "color": "#fff"},
                   "color": [_MOVE_COLORS[kind(m)] for m in marks]},
        "customdata": [[m["from_feed"], m["to_feed"], m["markets"]] for m in marks],
        "hovertext": [f"{m['markets']} book(s) {feed(m['from_feed'])} → {feed(m['to_feed'])} "
                      f"({m['reason']})<br>first: {m['market']}" for m in marks],
        "hoverinfo": "text+x",
    }  # fmt: skip


def _conn_color(c: dict[str, Any]) -> str:
    if not c["closed"]:
        return "#7f7f7f"
    if c["planned"]:
        return "#2ca02c"
    return _CLOSE_COLORS.get(c["initiator"] or "", "#9467bd")


def _conn_hover(c: dict[str, Any]) -> str:
    parts = [f"run {c['run_id']} conn {c['conn']}" + (" (standby)" if c["standby"] else "")]
    parts.append(f"close {c['close_code']} {c['close_reason'] or ''} ({c['disconnect_reason']}, "
                 f"by {c['initiator'] or 'unknown'})" if c["closed"] else "not closed")  # fmt: skip
    if c["reconnect_delay_s"] is not None:
        parts.append(f"reconnect delay before it {c['reconnect_delay_s']:.3f} s")
    if c["switched_to"] is not None:
        parts.append(f"planned rotation to conn {c['switched_to']}")
    parts.append(f"frames in {c['frames_in']:,}, out {c['frames_out']:,}")
    return "<br>".join(parts)


def _event_markers(data: ReportData) -> list[dict[str, Any]]:
    """Disconnects, planned closes, gaps and resyncs, as markers on a hidden 0..1 axis over
    a chart. A close the client planned (a rotation, the end of a run, a user's request)
    is not a disconnect: it has its own marker, green as its bar on the timeline."""
    gaps = [g for g in data.gaps if g["kind"] != "duplicate"]
    resyncs = [g for g in gaps if g["resync_ms"] is not None]
    closes = [c for c in data.connections if c["closed"] and not c["planned"]]
    planned = [c for c in data.connections if c["closed"] and c["planned"]]

    def marks(name: str, xs: list[float], y: float, symbol: str, color: str,
              text: list[str]) -> dict[str, Any]:  # fmt: skip
        return {"type": "scatter", "mode": "markers", "name": name, "x": xs,
                "y": [y] * len(xs), "yaxis": "y2", "hovertext": text, "hoverinfo": "text+x",
                "marker": {"symbol": symbol, "size": 10, "color": color}}  # fmt: skip

    return [
        marks("disconnect", [c["close_ms"] for c in closes], 0.97, "x", "#d62728",
              [f"conn {c['conn']} closed {c['close_code']}" for c in closes]),
        marks("planned close", [c["close_ms"] for c in planned], 0.97, "circle-open",
              "#2ca02c", [f"conn {c['conn']} closed {c['close_code']} (planned: "
                          f"{c['disconnect_reason'] or 'rotation'})" for c in planned]),
        marks("gap", [g["gap_ms"] for g in gaps], 0.91, "triangle-down", "#ff7f0e",
              [f"{g['channel']} sid {g['sid']}: {g['kind']} ({g['missing']} missing)"
               for g in gaps]),
        marks("resync", [g["resync_ms"] for g in resyncs], 0.85, "triangle-up", "#2ca02c",
              [f"{g['channel']} sid {g['sid']} resynced" for g in resyncs]),
    ]  # fmt: skip


def rates(data: ReportData) -> dict[str, Any]:
    r = data.rates
    lines = [
        {"type": "scatter", "mode": "lines", "name": ch, "x": r["t"], "y": ys,
         "line": {"shape": "hv", "width": 1.5, "color": _PALETTE[i % len(_PALETTE)]}}
        for i, (ch, ys) in enumerate(sorted(r["channels"].items()))
    ]  # fmt: skip
    layout = _layout(data, f"Frames per second per channel ({r['bucket_s']:g} s buckets)")
    layout["yaxis"] = {"title": {"text": "frames/s"}, "rangemode": "tozero"}
    layout["yaxis2"] = {"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True}
    return {"data": [*lines, *_event_markers(data)], "layout": layout}


def latency_histogram(data: ReportData) -> dict[str, Any]:
    lat, traces = data.latency, []
    bins = lat.get("bins")
    for i, (ch, c) in enumerate(sorted(lat["channels"].items())):
        centers = [bins["start"] + (k + 0.5) * bins["width"] for k in range(bins["count"])]
        hover = f"%{{x}} ms: %{{y}} frames<extra>{ch}</extra>"
        traces.append({"type": "bar", "name": ch, "x": centers, "y": c["hist"], "opacity": 0.6,
                       "marker": {"color": _PALETTE[i % len(_PALETTE)]},
                       "hovertemplate": hover})  # fmt: skip
    layout = _layout(data, "Latency: receive time minus exchange ts_ms (ms)", barmode="overlay")
    layout["xaxis"] = {"title": {"text": "ms"}}
    layout["yaxis"] = {"title": {"text": "frames"}}
    return {"data": traces, "layout": layout}


def latency_over_time(data: ReportData) -> dict[str, Any]:
    traces = []
    for i, (ch, c) in enumerate(sorted(data.latency["channels"].items())):
        color = _PALETTE[i % len(_PALETTE)]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"{ch} p50",
                "x": c["t"],
                "y": c["p50_t"],
                "line": {"color": color},
            }
        )
        traces.append({"type": "scatter", "mode": "lines", "name": f"{ch} p99", "x": c["t"],
                       "y": c["p99_t"], "line": {"color": color, "dash": "dot"}})  # fmt: skip
    layout = _layout(data, "Latency over time (p50 and p99, ms)")
    layout["yaxis"] = {"title": {"text": "ms"}}
    return {"data": traces, "layout": layout}


def storage(data: ReportData) -> dict[str, Any]:
    dates = sorted({p["date"] for p in data.storage})
    traces = []
    for i, date in enumerate(dates):
        parts = [p for p in data.storage if p["date"] == date]
        traces.append({"type": "bar", "name": date, "x": [p["channel"] for p in parts],
                       "y": [p["bytes"] for p in parts],
                       "customdata": [[p["files"], p["state"]] for p in parts],
                       "hovertemplate": "%{x}: %{y:,} bytes in %{customdata[0]} files "
                                        "(%{customdata[1]})<extra>" + date + "</extra>",
                       "marker": {"color": _PALETTE[i % len(_PALETTE)]}})  # fmt: skip
    layout = _layout(data, "Bytes on disk per channel and date", barmode="stack")
    layout["xaxis"] = {"type": "category"}
    layout["yaxis"] = {"title": {"text": "bytes"}}
    return {"data": traces, "layout": layout}


def market_figure(data: ReportData, market: str) -> dict[str, Any]:
    """Best YES bid, ask and mid (steps), trades sized by count, invalid book shaded."""
    m = data.markets["data"][market]
    trades = m["trades"]
    top = max(trades["count"], default=1.0) or 1.0
    quotes = [
        {"type": "scatter", "mode": "lines", "name": name, "x": m["t"], "y": m[key],
         "line": {"shape": "hv", "color": color, "width": width, "dash": dash},
         "connectgaps": False}
        for name, key, color, width, dash in (("best yes bid", "bid", "#2ca02c", 1.5, "solid"),
                                              ("best yes ask", "ask", "#d62728", 1.5, "solid"),
                                              ("mid", "mid", "#7f7f7f", 1, "dot"))
    ]  # fmt: skip
    points = {
        "type": "scatter", "mode": "markers", "name": "trades", "x": trades["t"],
        "y": trades["price"], "customdata": trades["count"],
        "marker": {"size": [4 + 18 * math.sqrt(c / top) for c in trades["count"]],
                   "symbol": ["circle" if v else "circle-open" for v in trades["valid"]],
                   "color": ["#1f77b4" if s == "yes" else "#9467bd" for s in trades["side"]],
                   "opacity": 0.6, "line": {"width": 0}},
        "hovertemplate": "%{y:.4f} x %{customdata}<extra>trade</extra>",
    }  # fmt: skip
    shapes = [
        {"type": "rect", "xref": "x", "yref": "paper", "x0": a, "x1": b, "y0": 0, "y1": 1,
         "fillcolor": "rgba(214,39,40,0.15)", "line": {"width": 0}, "layer": "below",
         "name": "invalid book"}
        for a, b in m["invalid"]
    ]  # fmt: skip
    layout = _layout(data, f"{market}: best YES bid / ask / mid, trades (shaded: book not valid)",
                     shapes=shapes, height=380)  # fmt: skip
    layout["yaxis"] = {"title": {"text": "dollars"}}
    layout["meta"] = {"market": market, "invalid": len(shapes), "trades": trades["total"]}
    return {"data": [*quotes, points], "layout": layout}
