"""The reference every dataset is compared with: what a `ReplaySession` consumer sees.

`reference_replay` replays a capture with one `orderbook()` consumer per market and one
raw trade consumer, as a user would, and returns each market's sequence of distinct
book states (valid, YES ladder, NO ladder in units) and the trades delivered.
`timed_states_from_changes` rebuilds the same sequences from a `book_changes` table,
one state per frame, so the two can be compared state by state, each with the time it
took effect, which `assert_same_times` holds to the session's: the receive time of the
frame that made it, or later where the book was handed over from another connection (a
make-before-break switch, a move between redundant feeds; the datasets stamp the new
book with the hand-over's time, while the session's book keeps its frame's and is
delivered when the hand-over comes).
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
Timed = dict[str, list[tuple[int, State]]]  # each distinct state, with when it took effect
Delivered = dict[str, list[tuple[int, int, State]]]  # every delivery: recv_ns, conn, state


def collapse(items: list[Any]) -> list[Any]:
    """The items without their consecutive repeats."""
    out: list[Any] = []
    for item in items:
        if not out or out[-1] != item:
            out.append(item)
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


async def _replay(root: Path, markets: list[str]) -> tuple[Delivered, list[Any]]:
    books: Delivered = {m: [] for m in markets}
    trades: list[Any] = []
    channels = [c for c in ("orderbook_delta", "trade") if c in Capture(root).channels]
    async with ReplaySession(root, channels=channels) as session:
        subs = {m: await session.orderbook(m, maxsize=1 << 20) for m in markets}
        tsub = await session.subscribe("trade", raw=True, maxsize=1 << 20) if (
            "trade" in channels) else None  # fmt: skip

        async def drain(m: str) -> None:
            async for snap in subs[m]:
                books[m].append((snap.recv_ns, snap.conn, _state(snap)))

        async def drain_trades() -> None:
            if tsub is not None:
                async for frame in tsub:
                    trades.append(frame)

        await asyncio.gather(*(drain(m) for m in markets), drain_trades())
    return books, trades


def reference_replay(root: Path) -> tuple[dict[str, list[State]], list[Any], Delivered]:
    """(each market's distinct book states, the trade frames, every book delivered)."""
    capture = Capture(root)
    markets = sorted(capture.markets("orderbook_delta")) if (
        "orderbook_delta" in capture.channels) else []  # fmt: skip
    delivered, trades = asyncio.run(_replay(root, markets))
    books = {m: collapse([state for _, _, state in got]) for m, got in delivered.items()}
    return books, trades, delivered


def assert_same_times(delivered: Delivered, timed: Timed) -> None:
    """Each distinct state took effect when the session's frame made it, or, handed over
    from another connection, no earlier."""
    for market, got in delivered.items():
        # each distinct state's first delivery, and whether the delivery before it came
        # from the same connection (a book handed back and forth between feeds may bring
        # the same state from another connection in between: that is a hand-over too)
        firsts: list[tuple[int, int, State, bool]] = []
        last_conn = None
        for recv_ns, conn, state in got:
            if not firsts or firsts[-1][2] != state:
                firsts.append((recv_ns, conn, state, conn == last_conn))
            last_conn = conn
        mine = timed.get(market, [])
        assert [s for _, _, s, _ in firsts] == [s for _, s in mine], market
        for i, ((recv_ns, _, _, same), (took_effect, _)) in enumerate(
            zip(firsts, mine, strict=True)
        ):
            if i and same:
                assert took_effect == recv_ns, (market, i)
            else:
                assert took_effect >= recv_ns, (market, i)


def state_before(timed: list[tuple[int, State]], ns: int) -> tuple[int, State] | None:
    """The last state that took effect before `ns` (and when), or None."""
    found = None
    for recv_ns, state in timed:
        if recv_ns >= ns:
            break
        found = (recv_ns, state)
    return found


def _units(value: Any, scale: int) -> int:
    return int(value.scaleb(scale))


def timed_states_from_changes(changes: pa.Table) -> Timed:
    """Each market's distinct states, one per frame (rows sharing `_frame`, or
    recv_ns/seq/conn), each with the recv_ns it took effect at."""
    books: dict[str, tuple[bool, dict[int, int], dict[int, int]]] = {}
    out: Timed = {}
    rows = changes.to_pylist()
    key = "_frame" if "_frame" in changes.column_names else None
    for i, r in enumerate(rows):
        m = r["market"]
        valid, yes, no = books.get(m, (True, {}, {}))
        if r["kind"] == "clear":
            yes, no = {}, {}
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
            state = (valid, tuple(sorted(yes.items())), tuple(sorted(no.items())))
            states = out.setdefault(m, [])
            if not states or states[-1][1] != state:
                states.append((r["recv_ns"], state))
    return out
