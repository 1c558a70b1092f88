"""Small captures for the datasets' rules, built with the shared capture factory.

`build_rules_capture` puts every rule of docs/protocol.md section 9 the derive must follow
into one run: duplicates, a gap and its resync, a reset, a disconnect and a
reconnect, a make-before-break rotation, sub-penny prices, fractional sizes,
legacy cents, empty and one-sided snapshots, numbers sent as JSON numbers, a
binary frame, a delta before any snapshot, an unsubscribe. `random_capture`
builds a random stream of the same ingredients from a seed list (Hypothesis).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.events import Attempt, Closed, Opened, RunStart, RunStop
from tests.replay.capture_factory import (
    BASE_NS,
    M1,
    M2,
    RUN_A,
    URL,
    RunBuilder,
    delta,
    snapshot,
    subscribe,
    subscribed,
    trade,
    update_get_snapshot,
)

__all__ = ["build_rules_capture", "random_capture", "random_feeds_capture"]


def _open(run: RunBuilder, conn: int, cmd: int, *, standby: bool = False) -> None:
    run.event(Attempt(url=URL, attempt=1, standby=standby), conn)
    run.event(Opened(url=URL, standby=standby), conn)
    run.send(subscribe(cmd, ["orderbook_delta"], [M1, M2]), conn)
    run.send(subscribe(cmd + 1, ["trade"]), conn)
    run.receive(subscribed(cmd, "orderbook_delta", 1), conn)
    run.receive(subscribed(cmd + 1, "trade", 2), conn)


def build_rules_capture(root: Path) -> Path:
    a = RunBuilder(root, RUN_A, BASE_NS)
    a.event(RunStart(run_id=RUN_A, version="0.1.0"), 0)
    _open(a, 1, 1)
    a.receive(snapshot(1, 1, M1, [["0.4525", "10.50"], ["0.4500", "3.00"]], [["0.5000", "1.25"]]))
    a.receive(snapshot(1, 2, M2, None, None))  # empty: both keys left out
    a.receive(delta(1, 3, M1, "0.4525", "-0.50", "yes"))  # fractional
    a.receive(delta(1, 3, M1, "0.4525", "-0.50", "yes"))  # duplicate
    a.receive(delta(1, 4, M2, 31, 5, "no", legacy=True))  # legacy cents on an empty book
    a.receive(delta(1, 5, M2, "0.3100", "-5.00", "no"))  # the level goes
    a.receive(delta(1, 6, M2, "0.2000", "-1.00", "yes"))  # removing from nothing: no change
    raw = json.dumps(
        {
            "type": "orderbook_delta",
            "sid": 1,
            "seq": 7,
            "msg": {"market_ticker": M1, "price_dollars": 0.46, "delta_fp": 2.5, "side": "yes"},
        }
    )
    a.receive(raw.encode())  # JSON numbers, read exactly
    a.receive(delta(1, 8, M1, "0.4600", "1.00", "yes"), binary=True)
    a.receive(trade(2, 1, M1, "0.4525", "0.5475", "0.50"))
    a.receive(trade(2, 1, M1, "0.4525", "0.5475", "0.50"))  # duplicate trade
    a.receive(trade(2, 2, M2, 31, 69, 4, legacy=True))
    a.receive(delta(1, 11, M1, "0.4700", "1.00", "yes"))  # gap
    a.send(update_get_snapshot(10, 1, [M1, M2]))
    a.receive(snapshot(1, 12, M1, [["0.4700", "2.00"]], None, id_=10))  # one-sided
    a.receive(delta(1, 13, M2, "0.3000", "1.00", "yes"))  # no book yet: dropped
    a.receive(snapshot(1, 14, M2, None, [["0.6000", "7.00"]], id_=10))
    a.receive(snapshot(1, 15, M1, [["0.4800", "1.00"]], [["0.5000", "2.00"]]))  # in-order resnap
    a.receive(delta(1, 16, M1, "0.4800", "2.00", "yes"))
    a.receive(delta(1, 9, M1, "0.4800", "1.00", "yes"))  # reset
    a.receive(trade(2, 5, M1, "0.4800", "0.5200", "1.00"))  # trade gap
    a.send(update_get_snapshot(11, 1, [M1, M2]))
    a.receive(snapshot(1, 17, M1, [["0.4100", "4.00"]], [["0.5500", "4.00"]], id_=11))
    a.receive(snapshot(1, 18, M2, [["0.2000", "1.00"]], [["0.7000", "1.00"]], id_=11))
    for i in range(6):
        a.receive(delta(1, 19 + i, M1 if i % 2 else M2, f"0.{20 + i:02d}00", "1.00", "yes"))
    # make-before-break: a standby connection, its snapshots, then the switch
    _open(a, 2, 20, standby=True)
    a.receive(delta(1, 25, M1, "0.4100", "1.00", "yes"))  # the active one goes on
    a.receive(snapshot(1, 1, M1, [["0.4100", "5.00"]], [["0.5500", "4.00"]]), 2)
    a.receive(trade(2, 6, M1, "0.4100", "0.5900", "1.00"))
    a.receive(trade(2, 1, M1, "0.4100", "0.5900", "1.00"), 2)  # the same trade, new conn
    a.receive(snapshot(1, 2, M2, [["0.2500", "1.00"]], [["0.7000", "1.00"]]), 2)
    a.receive(delta(1, 3, M2, "0.2500", "2.00", "yes"), 2)
    a.event(Closed(code=1000, reason="rotated", disconnect_reason="rotation",
                   will_reconnect=False), 1)  # fmt: skip
    a.receive(delta(1, 4, M1, "0.4000", "3.00", "yes"), 2)
    a.receive(trade(2, 2, M2, "0.2500", "0.7500", "2.00"), 2)
    a.advance(3_000_000_000)
    a.event(Closed(code=1006, reason="", disconnect_reason="transport"), 2)
    _open(a, 3, 30)
    a.receive(snapshot(1, 1, M1, [["0.0100", "1.00"], ["0.9900", "1.00"]], [["0.0001", "1.00"]]),
              3)  # fmt: skip
    a.receive(delta(1, 2, M1, "0.9900", "-1.00", "yes"), 3)  # the best goes: rescan
    a.receive(snapshot(1, 3, M2, [["1.0000", "1.00"]], [["0.0000", "2.00"]]), 3)
    a.event(RunStop(reason="signal"), 0)
    a.write()
    return root


def random_capture(root: Path, steps: list[tuple[int, int, int, int]]) -> Path:
    """A run from random steps (op, market, price, size): in-order book frames mostly, with
    duplicates, skips, resets, reconnects, trades, legacy forms and resyncs mixed in."""
    a = RunBuilder(root, RUN_A, BASE_NS, step_ns=7_000_000)
    a.event(RunStart(run_id=RUN_A, version="0.1.0"), 0)
    conn, cmd = 1, 1
    _open(a, conn, cmd)
    seq = {1: 0, 2: 0}
    markets = [M1, M2]

    def book_frame(frame: dict[str, Any]) -> None:
        a.receive(frame, conn)

    for op, m, price, size in steps:
        market = markets[m % 2]
        p = f"0.{price % 100:02d}{(price // 100) % 100:02d}"
        q = f"{size % 50}.{(size // 50) % 100:02d}"
        if op < 50:
            seq[1] += 1
            side = "yes" if size % 2 else "no"
            sign = "-" if op % 3 == 0 else ""
            book_frame(delta(1, seq[1], market, p, sign + q, side))
        elif op < 58:
            seq[1] += 1
            book_frame(delta(1, seq[1], market, price % 100, size % 7, "yes", legacy=True))
        elif op < 66:
            seq[1] += 1
            yes = [[p, q]] if size % 3 else None
            no = [[f"0.{(price + 7) % 100:02d}00", "2.00"]] if size % 5 else None
            book_frame(snapshot(1, seq[1], market, yes, no))
        elif op < 72:
            book_frame(delta(1, seq[1], market, p, q, "yes"))  # duplicate seq
        elif op < 76:
            seq[1] += 2  # a gap, then the resync
            book_frame(delta(1, seq[1], market, p, q, "yes"))
            cmd += 1
            a.send(update_get_snapshot(cmd, 1, [M1, M2]), conn)
        elif op < 78:
            book_frame(delta(1, max(1, seq[1] - 3), market, p, q, "no"))  # reset
        elif op < 92:
            seq[2] += 1 + (op == 91)
            a.receive(trade(2, seq[2], market, p, "0.5000", q or "1.00"), conn)
        elif op < 96:
            a.advance(400_000_000)  # time passes (depth, bars)
        else:
            a.event(Closed(code=1006, reason="", disconnect_reason="transport"), conn)
            conn += 1
            cmd += 10
            _open(a, conn, cmd)
            seq = {1: 0, 2: 0}
    a.event(RunStop(reason="signal"), 0)
    a.write()
    return root


def random_feeds_capture(root: Path, steps: list[tuple[int, int, int, int]]) -> Path:
    """A run of two redundant feeds from random steps (op, a, b, c): one exchange's book
    changes and trades, which each feed delivers in its own time (so the feeds interleave
    and either may lead), with gaps and their resyncs, duplicates and reconnects on
    either feed: books move between the feeds, are lost on both and come back."""
    from tests.replay.report.feeds_capture import FeedRun

    run = FeedRun(root, RUN_A, BASE_NS, step_ns=3_000_000)
    run.on(0).event(RunStart(run_id=RUN_A, version="0.1.0"), 0)
    markets = (M1, M2)
    messages: list[tuple[Any, ...]] = []  # the exchange's, in its order
    states: list[dict[str, tuple[dict[int, int], dict[int, int]]]] = [
        {m: ({}, {}) for m in markets}]  # fmt: skip
    feeds: list[dict[str, Any]] = []
    next_conn = [1]

    def ladder(side: dict[int, int]) -> list[list[str]] | None:
        levels = [[f"0.{p:04d}", f"{q // 100}.{q % 100:02d}"] for p, q in sorted(side.items())]
        return levels or None

    def snapshots(f: dict[str, Any]) -> None:
        for market in markets:
            f["book"] += 1
            yes, no = states[f["pos"]][market]
            run.on(f["feed"]).receive(snapshot(1, f["book"], market, ladder(yes), ladder(no)),
                                      f["conn"])  # fmt: skip

    def connect(feed: int, pos: int = 0) -> dict[str, Any]:
        conn = next_conn[0]
        next_conn[0] += 1
        f = {"feed": feed, "conn": conn, "pos": pos, "book": 0, "trade": 0, "last": None,
             "cmd": 1}  # fmt: skip
        run.on(feed).event(Attempt(url=URL, attempt=1), 0)
        run.on(feed).event(Opened(url=URL), conn)
        run.send(subscribe(1, ["orderbook_delta"], list(markets)), conn)
        run.send(subscribe(2, ["trade"]), conn)
        run.receive(subscribed(1, "orderbook_delta", 1), conn)
        run.receive(subscribed(2, "trade", 2), conn)
        snapshots(f)
        return f

    def deliver(f: dict[str, Any], skip: bool = False) -> None:
        if f["pos"] >= len(messages):
            return
        kind, *fields = messages[f["pos"]]
        f["pos"] += 1
        if kind == "delta":
            f["book"] += 1
            frame = delta(1, f["book"], *fields)
            f["last"] = frame
        else:
            f["trade"] += 1
            market, price, count, trade_id = fields
            frame = trade(2, f["trade"], market, price, "0.5000", count)
            frame["msg"]["trade_id"] = trade_id
        if not skip:
            run.on(f["feed"]).receive(frame, f["conn"])

    feeds.extend(connect(feed) for feed in (0, 1))
    for op, a, b, c in steps:
        f = feeds[a % 2]
        if op < 38:  # the exchange changes a book or trades
            market = markets[b % 2]
            book = {m: (dict(y), dict(n)) for m, (y, n) in states[-1].items()}
            # whole cents mostly, a sub-penny price now and then (the kernel's ladder is
            # fitted to it on the engine's path, for whichever feed's book it is)
            price = (c % 97 + 1) * 100 + (25 if c % 11 == 0 else 0)
            size = (c // 97) % 9 * 100 + 50
            if op < 30:
                side = "yes" if b % 4 < 2 else "no"
                sign = -1 if op % 3 == 0 else 1
                ladder_ = book[market][0 if side == "yes" else 1]
                left = ladder_.get(price, 0) + sign * size
                if left > 0:
                    ladder_[price] = left
                else:
                    ladder_.pop(price, None)
                amount = f"{'-' if sign < 0 else ''}{size // 100}.{size % 100:02d}"
                messages.append(("delta", market, f"0.{price:04d}", amount, side))
            else:
                messages.append(("trade", market, f"0.{price:04d}", "2.00", f"x-{len(messages)}"))
            states.append(book)
        elif op < 70:
            deliver(f)
        elif op < 76:  # both catch up, taking turns
            while any(g["pos"] < len(messages) for g in feeds):
                for g in feeds:
                    deliver(g)
        elif op < 82 and f["pos"] < len(messages):  # a frame lost: the next reveals it
            deliver(f, skip=True)
            deliver(f)
            f["cmd"] += 1
            run.send(update_get_snapshot(10 + f["cmd"], 1, list(markets)), f["conn"])
            snapshots(f)
        elif op < 86:  # the connection is lost; the feed reconnects
            run.on(f["feed"]).event(Closed(code=1006, reason="", disconnect_reason="transport"),
                                    f["conn"])  # fmt: skip
            run.advance(50_000_000)
            feeds[f["feed"]] = connect(f["feed"], f["pos"])
        elif op < 90 and f["last"] is not None:  # the last book frame again
            run.on(f["feed"]).receive(f["last"], f["conn"])
        elif op < 96:
            run.advance(400_000_000)  # time passes (depth, bars)
    while any(g["pos"] < len(messages) for g in feeds):
        for g in feeds:
            deliver(g)
    for g in feeds:
        run.on(g["feed"]).event(Closed(code=1000, reason="bye", disconnect_reason="user_requested"),
                                g["conn"])  # fmt: skip
    run.on(0).event(RunStop(reason="signal"), 0)
    run.write()
    return root
