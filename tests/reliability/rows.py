"""The rows of the fault matrix: every fault the simulated exchange can inject, and what it
must leave behind.

This module owns the table itself, one `Row` per case: how to inject the fault
(`replay.server.SimServer.inject` for connection and frame faults; `add_fault` plus a
reconnect for handshake faults), the recorder limits it needs, what shows live that
it has played out (`effect`), and what the capture must hold afterwards (`marks`:
close codes and disconnect reasons in `_session`, gaps in the `gaps` view, rejected
frames under `_unknown` with a `frame_rejected` event...). Every kind of
`replay.server.faults.FaultKind` has at least one row; a guard test checks it.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from replay.server import FaultKind

from .capture_facts import CaptureFacts
from .rig import Rig

__all__ = ["ROWS", "Before", "Inject", "Row"]

K = FaultKind
_BOOK_TYPES = frozenset({"orderbook_snapshot", "orderbook_delta"})


@dataclass(frozen=True)
class Before:
    """Live counters just before an injection."""

    connects: int
    rotations: int
    resyncs: int
    duplicates: int
    fired: int  # faults of the row's kind the exchange has recorded

    @classmethod
    def of(cls, rig: Rig, kind: FaultKind) -> Before:
        stats, truth = rig.session.stats, rig.server.truth
        fired = sum(1 for f in truth.faults() if f["fault"] == kind.value) if truth else 0
        return cls(stats.connects, stats.rotations, stats.resyncs,
                   rig.session.engine.stats.duplicates, fired)  # fmt: skip


Inject = Callable[[Rig], Awaitable[None]]
Effect = Callable[[Rig, Before], bool]
Marks = Callable[[CaptureFacts, int], tuple[bool, str]]


@dataclass(frozen=True)
class Row:
    """One case of the matrix.

    Attributes:
        case: the row's id (pytest id and table key).
        kind: the fault kind it exercises.
        title: the fault as the table shows it.
        injections: each one injects the fault once.
        effect: true once an injection has visibly played out (then the rig waits for
            STREAMING with whole books).
        marks: what the capture must hold, given the number of injections.
        live: recorder `[live]` limits the row needs.
        server: `ServerConfig` fields the row needs.
        disrupts: a connection ends, so frames in flight may never arrive.
        keeps_running: the recorder stays up (False: it must stop, by design).
        known_bug: the row fails today for this reason (strict xfail).
    """

    case: str
    kind: FaultKind
    title: str
    injections: tuple[Inject, ...]
    effect: Effect
    marks: Marks
    live: dict[str, float] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    disrupts: bool = False
    keeps_running: bool = True
    known_bug: str | None = None


def _inject(kind: str, **args: Any) -> Inject:
    async def inject(rig: Rig) -> None:
        assert rig.server.inject(kind, **args) >= 1, f"no connection to inject {kind} into"

    return inject


def _handshake(spec: str) -> Inject:
    """Arm a handshake fault for the next attempts ({n}: the next one), then force a reconnect."""

    async def inject(rig: Rig) -> None:
        nxt = max(c.conn_no for c in rig.server.connections) + 1
        rig.server.add_fault(spec.format(n=nxt, m=nxt + 1))
        rig.server.inject("close", code=1011)

    return inject


def _disorders(rig: Rig) -> int:
    """Times a book subscription's seq went backwards in what the exchange sent so far."""
    truth, total = rig.server.truth, 0
    for conn in rig.server.connections if truth is not None else ():
        seqs: dict[int, list[int]] = {}
        for frame in truth.frames(conn.conn_no):  # type: ignore[union-attr]
            if frame.type in _BOOK_TYPES and frame.sid is not None and frame.seq is not None:
                seqs.setdefault(frame.sid, []).append(frame.seq)
        total += sum(sum(1 for a, b in itertools.pairwise(s) if b < a) for s in seqs.values())
    return total


def _last_fault(rig: Rig, kind: FaultKind) -> dict[str, Any]:
    truth = rig.server.truth
    faults = [f for f in truth.faults() if f["fault"] == kind.value] if truth else []
    return faults[-1] if faults else {}


async def _fire(rig: Rig, kind: FaultKind, **args: Any) -> None:
    before = Before.of(rig, kind)
    assert rig.server.inject(kind.value, **args) >= 1, f"no connection to inject {kind} into"
    await rig.until(lambda: Before.of(rig, kind).fired > before.fired, 5.0)


def _on_a_book(kind: FaultKind) -> Inject:
    """Inject onto the next order book frame. On a channel without snapshots (trade) a gap
    is recorded and the next frame delivered: nothing to resync there."""

    async def inject(rig: Rig) -> None:
        await _fire(rig, kind, channel="orderbook_delta")
        assert str(_last_fault(rig, kind).get("type", "")).startswith("orderbook")

    return inject


async def _reorder_within_one_book_sid(rig: Rig) -> None:
    """Reorder until a swap lands within one book subscription (a swap across two
    subscriptions breaks no seq; within a trade subscription there is nothing to resync)."""
    start = _disorders(rig)
    for _ in range(20):
        await _fire(rig, K.REORDER)
        if _disorders(rig) > start:
            return


