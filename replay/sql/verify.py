"""`verify`: can this capture be trusted? An integrity report over every file and run.

Checks, in order:

1. Files: every file of the listing opens (Parquet footer), has the capture
   schema, and its data decodes; its rows belong where its path says (channel,
   UTC date, run). Files outside the layout are reported as stray.
2. Runs: `idx` is the total order of a run (docs/architecture.md section 3), so
   every idx from the first to the last must be present exactly once across all
   partitions. A hole in the middle is corruption. A run that
   ended without `run_stop` may have lost its non-durable tail, and frames of its
   last segment may still await publication: holes there are reported apart, as a
   warning. Duplicate idx values are corruption (identical copies or not).
3. Feed: seq gaps, resets and duplicates per subscription and whether each was
   recovered (the `gaps` view), reconnects with their close codes, `capture_gap`
   events, and frames per channel and market per hour.

A capture of redundant feeds (records of more than one `feed`; a null feed is feed
0) is reported per feed too: each run's records and connections per feed, each
channel's frames per feed, and reconnects within each feed (a feed's next connection
follows its own last one). A capture of one feed is reported as it always was.

Corruption (unreadable or misfiled files, duplicates, holes in the middle of a
run) makes `VerifyReport.corrupt` true and the command exit 1. Derived
`_checkpoint` rows take an idx like every record the recorder journals, so they
count in the idx checks (not in the seq or coverage checks, which are about data).

This module reads through `replay.sql.connection` only; it must not know how files are written.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import PurePath
from typing import Any, Final, NamedTuple

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs

from replay.reading.layout import CaptureListing, list_capture_files, open_parquet
from replay.sql.build import event_field, sql_literal
from replay.sql.connection import connect
from replay.sql.output import format_cell, render_table
from schemas.arrow import CAPTURE_SCHEMA, OPTIONAL_COLUMNS
from schemas.events import CaptureGap, RunStop
from schemas.storage import StorageOptions

__all__ = [
    "FileProblem",
    "IdxHole",
    "RunCheck",
    "VerifyReport",
    "footer_problem",
    "render_verify_report",
    "verify_capture",
]

_DAY_NS: Final = 86_400_000_000_000
_HOUR_NS: Final = 3_600_000_000_000
_LIST_MAX: Final = 50  # rows of each kind kept in the report (counts are always complete)


@dataclass(frozen=True, slots=True)
class FileProblem:
    path: str
    problem: str


@dataclass(frozen=True, slots=True)
class IdxHole:
    run_id: str
    first_missing: int
    last_missing: int
    count: int
    at_tail: bool  # within the last segment of a run that did not stop cleanly
    recorded: bool = False  # dropped by the recorder and recorded as a capture_gap event


@dataclass(slots=True)
class RunCheck:
    run_id: str
    first_idx: int
    last_idx: int
    frames: int
    start_ns: int
    end_ns: int
    clean_stop: bool
    holes: int = 0
    missing: int = 0
    duplicate_idx: int = 0
    #: Per feed, when the capture holds more than one: {feed, frames, connections}.
    feeds: list[dict[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class VerifyReport:
    root: str
    files: int = 0
    bytes_on_disk: int = 0
    #: The feeds the capture's records belong to ([0] for a capture of one feed).
    feeds: list[int] = field(default_factory=list)
    unreadable: list[FileProblem] = field(default_factory=list)
    misfiled: list[FileProblem] = field(default_factory=list)
    stray: list[FileProblem] = field(default_factory=list)
    runs: list[RunCheck] = field(default_factory=list)
    holes: list[IdxHole] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    duplicate_count: int = 0
    seq_gaps: list[dict[str, Any]] = field(default_factory=list)
    seq_summary: dict[str, int] = field(default_factory=dict)
    reconnects: list[dict[str, Any]] = field(default_factory=list)
    capture_gaps: list[dict[str, Any]] = field(default_factory=list)
    coverage: list[dict[str, Any]] = field(default_factory=list)

    @property
    def corrupt(self) -> bool:
        """True when the capture is damaged: exit status 1."""
        middle = any(not (h.at_tail or h.recorded) for h in self.holes)
        return bool(self.unreadable or self.misfiled or self.duplicate_count or middle)

    def problems(self) -> list[str]:
        out = [f"unreadable file {p.path}: {p.problem}" for p in self.unreadable]
        out += [f"misfiled rows in {p.path}: {p.problem}" for p in self.misfiled]
        out += [
            f"run {h.run_id}: idx {_span(h)} missing ({h.count}) in the middle of the run"
            for h in self.holes
            if not (h.at_tail or h.recorded)
        ]
        if self.duplicate_count:
            out.append(f"{self.duplicate_count} idx values stored more than once")
        return out

    def warnings(self) -> list[str]:
        out = [f"stray path {p.path}: {p.problem}" for p in self.stray]
        out += [
            f"run {h.run_id}: idx {_span(h)} missing ({h.count}) in its last segment "
            "(run did not stop cleanly: lost at a crash or not yet published)"
            for h in self.holes
            if h.at_tail and not h.recorded
        ]
        out += [
            f"run {r.run_id} ended without run_stop after idx {r.last_idx}: a crash or a live "
            "recorder; frames not yet durable then are lost"
            for r in self.runs
            if not r.clean_stop
        ]
        lost = self.seq_summary.get("unrecovered", 0)
        if lost:
            out.append(f"order book seq gaps or resets not followed by a resync: {lost}")
        out += [
            f"run {g['run_id']} idx {g['idx']}: the recorder lost {g['lost_frames']} frames "
            f"({g['reason']})"
            for g in self.capture_gaps
        ]
        return out

    @property
    def redundant(self) -> bool:
        """True when the records belong to more than one feed."""
        return len(self.feeds) > 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data |= {"corrupt": self.corrupt, "problems": self.problems(), "warnings": self.warnings()}
        if not self.redundant:  # one feed: as before feeds existed
            for run in data["runs"]:
                del run["feeds"]
        return data


def _span(hole: IdxHole) -> str:
    if hole.first_missing == hole.last_missing:
        return str(hole.first_missing)
    return f"{hole.first_missing}..{hole.last_missing}"


def verify_capture(
    root: str | os.PathLike[str],
    *,
    threads: int | None = None,
    storage: StorageOptions | None = None,
) -> VerifyReport:
    """Check a capture's integrity; see the module docstring for what is checked.

    `root` is a directory or an object-store URI (`s3://bucket/prefix`, reached with
    `storage`, by default the AWS environment).

    Raises:
        ConfigError: the root does not exist or is not a directory.
        StorageError: an object-store root cannot be reached.
    """
    listing = list_capture_files(root, storage)
    base = listing.location or listing.root
    fs = listing.filesystem
    report = VerifyReport(root=listing.uri, files=len(listing.files))
    report.bytes_on_disk = sum(f.size_bytes for f in listing.files)
    report.stray = [FileProblem(str(s.path), s.reason) for s in listing.stray]
    bad = {f.path: problem for f in listing.files if (problem := footer_problem(f.path, fs))}
    good = listing.without(bad)
    con = connect(base, listing=good, threads=threads)
    stats = _file_stats(con, good, bad)
    report.unreadable = [FileProblem(str(p), why) for p, why in sorted(bad.items())]
    good = good.without(bad)
    if bad:  # files whose data failed to decode: rebuild the views without them
        con = connect(base, listing=good, threads=threads)
    report.misfiled = _misfiled(good, stats)
    _check_runs(con, good, stats, report)
    _count_feeds(con, report)
    _check_feed(con, report)
    return report


def footer_problem(path: PurePath, filesystem: pafs.FileSystem | None = None) -> str | None:
    """Why a capture file's footer or schema is unusable, or None if it is fine."""
    try:
        schema = open_parquet(path, filesystem).schema_arrow
    except (OSError, pa.ArrowException) as exc:
        return f"cannot read the Parquet footer ({exc}); the file is partial or not Parquet"
    got = {f.name: _plain(f.type) for f in schema}
    want = {f.name: _plain(f.type) for f in CAPTURE_SCHEMA}
    for name in OPTIONAL_COLUMNS - got.keys():  # written before the column existed
        del want[name]
    if got != want:
        differ = sorted(str(item) for item in set(got.items()) ^ set(want.items()))
        return f"schema differs from the capture schema: {differ}"
    return None


