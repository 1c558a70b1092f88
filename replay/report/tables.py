"""The report's HTML beside its charts: the header, and the tables the charts summarise.

Every value is escaped here. Rows carry stable data attributes for the page script
and the browser tests: `#connections tr[data-run][data-conn][data-close-code]` (and
`[data-feed]` when the capture has several feeds),
`#gaps tr[data-t][data-channel][data-sid][data-kind]` (its link moves the timeline to
the gap), `#feeds-table tr[data-feed]`, `#feeds-down tr[data-t]` and
`#moves-table tr[data-t][data-market][data-from][data-to]` (their links move the
timeline too), `#storage tr[data-channel][data-date]`,
`#market-select` (one option per market) and `#verdict[data-verdict]`. A capture of
one feed gets no feed column and no feeds section: its report is as before feeds.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from replay.report.feeds import all_down_label
from replay.report.gather import ReportData, iso_ms

__all__ = [
    "connections",
    "feeds",
    "gaps",
    "header",
    "latency",
    "market_picker",
    "rates_note",
    "storage",
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return escape(str(value))


def _table(table_id: str, names: Iterable[str], rows: Iterable[tuple[dict[str, str], list[Any]]],
           raw: frozenset[int] = frozenset()) -> str:  # fmt: skip
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    body = []
    for attrs, cells in rows:
        attr = "".join(f' data-{k}="{escape(str(v))}"' for k, v in attrs.items())
        tds = "".join(f"<td>{c if i in raw else _cell(c)}</td>" for i, c in enumerate(cells))
        body.append(f"<tr{attr}>{tds}</tr>")
    return (f'<div class="wide"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")  # fmt: skip


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def header(data: ReportData) -> str:
    h, v = data.header, data.verify
    facts = [
        ("time range", f"{iso_ms(h['first_ms'])} to {iso_ms(h['last_ms'])}"),
        ("dates", ", ".join(h["dates"])),
        ("runs", str(len(data.runs))),
        ("channels", ", ".join(f"{c['channel']} ({c['frames']:,})" for c in h["channels"])),
        ("markets", f"{h['markets']:,}"),
        ("frames", f"{h['frames']:,}"),
        ("bytes on disk", f"{_size(h['bytes_on_disk'])} in {h['files']:,} files"),
        ("compression", f"{h['compression']}x (raw frame bytes per byte on disk)"
         if h["compression"] else "-"),
        ("connections", f"{len(data.connections)}; {v['reconnects']} reconnects"),
        ("seq gaps", f"{data.gaps_total:,} in range ({_seq(v['seq'])} in the capture)"),
    ]  # fmt: skip
    if data.feeds:
        facts.append(("feeds", f"{len(data.feeds['feeds'])} (see Feeds)"))
    if h["unreadable_files"]:
        facts.append(("unreadable files", ", ".join(h["unreadable_files"])))
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(val)}</dd>" for k, val in facts)
    problems = "".join(f'<li class="problem">{escape(p)}</li>' for p in v["problems"])
    warnings = "".join(f'<li class="warning">{escape(w)}</li>' for w in v["warnings"])
    verdict = (f'<p id="verdict" data-verdict="{v["verdict"]}" class="verdict '
               f'{v["verdict"].lower()}">verify: <b>{v["verdict"]}</b> ({len(v["problems"])} '
               f'problems, {len(v["warnings"])} warnings; the whole capture)</p>')  # fmt: skip
    runs = _table(
        "runs", ["run", "start", "end", "frames", "connections", "stopped cleanly", "version"],
        (({"run": r["run_id"]}, [r["run_id"], iso_ms(r["start_ms"]), iso_ms(r["end_ms"]),
          r["frames"], r["connections"], r["clean_stop"], r["version"]]) for r in data.runs),
    )  # fmt: skip
    listed = f"<ul>{problems}{warnings}</ul>" if problems or warnings else ""
    return f'<section id="header"><h2>Summary</h2>{verdict}{listed}<dl>{dl}</dl>{runs}</section>'


def _seq(s: dict[str, int]) -> str:
    return (f"{s.get('gap', 0)} gaps, {s.get('reset', 0)} resets, {s.get('duplicate', 0)} "
            f"duplicates, {s.get('unrecovered', 0)} unrecovered")  # fmt: skip


def connections(data: ReportData) -> str:
    names = [
        "run",
        "conn",
        "open",
        "close",
        "close code",
        "reason",
        "initiator",
        "reconnect delay (s)",
        "overlap (s)",
        "planned rotation",
        "frames in",
        "frames out",
    ]
    by_feed = bool(data.feeds)
    if by_feed:
        names.insert(2, "feed")
    rows = []
    for c in data.connections:
        attrs = {
            "run": c["run_id"],
            "conn": c["conn"],
            "close-code": "" if c["close_code"] is None else c["close_code"],
        }
        if by_feed:
            attrs["feed"] = c["feed"]
        initiator = c["initiator"]
        if initiator and c.get("initiator_inferred"):
            initiator += " (inferred)"
        planned = (
            "to conn " + str(c["switched_to"])
            if c["switched_to"] is not None
            else "yes"
            if c["planned"]
            else "no"
        )
        cells = [
            c["run_id"][-8:],
            c["conn"],
            iso_ms(c["open_ms"]),
            iso_ms(c["close_ms"]) if c["closed"] else "open",
            "-" if c["close_code"] is None else str(c["close_code"]),
            c["close_reason"] or c["disconnect_reason"],
            initiator,
            c["reconnect_delay_s"],
            c["overlap_s"] or None,
            planned,
            c["frames_in"],
            c["frames_out"],
        ]
        if by_feed:
            cells.insert(2, c["feed"])
        rows.append((attrs, cells))
    legend = ('<p class="note">Bars: red closed by the server, orange by the network, blue by '
              "the client, green a planned rotation, grey still open; orange slivers are "
              "make-before-break overlaps; the grey band behind each run is its capture "
              "window.</p>")  # fmt: skip
    if by_feed:
        legend += (f'<p class="note">A row per feed; the red bars on the row '
                   f"&quot;{escape(all_down_label(data.feeds))}&quot; are the times no feed had a "
                   "connection; diamonds are arbitration moves, on the row of the feed the "
                   "books moved to (purple: from the other feed, green: valid again; red, on "
                   "the all-down row: no feed held a valid book).</p>")  # fmt: skip
    return legend + _table("connections", names, rows)


def feeds(data: ReportData) -> str:
    """Per feed: records, connections, connected and down time; the all-down times;
    the arbitration moves (counts, and the first ones listed)."""
    f = data.feeds
    span = (
        f"from the first connection's open ({iso_ms(f['span_ms'][0])}) to the last "
        f"close ({iso_ms(f['span_ms'][1])})"
        if f["span_ms"]
        else "no connection"
    )
    names = ["feed", "records", "connections", "connected (s)", "down (s)", "connected share"]
    rows = (({"feed": r["feed"]}, [r["feed"], r["records"], r["connections"], r["connected_s"],
              r["down_s"], "-" if r["connected_share"] is None
              else f"{100 * r['connected_share']:.1f}%"]) for r in f["feeds"])  # fmt: skip
    table = _table("feeds-table", names, rows)
    every = "both feeds" if len(f["feeds"]) == 2 else "every feed"
    down = (f'<p id="all-down" class="note" data-seconds="{f["all_down_s"]}" '
            f'data-count="{f["all_down_count"]}">{every.capitalize()} down at once: '
            f"<b>{f['all_down_s']:,.3f} s</b> in {f['all_down_count']:,} interval(s); "
            f"times {span}, from the connections' open and close (one never closed counts "
            "to its run's last record).</p>")  # fmt: skip
    listed = ""
    if f["all_down"]:
        more = (f" ({len(f['all_down']):,} of {f['all_down_count']:,} shown)"
                if f["all_down_count"] > len(f["all_down"]) else "")  # fmt: skip
        listed = f'<p class="note">When {every} were down{more}:</p>' + _table(
            "feeds-down", ["from", "to", "duration (s)"],
            (({"t": a}, [_goto(a), iso_ms(b), round((b - a) / 1e3, 3)]) for a, b in f["all_down"]),
            frozenset({0}),
        )  # fmt: skip
    return table + down + listed + _moves(f["moves"])


def _goto(t_ms: float) -> str:
    return f'<a href="#timeline" class="goto">{escape(iso_ms(t_ms))}</a>'


def _moves(moves: dict[str, Any]) -> str:
    n = moves["counts"]
    text = (f'<p id="arbitration" class="note" data-moves="{n["total"]}">'
            f"<b>{n['total']:,}</b> arbitration moves (a market's book moving between feeds): "
            f"{n['moved']:,} to another feed, {n['lost']:,} with no feed holding a valid "
            f"book, {n['regained']:,} valid again.</p>")  # fmt: skip
    if not moves["list"]:
        return text

    def feed(x: int | None) -> str:
        return "none" if x is None else f"feed {x}"

    rows = (({"t": m["t_ms"], "market": m["market"], "from": "" if m["from_feed"] is None
              else m["from_feed"], "to": "" if m["to_feed"] is None else m["to_feed"]},
             [_goto(m["t_ms"]), m["market"], feed(m["from_feed"]), feed(m["to_feed"]),
              m["reason"]]) for m in moves["list"])  # fmt: skip
    shown = len(moves["list"])
    more = (f'<p class="note">The first {shown:,} of {n["total"]:,}.</p>'
            if n["total"] > shown else "")  # fmt: skip
    table = _table("moves-table", ["time", "market", "from", "to", "reason"], rows, frozenset({0}))
    return f'{text}{more}<div class="tall">{table}</div>'


def rates_note(data: ReportData) -> str:
    return (
        '<p class="note">Markers above the lines: x a disconnect, ▼ a seq gap or reset, '
        f"▲ its resync. Buckets of {data.rates['bucket_s']:g} s.</p>"
    )


def latency(data: ReportData) -> str:
    lat = data.latency
    if not lat["channels"]:
        return '<p class="note">No message in the range carries an exchange timestamp.</p>'
    sampled = f"; every {lat['every']}th frame by idx" if lat["every"] > 1 else ""
    rows = ((({"channel": ch}), [ch, c["count"], c["min"], c["p50"], c["p90"], c["p99"], c["max"]])
            for ch, c in sorted(lat["channels"].items()))  # fmt: skip
    table = _table("latency-stats", ["channel", "frames", "min", "p50", "p90", "p99", "max"], rows)
    return (
        f'<p class="note">Receive time minus the message\'s ts_ms, in ms ({lat["frames"]:,} '
        f"frames{sampled}). Negative values mean the clocks disagree.</p>{table}"
    )


def gaps(data: ReportData) -> str:
    names = [
        "time",
        "run",
        "conn",
        "channel",
        "sid",
        "market",
        "kind",
        "seq",
        "missing",
        "recovery (s)",
        "how it recovered",
    ]
    rows = []
    for g in data.gaps:
        attrs = {
            "t": g["gap_ms"],
            "run": g["run_id"],
            "conn": g["conn"],
            "channel": g["channel"],
            "sid": g["sid"],
            "kind": g["kind"],
            "idx": g["idx"],
        }
        link = f'<a href="#timeline" class="goto">{escape(iso_ms(g["gap_ms"]))}</a>'
        rows.append(
            (
                attrs,
                [
                    link,
                    g["run_id"][-8:],
                    g["conn"],
                    g["channel"],
                    g["sid"],
                    g["market"],
                    g["kind"],
                    f"{g['prev_seq']} → {g['seq']}",
                    g["missing"],
                    g["recovery_s"],
                    g["how"],
                ],
            )
        )
    shown = len(data.gaps)
    more = (
        f'<p class="note">{shown:,} of {data.gaps_total:,} shown.</p>'
        if data.gaps_total > shown
        else ""
    )
    if not data.gaps_total:
        return '<p class="note">No seq gaps, resets or duplicates in the range.</p>' + _table(
            "gaps-table", names, []
        )
    return (
        f'<p class="note">{data.gaps_total:,} discontinuities; click a time to see it on '
        f"the timeline.</p>{more}" + _table("gaps-table", names, rows, frozenset({0}))
    )


def market_picker(data: ReportData) -> str:
    m = data.markets
    chosen = m.get("chosen", [])
    if not chosen:
        return '<p class="note">No market has book or trade data in the range.</p>'
    options = "".join(f'<option value="{escape(x)}">{escape(x)}</option>' for x in chosen)
    note = f' <span class="note">({escape(m["note"])})</span>' if m.get("note") else ""
    source = m.get("source", "")
    return (f'<label>Market <select id="market-select">{options}</select></label>{note}'
            f'<p class="note" data-source="{escape(source)}">Quotes: last per bucket of the '
            "quotes dataset; trades: points sized by count (blue: taker yes, purple: taker "
            "no).</p>")  # fmt: skip


def storage(data: ReportData) -> str:
    names = [
        "channel",
        "date",
        "files",
        "bytes",
        "publisher files",
        "compacted files",
        "superseded",
        "compaction",
    ]
    rows = (
        (
            ({"channel": p["channel"], "date": p["date"]}),
            [
                p["channel"],
                p["date"],
                p["files"],
                _size(p["bytes"]),
                p["publisher_files"],
                p["compacted_files"],
                p["superseded"],
                p["state"],
            ],
        )
        for p in data.storage
    )
    return _table("storage-table", names, rows)