def _reconnected(rig: Rig, before: Before) -> bool:
    return rig.session.stats.connects > before.connects


def _rotated(rig: Rig, before: Before) -> bool:
    return rig.session.stats.rotations > before.rotations


def _resynced(rig: Rig, before: Before) -> bool:
    return rig.session.stats.resyncs > before.resyncs


def _fired(kind: FaultKind) -> Effect:
    def effect(rig: Rig, before: Before) -> bool:
        return Before.of(rig, kind).fired > before.fired

    return effect


def _closes(count: int, label: str, **match: Any) -> Marks:
    """At least `count` per injection of close events matching `match`."""

    def marks(facts: CaptureFacts, n: int) -> tuple[bool, str]:
        found = len(facts.closes(**match))
        return found >= count * n, f"{label} x{found}"

    return marks


def _close_codes(codes: tuple[int, ...]) -> Marks:
    def marks(facts: CaptureFacts, n: int) -> tuple[bool, str]:
        found = [len(facts.closes(code=c, disconnect_reason="server_closed")) for c in codes]
        text = ", ".join(f"{c} x{k}" for c, k in zip(codes, found, strict=True))
        return all(found), f"close {text} (server_closed)"

    return marks


def _unavailable(facts: CaptureFacts, n: int) -> tuple[bool, str]:
    closes = len(facts.closes(code=1013, disconnect_reason="server_closed"))
    waits = [
        w for w in facts.events_of("reconnect_wait") if w.get("reason") == "server_unavailable"
    ]
    long_enough = all(w["delay_s"] >= 0.3 for w in waits)
    ok = closes >= n and len(waits) >= n and long_enough
    return ok, f"close 1013 x{closes}; reconnect_wait server_unavailable x{len(waits)} (≥ 0.3 s)"


def _permanent(facts: CaptureFacts, n: int) -> tuple[bool, str]:
    closes = len(facts.closes(code=4001, disconnect_reason="server_closed"))
    stop = facts.run_stop_reason or ""
    ok = closes == 1 and facts.reconnects == 0 and stop.startswith("session closed: ")
    ok = ok and "4001" in stop
    return ok, f"close 4001 x{closes}; run_stop '{facts.run_stop_reason}'"


def _gaps(*kinds: str, rejected: bool = False) -> Marks:
    def marks(facts: CaptureFacts, n: int) -> tuple[bool, str]:
        found = sum(facts.gap_kinds[k] for k in kinds)
        ok = found >= n and facts.unrecovered == 0
        text = "/".join(kinds) + f" x{found} in `gaps`, unrecovered {facts.unrecovered}"
        if rejected:  # every malformed frame sent, under _unknown with its event
            events, sent = len(facts.events_of("frame_rejected")), facts.sent_faults["malformed"]
            ok = ok and len(facts.unknown_raw) == sent == events
            text = f"{len(facts.unknown_raw)} under `_unknown`, frame_rejected x{events}; " + text
        return ok, text

    return marks


def _reorder(facts: CaptureFacts, n: int) -> tuple[bool, str]:
    """A swap within one subscription is a seq going backwards (a reset, then resync); a swap
    across two subscriptions breaks no seq and must pass unnoticed (stored as sent)."""
    within, resets = facts.sent_disorders, facts.gap_kinds["reset"]
    across = facts.sent_faults["reorder"] - within
    ok = within >= n and resets == within and facts.unrecovered == 0
    text = (
        f"within one sid x{within}: reset x{resets}, gap x{facts.gap_kinds['gap']} "
        f"in `gaps`, unrecovered {facts.unrecovered}; across sids x{across}: stored as sent"
    )
    return ok, text  # fmt: skip


def _bad_utf8(facts: CaptureFacts, n: int) -> tuple[bool, str]:
    marked = facts.marked_raw
    unknown = sum(1 for raw in facts.unknown_raw if b"\xff\xfe\xfd" in raw)
    events = len(facts.events_of("frame_rejected"))
    where = "`_unknown` + frame_rejected" if unknown else "its channel"
    return marked == n and events == unknown, f"x{marked} stored byte-exact in {where}"


def _binary(facts: CaptureFacts, n: int) -> tuple[bool, str]:
    return facts.binary_frames == n, f"x{facts.binary_frames} stored with opcode 2 (binary)"


def _oversized(facts: CaptureFacts, n: int) -> tuple[bool, str]:
    return facts.big_frames == n, f"x{facts.big_frames} frames > 1 MiB stored in their channel"


def _server_ended(type_: str, code: int | None) -> Marks:
    def marks(facts: CaptureFacts, n: int) -> tuple[bool, str]:
        found = sum(
            1 for c in facts.control
            if c["type"] == type_ and c["id"] is None and (code is None or c["error_code"] == code)
        )  # fmt: skip
        label = "unsubscribed" if code is None else f"error {code}"
        return found >= n, f"server {label} x{found} in `control`"

    return marks