def _plain(type_: pa.DataType) -> pa.DataType:
    return type_.value_type if pa.types.is_dictionary(type_) else type_


class _Group(NamedTuple):
    """Rows of one file that share a run, a channel and a UTC day."""

    run_id: str
    channel: str
    day: int
    rows: int
    first_idx: int
    last_idx: int
    first_ns: int
    last_ns: int
    raw_bytes: int


_STATS_SQL: Final = (
    "SELECT filename, run_id, channel, recv_ns // {day} AS day, count(*) AS n, "
    "min(idx), max(idx), min(recv_ns), max(recv_ns), sum(octet_length(raw)) "
    "FROM read_parquet([{files}], hive_partitioning = false, filename = true) "
    "GROUP BY ALL"
)

_Stats = dict[str, list[_Group]]  # by the file's name as DuckDB read it (`listing.sources`)


def _file_stats(
    con: duckdb.DuckDBPyConnection, listing: CaptureListing, bad: dict[PurePath, str]
) -> _Stats:
    """Per file, its groups of rows (`_Group`).

    Decoding every column (raw included) is the data check; a file that fails is
    moved to `bad` with the error.
    """

    def scan(sources: list[str]) -> list[tuple[Any, ...]]:
        if not sources:
            return []
        files = ", ".join(sql_literal(s) for s in sources)
        return con.execute(_STATS_SQL.format(day=_DAY_NS, files=files)).fetchall()

    paths = listing.paths()
    sources = listing.sources()
    try:
        rows = scan(sources)
    except duckdb.Error:
        rows = []
        for path, source in zip(paths, sources, strict=True):  # the culprits, one by one
            try:
                rows += scan([source])
            except duckdb.Error as exc:
                bad[path] = f"data does not decode: {str(exc).splitlines()[0]}"
    stats: _Stats = {}
    for filename, *rest in rows:
        stats.setdefault(filename, []).append(_Group(*rest))
    return stats


