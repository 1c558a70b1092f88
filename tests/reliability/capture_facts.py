"""What a finished capture holds, read back through the project's own readers, and its
comparison with what the exchange says it sent.

This module owns the checking half of a reliability case: `verify_capture` (the
`kalshi-tape verify` report), the SQL views (`connections`, `gaps`, `events`,
`control`, `frames`), and a byte-exact comparison of every frame the recorder stored
with the exchange's truth: on each connection the recorder opened, the frames it
stored must be a prefix of the frames the exchange sent on that connection (all of
them unless the connection died with frames still in flight), digest for digest.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replay.server import frame_digest
from replay.sql.connection import connect
from replay.sql.verify import verify_capture
from schemas.channels import BOOK_CHANNELS
from schemas.events import ConnectionEvent, UnknownEvent, event_from_bytes

__all__ = [
    "CaptureFacts",
    "Delivery",
    "Sent",
    "TimedEvent",
    "compare_with_truth",
    "read_capture",
    "server_sent",
    "timed_events",
]


@dataclass
class Delivery:
    """The recorder's frames against the exchange's, connection by connection."""

    frames: int = 0  # inbound frames stored
    lost: int = 0  # frames the exchange sent on a connection after the last one stored
    unmatched: list[int] = field(default_factory=list)  # recorder conns matching no server conn

    @property
    def byte_exact(self) -> bool:
        return not self.unmatched


@dataclass
class CaptureFacts:
    """Everything a reliability case asserts about a capture."""

    problems: list[str]
    warnings: list[str]
    connections: list[dict[str, Any]]
    gap_kinds: Counter[str]
    unrecovered: int  # book gaps and resets with no resync after them (see read_capture)
    unrecovered_conns: list[int]
    unresyncable: int  # gaps and resets on channels without snapshots (trade...)
    events: list[tuple[str, dict[str, Any]]]
    control: list[dict[str, Any]]
    channel_frames: Counter[str]
    unknown_raw: list[bytes]
    big_frames: int
    marked_raw: int
    binary_frames: int  # inbound frames stored with opcode 2
    run_stop_reason: str | None
    delivery: Delivery
    sent_disorders: int
    sent_faults: Counter[str]

    @property
    def verifies(self) -> bool:
        return not self.problems

    def events_of(self, name: str) -> list[dict[str, Any]]:
        return [detail for type_, detail in self.events if type_ == name]

    def closes(self, **match: Any) -> list[dict[str, Any]]:
        """Close events whose detail has every key of `match` equal."""
        return [d for d in self.events_of("close") if all(d.get(k) == v for k, v in match.items())]

    @property
    def reconnects(self) -> int:
        return max(0, sum(1 for c in self.connections if c["opened"]) - 1)


@dataclass
class Sent:
    """What the exchange says it sent: digests per opened connection, in order, and how
    often a subscription's seq went backwards on the wire (a reorder within one sid)."""

    digests: list[list[str]]
    seq_disorders: int
    faults: Counter[str]


def server_sent(truth_path: Path, truth: Any) -> Sent:
    """Read the exchange's truth after it stopped.

    The truth file's `conn` records say which handshakes became connections; the
    in-memory truth (`Truth.frames`, `Truth.seqs`) holds the frames.
    """
    opened = []
    with truth_path.open("rb") as fh:
        for line in fh:
            record = json.loads(line)
            if record.get("kind") == "conn" and record.get("event") == "open":
                opened.append(record["conn"])
    disorders = 0
    for no in opened:
        for seqs in truth.seqs(no).values():
            disorders += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    faults = Counter(f["fault"] for f in truth.faults())
    return Sent([[f.digest for f in truth.frames(no)] for no in opened], disorders, faults)


