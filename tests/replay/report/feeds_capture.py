"""A capture of two feeds whose report's Feeds section has known numbers.

One run, two feeds, times from T (records take no time of their own: every time
below is exact):

* 0 s: feed 0 opens conn 1, feed 1 opens conn 2; both subscribe to two books and
  trades and get snapshots;
* 2 s: conn 1 (feed 0) is lost (1006): both books move from feed 0 to feed 1
  (`arbitrate`, reason `disconnect`); feed 0 waits 2 s;
* 3 s: the server closes conn 2 (feed 1) with 1011: both books go invalid (moves to
  no feed); feed 1 waits 0.5 s. Both feeds are down from here ...
* 3.5 s: ... until feed 1 opens conn 3; its snapshots make both books valid again
  (moves from no feed to feed 1, `resynced`);
* 4 s: feed 0 opens conn 4;
* 6 s: both close (1000), the run stops.

So: feed 0 connected 4 s and down 2 s, feed 1 connected 5.5 s and down 0.5 s, both
down 0.5 s in one interval ([3 s, 3.5 s]), 6 moves (2 to another feed, 2 to no feed,
2 valid again). The reconnect waits belong to the next connection of their own feed
(conn 3: 0.5 s, conn 4: 2 s), and no connection overlapped one of its own feed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.events import Arbitrated, Attempt, Closed, Opened, ReconnectWait, RunStart, RunStop
from schemas.record import CaptureRecord
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
)

__all__ = ["T0", "ExpectedFeeds", "FeedRun", "S", "build_feeds_capture"]

S = 1_000_000_000
T0 = BASE_NS + 7200 * S  # 2026-11-21T10:00:00Z


@dataclass
class FeedRun(RunBuilder):
    """A RunBuilder whose records belong to `feed` (set before each call)."""

    feed: int = 0

    def _add(self, dir_: str, raw: bytes, conn: int, binary: bool = False) -> CaptureRecord:
        rec = dataclasses.replace(super()._add(dir_, raw, conn, binary), feed=self.feed)
        self.records[-1] = rec
        return rec

    def on(self, feed: int) -> FeedRun:
        self.feed = feed
        return self


@dataclass(frozen=True)
class ExpectedFeeds:
    root: Path
    records: dict[int, int]  # feed -> records
    conn_feed: dict[int, int]  # conn -> feed
    #: the moves in time order: (market, from_feed, to_feed, reason, t in s from T0)
    moves: tuple[tuple[str, int | None, int | None, str, float], ...]
    connected_s: dict[int, float]
    down_s: dict[int, float]
    all_down: tuple[tuple[float, float], ...]  # s from T0
    reconnect_delay_s: dict[int, float]  # conn -> the wait before it


def _open(b: FeedRun, feed: int, conn: int, seq: int, mid: int) -> int:
    b.on(feed).event(Attempt(url=URL, attempt=1), 0)
    b.on(feed).event(Opened(url=URL), conn)
    b.send(subscribe(1, ["orderbook_delta"], [M1, M2]), conn)
    b.send(subscribe(2, ["trade"]), conn)
    b.receive(subscribed(1, "orderbook_delta", 1), conn)
    b.receive(subscribed(2, "trade", 2), conn)
    for market, off in ((M1, 0), (M2, -20)):
        yes = [[f"0.{mid + off - 2:02d}00", "50.00"], [f"0.{mid + off - 1:02d}00", "20.00"]]
        b.receive(snapshot(1, seq, market, yes, [[f"0.{100 - mid - off - 2:02d}00", "40.00"]]),
                  conn)  # fmt: skip
        seq += 1
    return seq


def _flow(b: FeedRun, conns: dict[int, int], seqs: dict[int, int], rounds: int) -> None:
    """`rounds` of 0.1 s: a book change and a trade on each open connection (by feed)."""
    for i in range(rounds):
        for feed, conn in conns.items():
            b.on(feed).receive(delta(1, seqs[conn], M1, "0.4900", f"{5 + i}.00", "yes"), conn)
            seqs[conn] += 1
            b.receive(trade(2, seqs[conn], M1, "0.5000", "0.5000", "1.00"), conn)
        b.advance(S // 10)


def _move(b: FeedRun, market: str, src: int | None, dst: int | None, why: str) -> None:
    b.on(0).event(Arbitrated(market=market, from_feed=src, to_feed=dst, reason=why), 0)


def build_feeds_capture(root: Path) -> ExpectedFeeds:
    b = FeedRun(root, RUN_A, T0, step_ns=0)
    b.on(0).event(RunStart(run_id=RUN_A, version="0.1.0"), 0)
    seqs = {1: _open(b, 0, 1, 1, 50), 2: _open(b, 1, 2, 1, 50)}
    _flow(b, {0: 1, 1: 2}, seqs, 20)  # to 2 s
    b.on(0).event(Closed(code=1006, reason="", disconnect_reason="network_error"), 1)
    for market in (M1, M2):
        _move(b, market, 0, 1, "disconnect")
    b.on(0).event(ReconnectWait(delay_s=2.0, attempt=1), 0)
    _flow(b, {1: 2}, seqs, 10)  # to 3 s
    b.on(1).event(Closed(code=1011, reason="internal error", disconnect_reason="server_closed"),
                  2)  # fmt: skip
    for market in (M1, M2):
        _move(b, market, 1, None, "disconnect")
    b.on(1).event(ReconnectWait(delay_s=0.5, attempt=1), 0)
    b.advance(S // 2)  # to 3.5 s: both feeds down
    seqs[3] = _open(b, 1, 3, 1, 52)
    for market in (M1, M2):
        _move(b, market, None, 1, "resynced")
    _flow(b, {1: 3}, seqs, 5)  # to 4 s
    seqs[4] = _open(b, 0, 4, 1, 52)
    _flow(b, {0: 4, 1: 3}, seqs, 20)  # to 6 s
    b.on(1).event(Closed(code=1000, reason="bye", disconnect_reason="user_requested"), 3)
    b.on(0).event(Closed(code=1000, reason="bye", disconnect_reason="user_requested"), 4)
    b.on(0).event(RunStop(reason="duration"), 0)
    b.write()
    records: Counter[int] = Counter(r.feed for r in b.records if r.feed is not None)
    moves: tuple[Any, ...] = (
        (M1, 0, 1, "disconnect", 2.0), (M2, 0, 1, "disconnect", 2.0),
        (M1, 1, None, "disconnect", 3.0), (M2, 1, None, "disconnect", 3.0),
        (M1, None, 1, "resynced", 3.5), (M2, None, 1, "resynced", 3.5),
    )  # fmt: skip
    return ExpectedFeeds(
        root,
        records=dict(records),
        conn_feed={1: 0, 2: 1, 3: 1, 4: 0},
        moves=moves,
        connected_s={0: 4.0, 1: 5.5},
        down_s={0: 2.0, 1: 0.5},
        all_down=((3.0, 3.5),),
        reconnect_delay_s={3: 0.5, 4: 2.0},
    )