def _misfiled(listing: CaptureListing, stats: _Stats) -> list[FileProblem]:
    out = []
    for f, source in zip(listing.files, listing.sources(), strict=True):
        for g in stats.get(source, []):
            date = _date_of_day(g.day)
            if (g.run_id, g.channel, date) != (f.run_id, f.channel, f.date):
                problem = f"{g.rows} rows of run {g.run_id}, channel {g.channel}, date {date}"
                out.append(FileProblem(str(f.path), problem))
    return out


def _date_of_day(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _check_runs(
    con: duckdb.DuckDBPyConnection, listing: CaptureListing, stats: _Stats, report: VerifyReport
) -> None:
    """Per run: every idx from first to last exactly once."""
    stopped = {
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT run_id FROM events WHERE type = '{RunStop.name}'"
        ).fetchall()
    }
    runs: dict[str, RunCheck] = {}
    for group in (g for groups in stats.values() for g in groups):
        run = runs.get(group.run_id)
        if run is None:
            runs[group.run_id] = RunCheck(
                group.run_id,
                group.first_idx,
                group.last_idx,
                group.rows,
                group.first_ns,
                group.last_ns,
                group.run_id in stopped,
            )
            continue
        run.first_idx, run.last_idx = (
            min(run.first_idx, group.first_idx),
            max(run.last_idx, group.last_idx),
        )
        run.start_ns, run.end_ns = min(run.start_ns, group.first_ns), max(run.end_ns, group.last_ns)
        run.frames += group.rows
    settled = _settled_end(listing, stats)
    for run in sorted(runs.values(), key=lambda r: r.run_id):
        report.runs.append(run)
        distinct = _distinct_idx(con, run)
        run.duplicate_idx = run.frames - distinct
        run.missing = (run.last_idx - run.first_idx + 1) - distinct
        if run.missing:
            _holes(con, run, settled.get(run.run_id, run.first_idx - 1), report)
        if run.duplicate_idx:
            _duplicates(con, run, report)


