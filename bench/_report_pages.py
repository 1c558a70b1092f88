"""The report's charts drawn with Bokeh and with Vega-Altair, for `bench_report.py`.

Same data (`replay.report.ReportData`), same charts as the plotly report: the
connection timeline, frames per second with disconnect and gap markers, the latency
histogram and series, one market's quotes (steps), trades sized by count and invalid
intervals shaded, and bytes per channel and date. Each page inlines its library's JS
(`bokeh.resources.INLINE`; Altair's `to_html(inline=True)` through vl-convert), so it
opens offline like the report. Not a test, not shipped: only what the comparison needs.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["altair_page", "bokeh_page"]

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _rows(data: Any) -> dict[str, list[dict[str, Any]]]:
    """The charts' data as long tables (one list of records per chart)."""
    market = data.markets["chosen"][0]
    m = data.markets["data"][market]
    top = max(m["trades"]["count"], default=1.0) or 1.0
    lat = data.latency
    bins = lat["bins"]
    return {
        "timeline": [{"row": f"{c['run_id'][-8:]}{' standby' if c['standby'] else ''}",
                      "open": c["open_ms"], "close": c["close_ms"],
                      "label": f"conn {c['conn']} · {c['close_code']}"}
                     for c in data.connections],
        "rates": [{"t": t, "channel": ch, "rate": r} for ch, ys in data.rates["channels"].items()
                  for t, r in zip(data.rates["t"], ys, strict=True)],
        "marks": [{"t": c["close_ms"], "kind": "disconnect"} for c in data.connections]
                 + [{"t": g["gap_ms"], "kind": "gap"} for g in data.gaps],
        "hist": [{"ms": bins["start"] + (k + 0.5) * bins["width"], "channel": ch, "n": n}
                 for ch, c in lat["channels"].items() for k, n in enumerate(c["hist"])],
        "lat_t": [{"t": t, "channel": ch, "p50": a, "p99": b}
                  for ch, c in lat["channels"].items()
                  for t, a, b in zip(c["t"], c["p50_t"], c["p99_t"], strict=True)],
        "quotes": [{"t": t, "series": s, "price": v} for s in ("bid", "ask", "mid")
                   for t, v in zip(m["t"], m[s], strict=True) if v is not None],
        "trades": [{"t": t, "price": p, "size": 4 + 18 * math.sqrt(c / top)}
                   for t, p, c in zip(m["trades"]["t"], m["trades"]["price"],
                                      m["trades"]["count"], strict=True)],
        "invalid": [{"a": a, "b": b} for a, b in m["invalid"]],
        "storage": [{"channel": p["channel"], "date": p["date"], "bytes": p["bytes"]}
                    for p in data.storage],
    }  # fmt: skip


