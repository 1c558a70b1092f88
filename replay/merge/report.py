"""What a merge did, for a person (text) or a program (JSON): the sources and their
feeds, B's clock offset and its evidence, each source's coverage, the merged coverage
and the gaps neither source covered.

Every time is on the first source's (A's) clock: B's connections are shown shifted by
the offset, as the merged capture stores them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from replay.merge.coverage import Connection, Interval, covered_ns, gaps, subtract, union
from replay.merge.offset import ClockOffset

__all__ = ["MergeReport", "SourceReport", "render_text"]


@dataclass(slots=True)
class SourceReport:
    """One source capture and what it brought to the merge."""

    name: str  # "A" or "B"
    root: str
    feed: int
    shift_ns: int  # added to its recv_ns (0 for A, -offset for B)
    runs: list[str] = field(default_factory=list)
    records: int = 0
    files: int = 0
    connections: list[Connection] = field(default_factory=list)  # on A's clock

    @property
    def covered(self) -> list[Interval]:
        return union(c.interval for c in self.connections)


@dataclass(slots=True)
class MergeReport:
    """The merge of two captures into one of two feeds."""

    to: str
    offset: ClockOffset
    sources: list[SourceReport]
    files: int = 0  # files written
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def covered(self) -> list[Interval]:
        """The times at least one source covered."""
        return union(i for s in self.sources for i in s.covered)

    @property
    def gaps(self) -> list[Interval]:
        """The times, between the first covered time and the last, that neither covered."""
        return gaps(self.covered)

    def only(self, source: SourceReport) -> list[Interval]:
        """The times `source` alone covered (the other source was not connected)."""
        others = [i for s in self.sources if s is not source for i in s.covered]
        return subtract(source.covered, others)

    def to_json(self) -> dict[str, Any]:
        covered = self.covered
        return {
            "to": self.to,
            "records": sum(s.records for s in self.sources),
            "files": self.files,
            "seconds": round(self.seconds, 3),
            "offset": self.offset.to_json(),
            "sources": [
                {
                    "name": s.name,
                    "root": s.root,
                    "feed": s.feed,
                    "shift_ns": s.shift_ns,
                    "runs": s.runs,
                    "records": s.records,
                    "files": s.files,
                    "connections": [
                        {
                            "run_id": c.run_id,
                            "conn": c.conn,
                            **_interval(c.interval),
                            "closed": c.closed,
                        }
                        for c in s.connections
                    ],
                    "covered": [_interval(i) for i in s.covered],
                    "covered_s": _seconds(covered_ns(s.covered)),
                    "only_s": _seconds(covered_ns(self.only(s))),
                }
                for s in self.sources
            ],
            "covered": [_interval(i) for i in covered],
            "covered_s": _seconds(covered_ns(covered)),
            "span": _interval((covered[0][0], covered[-1][1])) if covered else None,
            "gaps": [_interval(i) for i in self.gaps],
            "gaps_s": _seconds(covered_ns(self.gaps)),
            "warnings": self.warnings,
        }


def _iso(ns: int) -> str:
    stamp = dt.datetime.fromtimestamp(ns // 1000 / 1e6, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seconds(ns: int) -> float:
    return round(ns / 1e9, 3)


def _interval(interval: Interval) -> dict[str, Any]:
    start, end = interval
    return {"start": _iso(start), "end": _iso(end), "start_ns": start, "end_ns": end,
            "duration_s": _seconds(end - start)}  # fmt: skip


def _ms(ns: int | None, sign: bool = True) -> str:
    if ns is None:
        return "-"
    return f"{ns / 1e6:+.3f} ms" if sign else f"{ns / 1e6:.3f} ms"


def _duration(ns: int) -> str:
    return f"{ns / 1e9:.3f} s"


def _span_line(interval: Interval, note: str = "") -> str:
    start, end = interval
    tail = f"  {note}" if note else ""
    return f"    {_iso(start)} .. {_iso(end)}  {_duration(end - start):>12}{tail}"


def _offset_lines(offset: ClockOffset) -> list[str]:
    e = offset.evidence
    ahead = "ahead of" if offset.offset_ns >= 0 else "behind"
    if offset.source == "given":
        head = f"B's clock offset: {_ms(offset.offset_ns)} (given with --offset-ns)"
    else:
        head = (f"B's clock offset: {_ms(offset.offset_ns)} (B's clock {ahead} A's), the median "
                f"over {e.matches:,} trades received by both")  # fmt: skip
    lines = [head, f"  trades: {e.trades_a:,} in A, {e.trades_b:,} in B, {e.matches:,} in both"]
    if e.matches:
        lines.append(
            f"  recv_ns B - A over them: median {_ms(e.median_ns)}, p5..p95 {_ms(e.p5_ns)} .. "
            f"{_ms(e.p95_ns)}, MAD {_ms(e.mad_ns, sign=False)}, min..max {_ms(e.min_ns)} .. "
            f"{_ms(e.max_ns)}"
        )
    lines.append(f"  B's recv_ns moved by {_ms(-offset.offset_ns)} onto A's clock")
    return lines


def render_text(report: MergeReport) -> str:
    """The report for a person: a few lines per source, then the merged coverage."""
    total = sum(s.records for s in report.sources)
    out = [f"merged capture: {report.to} ({total:,} records in {report.files:,} files)"]
    for s in report.sources:
        runs = f"{len(s.runs)} run{'s' if len(s.runs) != 1 else ''}"
        out.append(f"  feed {s.feed}: {s.name} = {s.root} ({runs}, {s.records:,} records)")
    out += ["", *_offset_lines(report.offset), "", "coverage (UTC, on A's clock):"]
    for s in report.sources:
        covered = s.covered
        out.append(
            f"  {s.name}: {len(s.connections)} connection(s), {_duration(covered_ns(covered))} "
            f"covered, {_duration(covered_ns(report.only(s)))} of it by {s.name} alone"
        )
        for c in s.connections:
            end = "close" if c.closed else "run's last record (no close)"
            out.append(_span_line(c.interval, f"run {c.run_id} conn {c.conn}, to {end}"))
    covered = report.covered
    if covered:
        span = covered[-1][1] - covered[0][0]
        out.append(f"  merged: {_duration(covered_ns(covered))} covered of "
                   f"{_duration(span)}, in {len(covered)} interval(s)")  # fmt: skip
        out += [_span_line(i) for i in covered]
    else:
        out.append("  merged: no connection in either capture")
    holes = report.gaps
    if holes:
        out.append(f"  gaps (covered by neither): {len(holes)}, "
                   f"{_duration(covered_ns(holes))} in all")  # fmt: skip
        out += [_span_line(i) for i in holes]
    else:
        out.append("  gaps (covered by neither): none")
    if report.warnings:
        out += ["", "warnings:", *(f"  {w}" for w in report.warnings)]
    return "\n".join(out) + "\n"