def _distinct_idx(con: duckdb.DuckDBPyConnection, run: RunCheck) -> int:
    """How many distinct idx values the run has; a bitmap over its range when it fits."""
    if run.last_idx - run.first_idx < 1 << 32:  # at most 512 MiB of bitmap
        sql = (
            "SELECT bit_count(bitstring_agg(idx, ?::BIGINT, ?::BIGINT)) FROM frames "
            "WHERE run_id = ?"
        )
        params: list[Any] = [run.first_idx, run.last_idx, run.run_id]
    else:
        sql, params = (
            "SELECT count(DISTINCT idx) FROM frames WHERE run_id = ?",
            [run.run_id],
        )
    ((distinct,),) = con.execute(sql, params).fetchall()
    return int(distinct)


def _holes(
    con: duckdb.DuckDBPyConnection, run: RunCheck, settled_end: int, report: VerifyReport
) -> None:
    rows = con.execute(
        "SELECT prev, idx FROM (SELECT idx, lag(idx) OVER (ORDER BY idx) AS prev "
        "FROM frames WHERE run_id = ?) WHERE idx > prev + 1 ORDER BY idx",
        [run.run_id],
    ).fetchall()
    for prev, idx in rows:
        tail = not run.clean_stop and prev >= settled_end
        report.holes.append(IdxHole(run.run_id, prev + 1, idx - 1, idx - prev - 1, tail))
    run.holes = len(rows)


def _duplicates(con: duckdb.DuckDBPyConnection, run: RunCheck, report: VerifyReport) -> None:
    dupes = con.execute(
        "SELECT idx, count(*) AS copies, count(DISTINCT raw) = 1 AS identical "
        "FROM frames WHERE run_id = ? "
        "GROUP BY idx HAVING count(*) > 1 ORDER BY idx",
        [run.run_id],
    ).fetchall()
    report.duplicate_count += len(dupes)
    room = max(0, _LIST_MAX - len(report.duplicates))
    report.duplicates += [
        {"run_id": run.run_id, "idx": i, "copies": c, "identical": same}
        for i, c, same in dupes[:room]
    ]


def _settled_end(listing: CaptureListing, stats: _Stats) -> dict[str, int]:
    """Per run, the last idx of the segments before its last one (fully published)."""
    last_segment: dict[str, int] = {}
    for f in listing.files:
        if not f.suffix:
            last_segment[f.run_id] = max(last_segment.get(f.run_id, -1), f.segment)
    settled: dict[str, int] = {}
    for f, source in zip(listing.files, listing.sources(), strict=True):
        if f.segment < last_segment.get(f.run_id, -1):
            top = max((g.last_idx for g in stats.get(source, [])), default=None)
            if top is not None:
                settled[f.run_id] = max(settled.get(f.run_id, top), top)
    return settled