def bokeh_page(data: Any) -> str:
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import BoxAnnotation, ColumnDataSource
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    r = _rows(data)

    def fig(title: str, **kw: Any) -> Any:
        return figure(title=title, width=1250, height=300, **kw)

    rows = sorted({x["row"] for x in r["timeline"]})
    tl = fig("Connections", x_axis_type="datetime", y_range=rows)
    tl.hbar(
        y=[x["row"] for x in r["timeline"]],
        left=[x["open"] for x in r["timeline"]],
        right=[x["close"] for x in r["timeline"]],
        height=0.6,
        color="#d62728",
    )
    rates = fig("Frames per second", x_axis_type="datetime")
    top = max((x["rate"] for x in r["rates"]), default=1.0)
    for i, ch in enumerate(sorted(data.rates["channels"])):
        pts = [x for x in r["rates"] if x["channel"] == ch]
        rates.step(
            [x["t"] for x in pts],
            [x["rate"] for x in pts],
            legend_label=ch,
            color=COLORS[i % len(COLORS)],
            mode="after",
        )
    rates.scatter(
        [x["t"] for x in r["marks"]],
        [top * 1.05] * len(r["marks"]),
        marker="x",
        size=10,
        color="#d62728",
    )
    hist = fig("Latency (ms)")
    lat_t = fig("Latency over time", x_axis_type="datetime")
    width = data.latency["bins"]["width"]
    for i, ch in enumerate(sorted(data.latency["channels"])):
        color = COLORS[i % len(COLORS)]
        h = [x for x in r["hist"] if x["channel"] == ch]
        hist.vbar(
            x=[x["ms"] for x in h],
            top=[x["n"] for x in h],
            width=width,
            alpha=0.6,
            color=color,
            legend_label=ch,
        )
        pts = [x for x in r["lat_t"] if x["channel"] == ch]
        lat_t.line([x["t"] for x in pts], [x["p50"] for x in pts], color=color)
        lat_t.line([x["t"] for x in pts], [x["p99"] for x in pts], color=color, line_dash="dotted")
    book = fig("Best YES bid / ask / mid, trades", x_axis_type="datetime")
    for s, color in (("bid", "#2ca02c"), ("ask", "#d62728"), ("mid", "#7f7f7f")):
        pts = [x for x in r["quotes"] if x["series"] == s]
        book.step([x["t"] for x in pts], [x["price"] for x in pts], color=color, mode="after")
    src = ColumnDataSource({k: [x[k] for x in r["trades"]] for k in ("t", "price", "size")})
    book.scatter("t", "price", size="size", source=src, alpha=0.6)
    for x in r["invalid"]:
        book.add_layout(BoxAnnotation(left=x["a"], right=x["b"], fill_alpha=0.15,
                                      fill_color="#d62728"))  # fmt: skip
    channels = sorted({x["channel"] for x in r["storage"]})
    dates = sorted({x["date"] for x in r["storage"]})
    table = {"channel": channels} | {
        d: [sum(x["bytes"] for x in r["storage"] if x["channel"] == c and x["date"] == d)
            for c in channels] for d in dates}  # fmt: skip
    st = fig("Bytes on disk", x_range=channels)
    st.vbar_stack(dates, x="channel", source=ColumnDataSource(table), width=0.8,
                  color=list(COLORS[: len(dates)]))  # fmt: skip
    html = file_html(column(tl, rates, hist, lat_t, book, st), INLINE, "bokeh report")
    done = "root.Bokeh.embed.embed_items(docs_json, render_items)"
    assert done in html, "bokeh's page template changed"
    return html.replace(done, done + ".then(function () { window.__bokehDrawn = true; })")


def altair_page(data: Any) -> str:
    import altair as alt

    alt.data_transformers.disable_max_rows()
    r = _rows(data)
    w, h = 1150, 260

    def base(rows: list[dict[str, Any]]) -> alt.Chart:
        return alt.Chart(alt.Data(values=rows)).properties(width=w, height=h)

    tl = (
        base(r["timeline"])
        .mark_bar(color="#d62728")
        .encode(x=alt.X("open:T", title=None), x2="close:T", y="row:N")
    )
    rates = base(r["rates"]).mark_line(interpolate="step-after").encode(
        x="t:T", y="rate:Q", color="channel:N") + base(r["marks"]).mark_point(
        shape="cross", color="#d62728").encode(x="t:T", y=alt.value(5))  # fmt: skip
    hist = (
        base(r["hist"])
        .mark_bar(opacity=0.6)
        .encode(x="ms:Q", y=alt.Y("n:Q", stack=None), color="channel:N")
    )
    lat = base(r["lat_t"]).mark_line().encode(x="t:T", y="p50:Q", color="channel:N") + base(
        r["lat_t"]
    ).mark_line(strokeDash=[2, 2]).encode(x="t:T", y="p99:Q", color="channel:N")
    book = (base(r["invalid"]).mark_rect(opacity=0.15, color="#d62728").encode(x="a:T", x2="b:T")
            + base(r["quotes"]).mark_line(interpolate="step-after").encode(
                x="t:T", y="price:Q", color="series:N")
            + base(r["trades"]).mark_circle(opacity=0.6).encode(
                x="t:T", y="price:Q", size=alt.Size("size:Q", legend=None)))  # fmt: skip
    st = base(r["storage"]).mark_bar().encode(x="channel:N", y="bytes:Q", color="date:N")
    chart = alt.vconcat(tl, rates, hist, lat, book, st).resolve_scale(color="independent")
    html = chart.to_html(inline=True)
    done = "vegaEmbed('#vis', spec, embedOpt)"
    assert done in html, "altair's page template changed"
    return html.replace(done, done + ".then(function () { window.__vegaDrawn = true; })")
