"""Which times a capture covered: its connections, their union, and the gaps left.

A capture covers a time when one of its connections was open then: from the `open`
event of a connection (`_session` channel, the record's `conn` is the connection) to
its `close` event; a connection still open when its run's records end (a recorder
killed with kill -9, a machine that lost power) covers until the run's last record.
A standby connection opened for a make-before-break switch overlaps the one it
replaces: the union counts that time once.

Times are `recv_ns` on one clock; B's intervals are moved onto A's clock by the caller
(`shifted`). Intervals are half-open `(start_ns, end_ns)` pairs. Everything here is a
pure function of Arrow tables and lists.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from schemas.record import Event

__all__ = [
    "SESSION_COLUMNS",
    "Connection",
    "Interval",
    "connections",
    "covered_ns",
    "gaps",
    "intersect",
    "shifted",
    "subtract",
    "union",
]

Interval = tuple[int, int]

#: The columns `connections` reads from the `_session` partition files.
SESSION_COLUMNS: Final = ("run_id", "idx", "conn", "recv_ns", "type")


@dataclass(frozen=True, slots=True)
class Connection:
    """One connection of a run, and the interval it was open.

    `closed` is False when no `close` event ended it: it ran to its run's last record.
    """

    run_id: str
    conn: int
    start_ns: int
    end_ns: int
    closed: bool

    @property
    def interval(self) -> Interval:
        return (self.start_ns, self.end_ns)


def _plain(column: pa.ChunkedArray) -> list[str]:
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, pa.string())
    return column.to_pylist()


def connections(events: pa.Table, run_ends: Mapping[str, int]) -> list[Connection]:
    """Every connection the `_session` records `events` open, with the interval it was
    open, sorted by start.

    Args:
        events: rows of `_session` partition files (columns `SESSION_COLUMNS`), any order.
        run_ends: each run's last `recv_ns` (over all its records, every channel): the
            end of a connection that no `close` event ended.
    """
    if events.num_rows == 0:
        return []
    types = events.column("type")
    wanted = pc.is_in(pc.cast(types, pa.string()) if pa.types.is_dictionary(types.type)
                      else types, pa.array([Event.OPEN.value, Event.CLOSE.value]))  # fmt: skip
    rows = events.filter(wanted)
    records = sorted(
        zip(
            _plain(rows.column("run_id")),
            rows.column("idx").to_pylist(),
            rows.column("conn").to_pylist(),
            rows.column("recv_ns").to_pylist(),
            _plain(rows.column("type")),
            strict=True,
        )
    )
    opened: dict[tuple[str, int], int] = {}
    found: list[Connection] = []
    for run_id, _idx, conn, recv_ns, type_ in records:
        key = (run_id, conn)
        if type_ == Event.OPEN:
            start = opened.pop(key, None)
            if start is not None:  # opened twice without a close: the first ends here
                found.append(Connection(run_id, conn, start, recv_ns, False))
            opened[key] = recv_ns
        else:
            start = opened.pop(key, None)
            if start is not None:  # a close of a connection never seen open: nothing
                found.append(Connection(run_id, conn, start, max(start, recv_ns), True))
    for (run_id, conn), start in opened.items():
        end = max(start, run_ends.get(run_id, start))
        found.append(Connection(run_id, conn, start, end, False))
    return sorted(found, key=lambda c: (c.start_ns, c.end_ns, c.run_id, c.conn))


def shifted(conns: Iterable[Connection], by_ns: int) -> list[Connection]:
    """The connections with their times moved by `by_ns` (onto another host's clock)."""
    return [replace(c, start_ns=c.start_ns + by_ns, end_ns=c.end_ns + by_ns) for c in conns]


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """The intervals merged where they overlap or touch, sorted; empty ones dropped."""
    out: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def gaps(intervals: Iterable[Interval]) -> list[Interval]:
    """The times between the first start and the last end that no interval covers."""
    merged = union(intervals)
    return [(a[1], b[0]) for a, b in itertools.pairwise(merged)]


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The times both `a` and `b` cover."""
    left, right = union(a), union(b)
    out: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if start < end:
            out.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The times `a` covers and `b` does not."""
    out: list[Interval] = []
    holes = union(b)
    for start, end in union(a):
        cursor = start
        for h_start, h_end in holes:
            if h_end <= cursor or h_start >= end:
                continue
            if h_start > cursor:
                out.append((cursor, h_start))
            cursor = max(cursor, h_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def covered_ns(intervals: Iterable[Interval]) -> int:
    """How long the intervals cover, counting overlaps once."""
    return sum(end - start for start, end in union(intervals))
