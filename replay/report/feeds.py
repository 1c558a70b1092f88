"""The report's feeds section, for a capture of redundant feeds, read with SQL.

A capture's records carry their `feed` (null in captures made before feeds existed:
null is feed 0). When the report's range holds more than one feed, `summarise` says,
per feed, its records, its connections, the time it was connected and the time it
was down, and the intervals when every feed was down at once; `moves` reads the
`arbitrate` events (a market's book moving from one feed to another).

* `records`: records per feed in the window (one row for a capture of one feed).
* `summarise`: the per-feed numbers and the all-down intervals, from the connections
  `replay.report.timeline.connections` read. A connection covers its feed from its
  `open` to its `close`; one never closed (a recorder killed, or still running) covers
  until its run's last record, as `kalshi-tape merge` counts it
  (docs/merge.md section 3); an attempt that never opened and carried no frame covers
  nothing. Down time is counted from the first covered instant to the last, inside
  the window.
* `moves`: the first `MAX_MOVES` arbitration moves in time order, their total, their
  counts by kind, and the timeline's markers: the moves of one kind (from, to, reason)
  within a step of 1/`MAX_MARKS` of the window (at least 1 ms) as one mark.

Times come out as epoch ms, durations as seconds. It reads the views of `replay.sql`
and builds no other SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import duckdb

from replay.merge.coverage import gaps, union
from replay.report.window import Window
from replay.sql.build import event_field
from schemas.events import Arbitrated

__all__ = [
    "MAX_DOWN",
    "MAX_MARKS",
    "MAX_MOVES",
    "all_down_label",
    "moves",
    "records",
    "summarise",
]

#: Arbitration moves listed in the table (the total is always counted).
MAX_MOVES: Final = 200
#: Instants of arbitration moves marked on the timeline.
MAX_MARKS: Final = 2000
#: All-down intervals listed (their total time is always counted).
MAX_DOWN: Final = 500

Interval = tuple[float, float]


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = con.sql(sql).to_arrow_table().to_pylist()
    return rows


def records(con: duckdb.DuckDBPyConnection, window: Window) -> dict[int, int]:
    """Records in the window per feed (null is feed 0), in feed order."""
    rows = con.execute(
        f"SELECT COALESCE(feed, 0) AS feed, count(*) FROM frames WHERE {window.where()} "
        f"AND \"date\" BETWEEN '{window.first_date}' AND '{window.last_date}' "
        "GROUP BY ALL ORDER BY feed"
    ).fetchall()
    return {int(feed): int(n) for feed, n in rows}


def summarise(
    window: Window, runs: list[dict[str, Any]], connections: list[dict[str, Any]],
    per_feed_records: dict[int, int],
) -> dict[str, Any]:  # fmt: skip
    """Per feed: records, connections, connected and down time; the all-down intervals."""
    covered = _covered(window, runs, connections)
    feeds = sorted(set(per_feed_records) | set(covered) | {c["feed"] for c in connections})
    unions = {f: union(covered.get(f, [])) for f in feeds}
    every = union(i for u in unions.values() for i in u)
    span = (every[0][0], every[-1][1]) if every else None
    span_s = (span[1] - span[0]) / 1e3 if span else 0.0
    rows = []
    for f in feeds:
        connected_s = _length(unions[f]) / 1e3
        rows.append({
            "feed": f,
            "records": per_feed_records.get(f, 0),
            "connections": sum(1 for c in connections if c["feed"] == f),
            "connected_s": round(connected_s, 3),
            "down_s": round(max(0.0, span_s - connected_s), 3),
            "connected_share": round(connected_s / span_s, 4) if span_s else None,
        })  # fmt: skip
    all_down = gaps(every)  # the holes of the span `every` reaches across
    return {
        "feeds": rows,
        "span_ms": list(span) if span else None,
        "all_down_s": round(_length(all_down) / 1e3, 3),
        "all_down_count": len(all_down),
        "all_down": [list(i) for i in all_down[:MAX_DOWN]],
    }


def all_down_label(summary: dict[str, Any]) -> str:
    """What the page calls the times no feed was connected."""
    return "both feeds down" if len(summary["feeds"]) == 2 else "all feeds down"


def _covered(
    window: Window, runs: list[dict[str, Any]], connections: list[dict[str, Any]]
) -> dict[int, list[Interval]]:
    """Each feed's connection intervals, cut to the window."""
    run_end = {r["run_id"]: r["end_ms"] for r in runs}
    out: dict[int, list[Interval]] = {}
    for c in connections:
        if not (c["opened"] or c["frames_in"] or c["frames_out"]):
            continue  # an attempt that never connected
        start, end = c["open_ms"], c["close_ms"]
        if not c["closed"]:
            end = max(end, run_end.get(c["run_id"], end))
        start, end = max(start, window.start_ms), min(end, window.end_ms)
        if end > start:
            out.setdefault(c["feed"], []).append((start, end))
    return out


def _length(intervals: Iterable[Interval]) -> float:
    return sum(end - start for start, end in intervals)


def moves(con: duckdb.DuckDBPyConnection, window: Window) -> dict[str, Any]:
    """The arbitration moves in the window: the first MAX_MOVES, counts, marker instants."""
    fields = (
        f"{event_field(Arbitrated, 'market', detail='detail')} AS market, "
        f"{event_field(Arbitrated, 'from_feed', 'INTEGER', detail='detail')} AS from_feed, "
        f"{event_field(Arbitrated, 'to_feed', 'INTEGER', detail='detail')} AS to_feed, "
        f"{event_field(Arbitrated, 'reason', detail='detail')} AS reason"
    )
    source = (
        f"(SELECT run_id, idx, recv_ns, {fields} FROM events "
        f"WHERE type = '{Arbitrated.name}' AND {window.where()})"
    )
    listed = _rows(  # the counts ride on every row
        con,
        f"""SELECT (recv_ns // 1000) / 1e3 AS t_ms, run_id, idx, market, from_feed, to_feed,
            reason, total, moved, lost, regained
        FROM (SELECT *, count(*) OVER () AS total,
                sum((from_feed IS NOT NULL AND to_feed IS NOT NULL)::INTEGER) OVER () AS moved,
                sum((to_feed IS NULL)::INTEGER) OVER () AS lost,
                sum((from_feed IS NULL AND to_feed IS NOT NULL)::INTEGER) OVER () AS regained
              FROM {source} ORDER BY recv_ns, run_id, idx LIMIT {MAX_MOVES})
        ORDER BY t_ms, run_id, idx""",
    )
    counts = {k: int(listed[0][k]) if listed else 0 for k in ("total", "moved", "lost", "regained")}
    for row in listed:
        for k in counts:
            del row[k]
    step = max(1_000_000, (window.end_ns - window.start_ns) // MAX_MARKS)  # ns, >= 1 ms
    marks = _rows(  # the moves of one kind within a step, as one mark at the first
        con,
        f"""SELECT (min(recv_ns) // 1000) / 1e3 AS t_ms, from_feed, to_feed, reason,
            count(*) AS markets, arg_min(market, (recv_ns, idx)) AS market
        FROM {source} GROUP BY recv_ns // {step}, from_feed, to_feed, reason
        ORDER BY t_ms, from_feed NULLS FIRST, to_feed NULLS FIRST LIMIT {MAX_MARKS}""",
    )
    return {"list": listed, "counts": counts, "marks": marks}