def _attempt_errors(needle: str, waits: str | None) -> Marks:
    def marks(facts: CaptureFacts, n: int) -> tuple[bool, str]:
        errors = [e for e in facts.events_of("error") if needle in e.get("error", "")]
        retried = all(e.get("will_retry") for e in errors)
        text = f"error '{needle}' x{len(errors)} (will_retry)"
        ok = len(errors) >= n and retried
        if waits is not None:
            found = sum(1 for w in facts.events_of("reconnect_wait") if w.get("reason") == waits)
            ok = ok and found >= n
            text += f"; reconnect_wait {waits} x{found}"
        return ok, text

    return marks


_PING = {"ping_interval_s": 0.2, "ping_timeout_s": 0.2, "close_timeout_s": 0.2}
_STALE = {"stale_floor_s": 0.8, "stale_multiplier": 5.0, "stale_min_observations": 10,
          "stale_check_interval_s": 0.05}  # fmt: skip

ROWS: tuple[Row, ...] = (
    Row("close", K.CLOSE, "1000 / 1001 / 1011 / 1012",
        tuple(_inject("close", code=c) for c in (1000, 1001, 1011, 1012)),
        _reconnected, _close_codes((1000, 1001, 1011, 1012)), disrupts=True),
    Row("close-1013", K.CLOSE, "1013 (try again later)",
        (_inject("close", code=1013),) * 2, _reconnected, _unavailable, disrupts=True),
    Row("close-4001", K.CLOSE, "4001 (permanent: stops by design)",
        (_inject("close", code=4001),), lambda rig, b: not rig.running, _permanent,
        disrupts=True, keeps_running=False),
    Row("drop", K.DROP, "TCP abort, no close frame", (_inject("drop"),) * 2,
        _reconnected, _closes(1, "close 1006 network_error", code=1006,
                              disconnect_reason="network_error"), disrupts=True),
    Row("stall", K.STALL, "2 s, pings answered", (_inject("stall", duration_s=2.0),) * 2,
        _rotated, _closes(1, "close stale (make-before-break)", disconnect_reason="stale"),
        live=_STALE, disrupts=True),
    Row("no_pong", K.NO_PONG, "pings unanswered", (_inject("no_pong"),) * 2,
        _reconnected, _closes(1, "close ping_timeout", disconnect_reason="ping_timeout"),
        live=_PING, disrupts=True),
    Row("gap", K.GAP, "a seq skipped", (_on_a_book(K.GAP),) * 2, _resynced, _gaps("gap")),
    Row("dup", K.DUP, "a frame twice", (_inject("dup"),) * 2,
        lambda rig, b: rig.session.engine.stats.duplicates > b.duplicates, _gaps("duplicate")),
    Row("reorder", K.REORDER, "two frames swapped", (_reorder_within_one_book_sid,) * 2,
        _resynced, _reorder, server={"rate_fps": 2000.0}),  # batches of deltas to swap
    Row("malformed", K.MALFORMED, "JSON cut in half", (_on_a_book(K.MALFORMED),) * 2,
        _resynced, _gaps("gap", rejected=True)),
    Row("bad_utf8", K.BAD_UTF8, "invalid UTF-8 in a string", (_inject("bad_utf8"),) * 2,
        _fired(K.BAD_UTF8), _bad_utf8),
    Row("binary", K.BINARY, "a data frame as a binary message", (_inject("binary"),) * 2,
        _fired(K.BINARY), _binary),
    Row("oversized", K.OVERSIZED, "> 1 MiB, under max_frame_bytes",
        (_inject("oversized"),) * 2, _fired(K.OVERSIZED), _oversized),
    Row("oversized-limit", K.OVERSIZED, "> max_frame_bytes (set to 1 MiB)",
        (_inject("oversized"),), _reconnected,
        _closes(1, "close 1009 protocol_error (by us)", code=1009,
                disconnect_reason="protocol_error", initiator="client"),
        live={"max_frame_bytes": 1 << 20}, disrupts=True),
    Row("unsubscribed", K.UNSUBSCRIBED, "server-initiated",
        (_inject("unsubscribed"),), _fired(K.UNSUBSCRIBED), _server_ended("unsubscribed", None)),
    Row("error25", K.ERROR25, "buffer overflow (terminal)", (_inject("error25"),),
        _fired(K.ERROR25), _server_ended("error", 25)),
    Row("reject", K.REJECT, "HTTP 503, twice", (_handshake("reject:503@conn={n}+{m}"),),
        _reconnected, _attempt_errors("503", "server_unavailable"), disrupts=True),
    Row("slow_handshake", K.SLOW_HANDSHAKE, "1 s, over open_timeout 0.3 s",
        (_handshake("slow_handshake:1s@conn={n}"),), _reconnected,
        _attempt_errors("TimeoutError", None), live={"open_timeout_s": 0.3}, disrupts=True),
)  # fmt: skip
