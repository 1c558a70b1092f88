"""The reference every dataset is compared with: what a `ReplaySession` consumer sees.

`reference_books` replays a capture with one `orderbook()` consumer per market and one
raw trade consumer, as a user would, and returns each market's sequence of distinct
book states (valid, YES ladder, NO ladder in units) and the trades delivered.
`states_from_changes` rebuilds the same sequences from a `book_changes` table, one
state per frame, so the two can be compared state by state.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyarrow as pa

from replay import ReplaySession
from replay.reading.capture import Capture

State = tuple[bool, tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


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


async def _replay(root: Path, markets: list[str]) -> tuple[dict[str, list[State]], list[Any]]:
    books: dict[str, list[State]] = {m: [] for m in markets}
    trades: list[Any] = []
    channels = [c for c in ("orderbook_delta", "trade") if c in Capture(root).channels]
    async with ReplaySession(root, channels=channels) as session:
        subs = {m: await session.orderbook(m, maxsize=1 << 20) for m in markets}
        tsub = await session.subscribe("trade", raw=True, maxsize=1 << 20) if (
            "trade" in channels) else None  # fmt: skip

        async def drain(m: str) -> None:
            async for snap in subs[m]:
                books[m].append(_state(snap))

        async def drain_trades() -> None:
            if tsub is not None:
                async for frame in tsub:
                    trades.append(frame)

        await asyncio.gather(*(drain(m) for m in markets), drain_trades())
    return {m: _collapse(s) for m, s in books.items()}, trades


def reference_books(root: Path) -> tuple[dict[str, list[State]], list[Any]]:
    capture = Capture(root)
    markets = sorted(capture.markets("orderbook_delta")) if (
        "orderbook_delta" in capture.channels) else []  # fmt: skip
    return asyncio.run(_replay(root, markets))


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