def _count_feeds(con: duckdb.DuckDBPyConnection, report: VerifyReport) -> None:
    """The feeds of the capture and, when there are several, each run's records and
    connections per feed (connection numbers are unique within a run across its feeds)."""
    rows = con.execute(
        "SELECT run_id, COALESCE(feed, 0) AS feed, count(*), "
        "count(DISTINCT conn) FILTER (WHERE conn > 0) FROM frames GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    report.feeds = sorted({feed for _, feed, _, _ in rows})
    if not report.redundant:
        return
    runs = {r.run_id: r for r in report.runs}
    for run_id, feed, frames, connections in rows:
        if run_id in runs:
            runs[run_id].feeds.append({"feed": feed, "frames": frames, "connections": connections})


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    table = con.sql(sql).to_arrow_table()  # Arrow: TIMESTAMPTZ needs no pytz this way
    return [{k: _jsonable(v) for k, v in row.items()} for row in table.to_pylist()]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _check_feed(con: duckdb.DuckDBPyConnection, report: VerifyReport) -> None:
    gaps = _rows(
        con,
        "SELECT run_id, conn, sid, channel, kind, prev_seq, seq, missing, idx, gap_time, "
        "resync_command, resync_snapshot_idx, recovered, recovery_s FROM gaps "
        "ORDER BY run_id, idx",
    )
    report.seq_gaps = gaps[:_LIST_MAX]
    summary = dict.fromkeys(("gap", "reset", "duplicate", "missing", "unrecovered"), 0)
    summary["unresyncable"] = 0  # on channels without snapshots: lost, nothing to resync
    for g in gaps:
        summary[g["kind"]] += 1
        summary["missing"] += g["missing"]
        if g["recovered"] is None:
            summary["unresyncable"] += 1
        elif not g["recovered"]:
            summary["unrecovered"] += 1
    report.seq_summary = summary
    # Each feed reconnects on its own: a connection's successor is the next of its feed.
    feed = "COALESCE(feed, 0) AS feed, " if report.redundant else ""
    report.reconnects = _rows(
        con,
        f"SELECT run_id, {feed}conn AS closed_conn, close_time, close_code, close_reason, "
        "disconnect_reason, next_conn, next_open_time, "
        "(epoch_us(next_open_time) - epoch_us(close_time)) / 1e6 AS downtime_s FROM ("
        "SELECT *, lead(conn) OVER w AS next_conn, lead(open_time) OVER w AS next_open_time "
        "FROM connections WINDOW w AS (PARTITION BY run_id, COALESCE(feed, 0) ORDER BY conn)) "
        "WHERE next_conn IS NOT NULL ORDER BY run_id, conn",
    )

    def gap(name: str, sql_type: str | None = None) -> str:
        return event_field(CaptureGap, name, sql_type, detail="detail")

    report.capture_gaps = _rows(
        con,
        f"SELECT run_id, idx, recv_time, {gap('lost_frames')} AS lost_frames, "
        f"{gap('reason')} AS reason, {gap('first_idx', 'BIGINT')} AS first_idx, "
        f"{gap('last_idx', 'BIGINT')} AS last_idx "
        f"FROM events WHERE type = '{CaptureGap.name}' ORDER BY run_id, idx",
    )
    # A capture_gap's event takes the idx after its range, so a hole never spans two.
    spans = [
        (g["run_id"], g["first_idx"], g["last_idx"])
        for g in report.capture_gaps
        if g["first_idx"] is not None and g["last_idx"] is not None
    ]
    report.holes = [
        replace(h, recorded=True)
        if any(r == h.run_id and a <= h.first_missing and h.last_missing <= b for r, a, b in spans)
        else h
        for h in report.holes
    ]
    report.coverage = _rows(
        con,
        f"SELECT channel, {feed}market_ticker, "
        f"make_timestamptz(recv_ns // {_HOUR_NS} * 3600000000) AS hour, count(*) AS frames "
        "FROM frames "
        "WHERE dir = 'in' AND channel NOT IN ('_control', '_session', '_unknown', '_checkpoint') "
        "GROUP BY ALL ORDER BY ALL",
    )


def _time(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _table(rows: list[dict[str, Any]], names: list[str]) -> str:
    cells = [[format_cell(r[n]) for n in names] for r in rows]
    numeric = [all(isinstance(r[n], (int, float)) for r in rows if r[n] is not None) for n in names]
    return "\n".join("  " + line for line in render_table(names, cells, numeric).splitlines())


def render_verify_report(report: VerifyReport) -> str:
    """The report as text: files, runs, seq gaps, reconnects, coverage, verdict."""
    out = [f"capture {report.root}: {report.files} files, {report.bytes_on_disk:,} bytes"]
    out.append(
        f"files: {report.files - len(report.unreadable)} readable, {len(report.unreadable)} "
        f"unreadable, {len(report.misfiled)} misfiled, {len(report.stray)} stray paths"
    )
    runs = [
        {
            "run": r.run_id,
            "idx": f"{r.first_idx}..{r.last_idx}",
            "frames": r.frames,
            "start": _time(r.start_ns),
            "end": _time(r.end_ns),
            "stop": "clean" if r.clean_stop else "no run_stop",
            "missing": r.missing,
            "dup idx": r.duplicate_idx,
        }
        for r in report.runs
    ]
    out += [f"runs: {len(runs)}", _table(runs, list(runs[0]))] if runs else ["runs: none"]
    if report.redundant:
        feeds = [{"run": r.run_id, **f} for r in report.runs for f in r.feeds]
        names = ["run", "feed", "frames", "connections"]
        out += [f"feeds: {len(report.feeds)}", _table(feeds, names)]
    s = report.seq_summary
    out.append(
        f"seq: {s.get('gap', 0)} gaps ({s.get('missing', 0)} messages missing), "
        f"{s.get('reset', 0)} resets, {s.get('duplicate', 0)} duplicates; "
        f"{s.get('unrecovered', 0)} order book gaps not recovered, "
        f"{s.get('unresyncable', 0)} on channels without snapshots (nothing to resync)"
    )
    if report.seq_gaps:
        names = ["run_id", "conn", "sid", "channel", "kind", "prev_seq", "seq", "idx"]
        out.append(_table(report.seq_gaps, [*names, "resync_command", "recovered"]))
    out.append(f"reconnects: {len(report.reconnects)}")
    if report.reconnects:
        names = ["run_id", *(["feed"] if report.redundant else []), "closed_conn", "close_code"]
        names += ["disconnect_reason", "next_conn", "downtime_s"]
        out.append(_table(report.reconnects, names))
    out.append("coverage (frames per channel):")
    names = ["channel", "markets", "hours", "frames"]
    names += [f"feed {f}" for f in report.feeds] if report.redundant else []
    out.append(_table(_coverage_by_channel(report.coverage, report.feeds), names))
    problems, warnings = report.problems(), report.warnings()
    out += ["problems:", *(f"  - {p}" for p in problems)] if problems else []
    out += ["warnings:", *(f"  - {w}" for w in warnings)] if warnings else []
    verdict = "CORRUPT" if report.corrupt else "OK"
    out.append(f"result: {verdict} ({len(problems)} problems, {len(warnings)} warnings)")
    return "\n".join(out)


def _coverage_by_channel(coverage: list[dict[str, Any]], feeds: list[int]) -> list[dict[str, Any]]:
    """Per channel: markets, hours and frames; and frames per feed (`feed <n>`) when the
    capture holds several (its coverage rows then have a `feed`)."""
    by: dict[str, dict[str, Any]] = {}
    feeds = feeds if len(feeds) > 1 else []
    for row in coverage:
        agg = by.setdefault(
            row["channel"], {"markets": set(), "hours": set(), "frames": 0, "feeds": {}}
        )
        agg["markets"].add(row["market_ticker"])
        agg["hours"].add(row["hour"])
        agg["frames"] += row["frames"]
        if "feed" in row:
            agg["feeds"][row["feed"]] = agg["feeds"].get(row["feed"], 0) + row["frames"]
    return [
        {
            "channel": ch,
            "markets": len(a["markets"] - {None}),
            "hours": len(a["hours"]),
            "frames": a["frames"],
            **{f"feed {f}": a["feeds"].get(f, 0) for f in feeds},
        }
        for ch, a in sorted(by.items())
    ]
