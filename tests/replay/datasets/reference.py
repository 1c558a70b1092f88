"""The reference every dataset is compared with: what a `ReplaySession` consumer sees.

`reference_books` replays a capture with one `orderbook()` consumer per market and one
raw trade consumer, as a user would, and returns each market's sequence of distinct
book states (valid, YES ladder, NO ladder in units) and the trades delivered.
`states_from_changes` rebuilds the same sequences from a `book_changes` table, one
state per frame, so the two can be compared state by state. `reference_replay` also
keeps every delivered state with the time it took effect (for depth and bars, which
sample the book at given times): its frame's recv_ns, or for a book a make-before-break
switch handed over, the switch's (the consumer saw the old connection's book until
then; the datasets stamp the new book's rows with that time).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from replay import ReplaySession
from replay.reading.capture import Capture
from replay.reading.session import CONN_STRIDE

State = tuple[bool, tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]
Timed = dict[str, list[tuple[int, State]]]  # every delivered state, with its recv_ns


def _collapse(states: list[State]) -> list[State]:
    out: list[State] = []
    for s in states:
        if not out or out[-1] != s:
            out.append(s)
    return out


def _state(snap: Any) -> State:
    return (
        bool(snap.valid),
        tuple(sorted((int(p), int(q)) for p, q in snap.yes_units.items())),
        tuple(sorted((int(p), int(q)) for p, q in snap.no_units.items())),
    )


def switch_times(capture: Capture) -> dict[int, int]:
    """Each replay connection a make-before-break switch moved delivery to: the switch's
    recv_ns."""
    out: dict[int, int] = {}
    if "_session" not in capture.channels:
        return out
    offsets = {run: i * CONN_STRIDE for i, run in enumerate(sorted(capture.runs))}
    for window in capture.read(["_session"], columns=["recv_ns", "raw"]):
        for recv_ns, raw in zip(window.table.column("recv_ns").to_pylist(),
                                window.table.column("raw").to_pylist(), strict=True):  # fmt: skip
            event = json.loads(raw)
            if event.get("type") == "switch":
                out[offsets[window.run_id] + event["new_conn"]] = recv_ns
    return out


async def _replay(root: Path, markets: list[str]) -> tuple[Timed, list[Any]]:
    switched = switch_times(Capture(root))
    books: Timed = {m: [] for m in markets}
    trades: list[Any] = []
    channels = [c for c in ("orderbook_delta", "trade") if c in Capture(root).channels]
    async with ReplaySession(root, channels=channels) as session:
        subs = {m: await session.orderbook(m, maxsize=1 << 20) for m in markets}
        tsub = await session.subscribe("trade", raw=True, maxsize=1 << 20) if (
            "trade" in channels) else None  # fmt: skip

        async def drain(m: str) -> None:
            async for snap in subs[m]:
                took_effect = max(snap.recv_ns, switched.get(snap.conn, 0))
                books[m].append((took_effect, _state(snap)))

        async def drain_trades() -> None:
            if tsub is not None:
                async for frame in tsub:
                    trades.append(frame)

        await asyncio.gather(*(drain(m) for m in markets), drain_trades())
    return books, trades


def reference_replay(root: Path) -> tuple[dict[str, list[State]], list[Any], Timed]:
    """(each market's distinct book states, the trade frames, every state with its time)."""
    capture = Capture(root)
    markets = sorted(capture.markets("orderbook_delta")) if (
        "orderbook_delta" in capture.channels) else []  # fmt: skip
    timed, trades = asyncio.run(_replay(root, markets))
    books = {m: _collapse([state for _, state in states]) for m, states in timed.items()}
    return books, trades, timed


def reference_books(root: Path) -> tuple[dict[str, list[State]], list[Any]]:
    books, trades, _ = reference_replay(root)
    return books, trades


def state_before(timed: list[tuple[int, State]], ns: int) -> tuple[int, State] | None:
    """The last state delivered before `ns` (and its recv_ns), or None."""
    found = None
    for recv_ns, state in timed:
        if recv_ns >= ns:
            break
        found = (recv_ns, state)
    return found


def _units(value: Any, scale: int) -> int:
    return int(value.scaleb(scale))


def states_from_changes(changes: pa.Table) -> dict[str, list[State]]:
    """One state per frame (rows sharing `_frame`, or recv_ns/seq/conn) per market."""
    books: dict[str, tuple[bool, dict[int, int], dict[int, int]]] = {}
    out: dict[str, list[State]] = {}
    rows = changes.to_pylist()
    key = "_frame" if "_frame" in changes.column_names else None
    for i, r in enumerate(rows):
        m = r["market"]
        valid, yes, no = books.get(m, (True, {}, {}))
        if r["kind"] == "clear":
            yes, no = {}, {}
            valid = r["valid"]
        else:
            side = yes if r["side"] == "yes" else no
            price = _units(r["price"], 4)
            size = _units(r["size"], 2)
            if size:
                side[price] = size
            else:
                side.pop(price, None)
            valid = r["valid"]
        books[m] = (valid, yes, no)
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        same = nxt is not None and nxt["market"] == m and (
            nxt[key] == r[key] if key else
            (nxt["recv_ns"], nxt["seq"], nxt["conn"]) == (r["recv_ns"], r["seq"], r["conn"])
        )  # fmt: skip
        if not same:
            out.setdefault(m, []).append((valid, tuple(sorted(yes.items())),
                                          tuple(sorted(no.items()))))  # fmt: skip
    return {m: _collapse(s) for m, s in out.items()}