def compare_with_truth(stored: list[list[str]], sent: list[list[str]]) -> Delivery:
    """Match each recorder connection, in order, to the next exchange one it is a prefix of."""
    delivery = Delivery(frames=sum(len(s) for s in stored))
    at = 0
    for conn_no, frames in enumerate(stored, start=1):
        for candidate in range(at, len(sent)):
            if sent[candidate][: len(frames)] == frames:
                delivery.lost += len(sent[candidate]) - len(frames)
                at = candidate + 1
                break
        else:
            delivery.unmatched.append(conn_no)
    return delivery


@dataclass(frozen=True)
class TimedEvent:
    """A `_session` event with its monotonic time (comparable with `time.monotonic_ns()`)."""

    conn: int
    type: str
    mono_ns: int
    event: ConnectionEvent | UnknownEvent


def timed_events(root: Path) -> list[TimedEvent]:
    """Every `_session` event of the capture, in idx order."""
    con = connect(root)
    try:
        rows = con.execute(
            "SELECT conn, type, mono_ns, raw FROM frames WHERE channel = '_session' ORDER BY idx"
        ).fetchall()
    finally:
        con.close()
    return [TimedEvent(conn, type_, mono, event_from_bytes(raw)) for conn, type_, mono, raw in rows]


_MARK = b"\xff\xfe\xfd"  # the bad_utf8 fault's bytes (replay.server.connection)


def read_capture(root: Path, sent: Sent) -> CaptureFacts:
    """Verify the capture at `root` and read what the checks need from its SQL views."""
    report = verify_capture(root)
    con = connect(root)

    def rows(sql: str) -> list[dict[str, Any]]:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    connections = rows(
        "SELECT conn, opened, close_code, disconnect_reason, frames_in FROM connections "
        "WHERE conn > 0 ORDER BY conn"
    )
    gaps = rows("SELECT conn, channel, kind, recovered FROM gaps")
    # A gap on a channel without snapshots (trade) has nothing to resync: the engine
    # records it and delivers on; `recovered` is NULL there.
    book_open = [g for g in gaps if g["recovered"] is False]
    assert all(g["channel"] in BOOK_CHANNELS for g in book_open)
    events = [
        (r["type"], json.loads(r["detail"]) if r["detail"] else {})
        for r in rows("SELECT type, detail FROM events ORDER BY idx")
    ]
    control = rows(
        "SELECT dir, type, sid, id, error_code FROM control WHERE dir = 'in' ORDER BY idx"
    )
    inbound = con.execute(
        "SELECT conn, channel, raw, opcode FROM frames WHERE dir = 'in' ORDER BY idx"
    ).fetchall()
    opened = [c["conn"] for c in connections if c["opened"]]
    per_conn: dict[int, list[str]] = {no: [] for no in opened}
    channels: Counter[str] = Counter()
    unknown, big, marked, binary = [], 0, 0, 0
    for conn, channel, raw, opcode in inbound:
        binary += opcode == 2
        per_conn.setdefault(conn, []).append(frame_digest(raw))
        channels[channel] += 1
        if channel == "_unknown":
            unknown.append(raw)
        big += len(raw) > (1 << 20)
        marked += _MARK in raw
    stops = [d.get("reason") for t, d in events if t == "run_stop"]
    con.close()
    return CaptureFacts(
        problems=report.problems(),
        warnings=report.warnings(),
        connections=connections,
        gap_kinds=Counter(g["kind"] for g in gaps),
        unrecovered=len(book_open),
        unrecovered_conns=sorted({g["conn"] for g in book_open}),
        unresyncable=sum(1 for g in gaps if g["recovered"] is None),
        events=events,
        control=control,
        channel_frames=channels,
        unknown_raw=unknown,
        big_frames=big,
        marked_raw=marked,
        binary_frames=binary,
        run_stop_reason=stops[-1] if stops else None,
        delivery=compare_with_truth([per_conn[no] for no in sorted(per_conn)], sent.digests),
        sent_disorders=sent.seq_disorders,
        sent_faults=sent.faults,
    )
