"""A capture whose report's every section has something known to show.

One run, three connections on one UTC day:

* conn 1: books for two markets and trades; a book seq gap (4 -> 7) recovered by
  `get_snapshot` and its snapshot; then the server closes it, code 1011;
* a reconnect wait of 0.25 s, then conn 2: books again, a trade gap (nothing to
  resync), a duplicate; a make-before-break rotation opens conn 3 (standby) before
  conn 2 closes with 1000 (user_requested), the switch recorded;
* conn 3: more book changes and trades, then 1000 at the run's stop.

`REPORT_CAPTURE` lists what the report must show; the tests also check it against
the `connections` and `gaps` views, so the capture and the views agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from schemas.events import Attempt, Closed, Opened, ReconnectWait, RunStart, RunStop, Switched
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
    ticker,
    trade,
    update_get_snapshot,
)

__all__ = ["ExpectedReport", "build_report_capture"]

S = 1_000_000_000


@dataclass(frozen=True)
class ExpectedReport:
    root: Path
    connections: tuple[tuple[int, int], ...]  # (conn, close code)
    gaps: tuple[tuple[str, str, int], ...]  # (channel, kind, seq at the gap) in time order
    markets: tuple[str, ...]


def _book(b: RunBuilder, conn: int, seq: int, mid: int) -> int:
    """Snapshots of both markets on sid 1 from seq, centred on `mid` cents."""
    for market, off in ((M1, 0), (M2, -20)):
        yes = [[f"0.{mid + off - 2:02d}00", "50.00"], [f"0.{mid + off - 1:02d}00", "20.00"]]
        no = [[f"0.{100 - mid - off - 2:02d}00", "40.00"]]
        b.receive(snapshot(1, seq, market, yes, no), conn)
        seq += 1
    return seq


def _flow(b: RunBuilder, conn: int, seq: int, tseq: int, n: int, mid: int) -> tuple[int, int]:
    """`n` rounds of book changes, tickers and trades, 0.1 s apart."""
    for i in range(n):
        market = M1 if i % 2 == 0 else M2
        price = mid - 1 - (i % 3) if market == M1 else mid - 21
        b.receive(delta(1, seq, market, f"0.{price:02d}00", f"{5 + i}.00", "yes"), conn)
        seq += 1
        if i % 3 == 0:
            p = mid if market == M1 else mid - 20
            b.receive(trade(2, tseq, market, f"0.{p:02d}00", f"0.{100 - p:02d}00",
                            f"{1 + i % 7}.00"), conn)  # fmt: skip
            tseq += 1
        if i % 5 == 0:
            b.receive(ticker(3, market), conn)
        b.advance(100_000_000)
    return seq, tseq


def _subscribe(b: RunBuilder, conn: int, first_id: int) -> None:
    b.send(subscribe(first_id, ["orderbook_delta"], [M1, M2]), conn)
    b.send(subscribe(first_id + 1, ["trade", "ticker"]), conn)
    b.receive(subscribed(first_id, "orderbook_delta", 1), conn)
    b.receive(subscribed(first_id + 1, "trade", 2), conn)
    b.receive(subscribed(first_id + 1, "ticker", 3), conn)


def build_report_capture(root: Path) -> ExpectedReport:
    b = RunBuilder(root, RUN_A, BASE_NS + 3600 * S, step_ns=2_000_000)
    b.event(RunStart(run_id=RUN_A, version="0.1.0"), 0)
    b.event(Attempt(url=URL, attempt=1), 0)
    b.event(Opened(url=URL), 1)
    _subscribe(b, 1, 1)
    seq = _book(b, 1, 1, 50)
    seq, tseq = _flow(b, 1, seq, 1, 1, 50)  # book seq 3 -> 4
    b.receive(delta(1, 7, M1, "0.4700", "3.00", "yes"), 1)  # seq 4 -> 7: a gap
    b.send(update_get_snapshot(3, 1, [M1, M2]), 1)
    b.advance(50_000_000)
    seq = _book(b, 1, 8, 52)
    seq, tseq = _flow(b, 1, seq, tseq, 40, 52)
    b.event(Closed(code=1011, reason="internal error", disconnect_reason="server_closed"), 1)
    b.event(ReconnectWait(delay_s=0.25, attempt=1), 0)
    b.advance(250_000_000)
    b.event(Attempt(url=URL, attempt=1), 0)
    b.event(Opened(url=URL), 2)
    _subscribe(b, 2, 10)
    seq = _book(b, 2, 1, 55)
    seq, tseq2 = _flow(b, 2, seq, 1, 30, 55)
    trade_gap, duplicate = tseq2 + 2, seq - 1
    b.receive(trade(2, trade_gap, M2, "0.3500", "0.6500", "9.00"), 2)  # trade gap: 2 lost
    b.receive(delta(1, duplicate, M1, "0.5400", "1.00", "yes"), 2)  # a duplicate seq
    seq, tseq2 = _flow(b, 2, seq, tseq2 + 3, 10, 55)
    b.event(Attempt(url=URL, attempt=1, standby=True), 0)  # make-before-break
    b.event(Opened(url=URL, standby=True), 3)
    _subscribe(b, 3, 20)
    seq3 = _book(b, 3, 1, 57)
    b.event(Switched(old_conn=2, new_conn=3, reason="user_requested"), 3)
    b.event(Closed(code=1000, reason="rotation", disconnect_reason="user_requested"), 2)
    seq3, _ = _flow(b, 3, seq3, 1, 40, 57)
    b.event(Closed(code=1000, reason="bye", disconnect_reason="user_requested"), 3)
    b.event(RunStop(reason="duration"), 0)
    b.write()
    return ExpectedReport(
        root,
        connections=((1, 1011), (2, 1000), (3, 1000)),
        gaps=(
            ("orderbook_delta", "gap", 7),
            ("trade", "gap", trade_gap),
            ("orderbook_delta", "duplicate", duplicate),
        ),
        markets=(M1, M2),
    )
