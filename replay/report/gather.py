"""What a report shows, read from the capture: `gather_report` and `ReportData`.

This module owns the report's data as a whole: the time range it covers, the header
(runs, channels, markets, frames, bytes, compression), the `verify` verdict and the
storage table, and it calls the sections' own readers (`replay.report.timeline`,
`replay.report.feeds`, `replay.report.series`, `replay.report.market`) on one
sandboxed DuckDB connection, while one thread reads the quotes and trades datasets
(their derivation, when they are not built, is mostly Python and numba; DuckDB's
queries release the interpreter).
Every section is aggregated in DuckDB to a bounded size, so a 10M-frame day gives a
report of a few MB whatever the capture's size. Times are ns in, epoch ms out (what
the charts' date axes take). It reads through `replay.sql` and `replay.reading` only.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from replay.reading.layout import CaptureListing, list_capture_files
from replay.report import feeds, market, series, timeline
from replay.report.window import Window
from replay.sql.connection import connect
from replay.sql.verify import footer_problem, verify_capture
from schemas.errors import ConfigError
from schemas.storage import StorageOptions

__all__ = ["ReportData", "gather_report"]


@dataclass(slots=True)
class ReportData:
    """Everything the page draws, as plain JSON-ready values (times in epoch ms)."""

    root: str
    window: Window
    header: dict[str, Any] = field(default_factory=dict)
    verify: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    gaps_total: int = 0
    #: A capture of more than one feed: `replay.report.feeds.summarise`, with its
    #: arbitration `moves`; empty for a capture of one feed (the page shows no feeds).
    feeds: dict[str, Any] = field(default_factory=dict)
    rates: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    markets: dict[str, Any] = field(default_factory=dict)
    storage: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def gather_report(
    root: str | os.PathLike[str],
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    markets: Sequence[str] | None = None,
    threads: int | None = None,
    storage: StorageOptions | None = None,
) -> ReportData:
    """Read what the report shows from the capture at `root`, over [start_ns, end_ns).

    Args:
        markets: the markets of the per-market section (default: the most active ones,
            `market.DEFAULT_MARKETS` of them).

    Raises:
        ConfigError: not a capture, no data in the range, or markets it does not hold.
        StorageError: an object-store root cannot be reached.
        duckdb.Error: a file failed to decode (the command line names it).
    """
    clock = _Clock()
    listing = list_capture_files(root, storage)
    bad = [f.path for f in listing.files if footer_problem(f.path, listing.filesystem)]
    good = listing.without(bad)
    base = listing.location or listing.root
    con = connect(base, listing=good, threads=threads)
    try:
        bounds = con.execute("SELECT min(recv_ns), max(recv_ns) FROM frames").fetchall()[0]
        if bounds[0] is None:
            raise ConfigError(
                "ROOT", f"{listing.uri} holds no captured data", "record into it first"
            )
        window = Window.of(bounds[0], bounds[1] + 1, start_ns, end_ns)
        data = ReportData(listing.uri, window)
        chosen = market.choose(con, window, markets)
        books = None
        if chosen["chosen"]:  # the datasets are read in a thread while the SQL sections run
            pool = ThreadPoolExecutor(1, thread_name_prefix="report-datasets")
            books = pool.submit(market.fetch, listing.uri, window, chosen["chosen"], storage)
            pool.shutdown(wait=False)  # the thread ends with its one task
        data.header = _header(con, good, window)
        data.header["unreadable_files"] = [str(p) for p in bad]
        clock.lap(data, "header")
        data.verify = _verdict(base, storage, threads)
        clock.lap(data, "verify")
        data.runs, data.connections = timeline.runs(con, window), timeline.connections(con, window)
        seq = data.verify["seq"]
        if window.narrowed or seq.get("gap", 0) + seq.get("reset", 0) + seq.get("duplicate", 0):
            data.gaps, data.gaps_total = timeline.gaps(con, window)
        # else verify, which read the gaps view over the whole capture, found none
        clock.lap(data, "timeline and gaps")
        per_feed = feeds.records(con, window)
        if len(per_feed) > 1:
            data.feeds = feeds.summarise(window, data.runs, data.connections, per_feed)
            data.feeds["moves"] = feeds.moves(con, window)
        clock.lap(data, "feeds")
        data.rates = series.rates(con, window)
        clock.lap(data, "rates")
        data.latency = series.latency(con, window)
        clock.lap(data, "latency")
        data.markets = (
            chosen if books is None else market.summarise(con, window, chosen, *books.result())
        )
        clock.lap(data, "markets (the datasets, read beside the rest)")
    finally:
        con.close()
    data.storage = _storage(listing)
    return data


class _Clock:
    def __init__(self) -> None:
        self.t = time.perf_counter()

    def lap(self, data: ReportData, name: str) -> None:
        now = time.perf_counter()
        data.timings_s[name] = round(now - self.t, 3)
        self.t = now


def _header(con: Any, listing: CaptureListing, window: Window) -> dict[str, Any]:
    """Runs, time range, channels, markets, frames, bytes and compression of the range."""
    dates = sorted(
        {f.date for f in listing.files if window.first_date <= f.date <= window.last_date}
    )
    on_disk = sum(f.size_bytes for f in listing.files if f.date in dates)
    where = window.where()
    rows = con.execute(
        f"SELECT channel, count(*) FILTER (WHERE {where}), sum(octet_length(raw)), "
        f"min(recv_ns) FILTER (WHERE {where}), max(recv_ns) FILTER (WHERE {where}) FROM frames "
        f"WHERE \"date\" BETWEEN '{window.first_date}' AND '{window.last_date}' "
        "GROUP BY channel ORDER BY channel"
    ).fetchall()
    channels = [{"channel": c, "frames": n} for c, n, _, _, _ in rows if n]
    raw = sum(int(r[2] or 0) for r in rows)
    firsts = [r[3] for r in rows if r[3] is not None]
    lasts = [r[4] for r in rows if r[4] is not None]
    (n_markets,) = con.execute(
        f"SELECT count(DISTINCT market_ticker) FROM frames WHERE market_ticker IS NOT NULL "
        f"AND {where}"
    ).fetchall()[0]
    return {
        "first_ms": min(firsts) / 1e6 if firsts else None,
        "last_ms": max(lasts) / 1e6 if lasts else None,
        "dates": dates,
        "channels": channels,
        "frames": sum(c["frames"] for c in channels),
        "markets": int(n_markets),
        "files": sum(1 for f in listing.files if f.date in dates),
        "bytes_on_disk": on_disk,
        "raw_bytes": raw,
        "compression": round(raw / on_disk, 2) if on_disk else None,
    }


def _verdict(base: Any, storage: StorageOptions | None, threads: int | None) -> dict[str, Any]:
    """`verify` over the whole capture: its verdict, problems, warnings and seq summary."""
    report = verify_capture(base, threads=threads, storage=storage)
    return {
        "verdict": "CORRUPT" if report.corrupt else "OK",
        "problems": report.problems(),
        "warnings": report.warnings(),
        "seq": report.seq_summary,
        "files": report.files,
        "reconnects": len(report.reconnects),
    }


def _storage(listing: CaptureListing) -> list[dict[str, Any]]:
    """Files per channel and date: count, bytes, and how far compaction has gone.

    A partition is `compacted` when every live file is a compaction output, `awaiting
    compaction` while several publisher files sit side by side, else `single file`.
    """
    parts: dict[tuple[str, str], dict[str, Any]] = {}
    for f in listing.files:
        p = parts.setdefault((f.channel, f.date), _partition(f.channel, f.date))
        p["files"] += 1
        p["bytes"] += f.size_bytes
        p["compacted_files" if f.suffix else "publisher_files"] += 1
    for f in listing.superseded:
        parts.setdefault((f.channel, f.date), _partition(f.channel, f.date))["superseded"] += 1
    for p in parts.values():
        if p["publisher_files"] == 0 and p["compacted_files"]:
            p["state"] = "compacted"
        elif p["publisher_files"] > 1:
            p["state"] = "awaiting compaction"
        else:
            p["state"] = "single file" if p["files"] else "superseded only"
    return [parts[k] for k in sorted(parts)]


def _partition(channel: str, date: str) -> dict[str, Any]:
    return {"channel": channel, "date": date, "files": 0, "bytes": 0, "publisher_files": 0,
            "compacted_files": 0, "superseded": 0, "state": ""}  # fmt: skip


def iso_ms(ms: float | None) -> str:
    """An epoch-ms time as ISO-8601 UTC with milliseconds ('-' for None)."""
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1e3, tz=dt.UTC).isoformat(timespec="milliseconds")
