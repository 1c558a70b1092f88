"""`inspect`: what a capture holds, at a glance.

Runs (id, start, end, frames, connections, clean stop), the time range, frames
per channel, the number of markets, bytes on disk and the compression ratio (the
sum of `len(raw)` over the bytes of the files). Files whose footer cannot be read
are left out and counted; `verify` says why.

A capture of redundant feeds (records of more than one `feed`; a null feed is feed
0) also says, per run, the records and connections of each feed and, per channel,
the records of each feed. A capture of one feed is summarised as it always was.

Named `summary` rather than `inspect` so that nothing on `sys.path` can shadow the
standard library's `inspect`. It reads through `replay.sql.connection` only.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from replay.reading.layout import list_capture_files
from replay.sql.connection import connect
from replay.sql.output import render_table
from replay.sql.verify import footer_problem
from schemas.events import RunStop
from schemas.storage import StorageOptions

__all__ = ["CaptureSummary", "FeedCount", "RunSummary", "render_summary", "summarize_capture"]


@dataclass(frozen=True, slots=True)
class FeedCount:
    """The records (`frames`) and connections of one feed of a run."""

    feed: int
    frames: int
    connections: int


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    start: str
    end: str
    frames: int
    connections: int
    clean_stop: bool
    #: Per feed, when the capture holds more than one (else empty).
    feeds: tuple[FeedCount, ...] = ()


@dataclass(slots=True)
class CaptureSummary:
    root: str
    files: int = 0
    unreadable_files: int = 0
    bytes_on_disk: int = 0
    raw_bytes: int = 0
    frames: int = 0
    markets: int = 0
    first_time: str | None = None
    last_time: str | None = None
    dates: list[str] = field(default_factory=list)
    #: The feeds the capture's records belong to ([0] for a capture of one feed).
    feeds: list[int] = field(default_factory=list)
    runs: list[RunSummary] = field(default_factory=list)
    #: Per channel: frames, files, bytes_on_disk, raw_bytes and, when the capture holds
    #: more than one feed, `feeds` ({feed, frames} per feed).
    channels: list[dict[str, Any]] = field(default_factory=list)

    @property
    def compression_ratio(self) -> float | None:
        """Raw frame bytes per byte on disk (None for an empty capture)."""
        return self.raw_bytes / self.bytes_on_disk if self.bytes_on_disk else None

    @property
    def redundant(self) -> bool:
        """True when the records belong to more than one feed."""
        return len(self.feeds) > 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self) | {"compression_ratio": self.compression_ratio}
        if not self.redundant:  # one feed: as before feeds existed
            for run in data["runs"]:
                del run["feeds"]
        return data


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return dt.datetime.fromtimestamp(ns // 1000 / 1e6, tz=dt.UTC).isoformat()


def summarize_capture(
    root: str | os.PathLike[str],
    *,
    threads: int | None = None,
    storage: StorageOptions | None = None,
) -> CaptureSummary:
    """Summarise the capture at `root` (reads every file's `raw` lengths once).

    `root` is a directory or an object-store URI (`s3://bucket/prefix`, reached with
    `storage`, by default the AWS environment).

    Raises:
        ConfigError: the root does not exist or is not a directory.
        StorageError: an object-store root cannot be reached.
    """
    listing = list_capture_files(root, storage)
    base = listing.location or listing.root
    bad = [f.path for f in listing.files if footer_problem(f.path, listing.filesystem)]
    good = listing.without(bad)
    summary = CaptureSummary(listing.uri, files=len(good.files), unreadable_files=len(bad))
    summary.bytes_on_disk = sum(f.size_bytes for f in good.files)
    summary.dates = sorted({f.date for f in good.files})
    con = connect(base, listing=good, threads=threads)
    file_bytes: dict[str, int] = {}
    file_count: dict[str, int] = {}
    for f in good.files:
        file_bytes[f.channel] = file_bytes.get(f.channel, 0) + f.size_bytes
        file_count[f.channel] = file_count.get(f.channel, 0) + 1
    rows = con.execute(
        "SELECT channel, COALESCE(feed, 0) AS feed, count(*), sum(octet_length(raw)), "
        "min(recv_ns), max(recv_ns) FROM frames GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    summary.feeds = sorted({r[1] for r in rows})
    by_channel: dict[str, dict[str, Any]] = {}
    for channel, feed, frames, raw_bytes, _, _ in rows:
        entry = by_channel.get(channel)
        if entry is None:
            entry = by_channel[channel] = {
                "channel": channel,
                "frames": 0,
                "files": file_count.get(channel, 0),
                "bytes_on_disk": file_bytes.get(channel, 0),
                "raw_bytes": 0,
            }
            if summary.redundant:
                entry["feeds"] = []
        entry["frames"] += frames
        entry["raw_bytes"] += int(raw_bytes or 0)
        if summary.redundant:
            entry["feeds"].append({"feed": feed, "frames": frames})
        summary.frames += frames
        summary.raw_bytes += int(raw_bytes or 0)
    summary.channels = list(by_channel.values())
    if rows:
        summary.first_time = _iso(min(r[4] for r in rows))
        summary.last_time = _iso(max(r[5] for r in rows))
    ((summary.markets,),) = con.execute(
        "SELECT count(DISTINCT market_ticker) FROM frames WHERE market_ticker IS NOT NULL"
    ).fetchall()
    stops = f"SELECT run_id FROM events WHERE type = '{RunStop.name}'"
    stopped = {r[0] for r in con.execute(stops).fetchall()}
    per_feed: dict[str, list[tuple[int, int, int, int, int]]] = {}
    for run_id, feed, start, end, frames, conns in con.execute(
        "SELECT run_id, COALESCE(feed, 0) AS feed, min(recv_ns), max(recv_ns), count(*), "
        "count(DISTINCT conn) FILTER (WHERE conn > 0) FROM frames GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        per_feed.setdefault(run_id, []).append((feed, start, end, frames, conns))
    for run_id, feeds in per_feed.items():
        # Connection numbers are unique within a run across its feeds: they add up.
        summary.runs.append(
            RunSummary(
                run_id,
                _iso(min(f[1] for f in feeds)) or "",
                _iso(max(f[2] for f in feeds)) or "",
                sum(f[3] for f in feeds),
                sum(f[4] for f in feeds),
                run_id in stopped,
                tuple(FeedCount(f[0], f[3], f[4]) for f in feeds) if summary.redundant else (),
            )
        )
    return summary


def render_summary(s: CaptureSummary) -> str:
    """The summary as text."""
    ratio = f"{s.compression_ratio:.2f}x" if s.compression_ratio else "n/a"
    feeds = f"; feeds: {len(s.feeds)}" if s.redundant else ""
    out = [
        f"capture {s.root}",
        f"time range: {s.first_time or '-'} .. {s.last_time or '-'} ({len(s.dates)} dates)",
        f"frames: {s.frames:,} in {s.files} files; markets: {s.markets}{feeds}",
        f"bytes on disk: {s.bytes_on_disk:,}; raw frame bytes: {s.raw_bytes:,}; "
        f"compression {ratio}",
    ]
    if s.unreadable_files:
        out.append(f"unreadable files left out: {s.unreadable_files} (run `kalshi-tape verify`)")
    runs = [
        [
            r.run_id,
            r.start,
            r.end,
            f"{r.frames:,}",
            str(r.connections),
            "clean" if r.clean_stop else "no",
        ]
        for r in s.runs
    ]
    names = ["run", "start", "end", "frames", "connections", "stopped cleanly"]
    out += [
        f"runs: {len(runs)}",
        _indent(render_table(names, runs, [False, False, False, True, True, False])),
    ]
    if s.redundant:
        per_feed = [
            [r.run_id, str(f.feed), f"{f.frames:,}", str(f.connections)]
            for r in s.runs
            for f in r.feeds
        ]
        names = ["run", "feed", "frames", "connections"]
        out += ["feeds:", _indent(render_table(names, per_feed, [False, True, True, True]))]
    channels = [
        [
            c["channel"],
            f"{c['frames']:,}",
            str(c["files"]),
            f"{c['bytes_on_disk']:,}",
            f"{c['raw_bytes']:,}",
            *_feed_cells(s.feeds, c.get("feeds", [])),
        ]
        for c in s.channels
    ]
    names = ["channel", "frames", "files", "bytes on disk", "raw bytes"]
    names += [f"feed {f}" for f in s.feeds] if s.redundant else []
    numeric = [False] + [True] * (len(names) - 1)
    out += ["channels:", _indent(render_table(names, channels, numeric))]
    return "\n".join(out)


def _feed_cells(feeds: list[int], counts: list[dict[str, int]]) -> list[str]:
    """A channel's frames of each feed of a redundant capture (no cells for one feed)."""
    if len(feeds) < 2:
        return []
    frames = {c["feed"]: c["frames"] for c in counts}
    return [f"{frames.get(f, 0):,}" for f in feeds]


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
