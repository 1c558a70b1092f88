"""Captures of the same market as two hosts record them, with outages and clocks of
their own, written as real capture files (`tests.replay.capture_factory.RunBuilder`).

`record_host` plays one host: its runs, each run's connections (open at a time,
closed at a time or not at all, as a recorder killed with kill -9 leaves it), and the
trades it received while a connection was open, each `delay_s` after the exchange
sent it, stamped by a clock `clock_ns` ahead of true time. Times are seconds after
`BASE_NS` (2026-11-21T08:00:00Z) unless a test gives another base.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.events import Closed, Opened, RunStart, RunStop

from ..capture_factory import BASE_NS, M1, URL, RunBuilder, subscribe, subscribed, ticker, trade

__all__ = ["Conn", "Run", "exchange_trades", "record_host", "s"]

S = 1_000_000_000


def s(seconds: float, base_ns: int = BASE_NS) -> int:
    """`seconds` after the base, in ns."""
    return base_ns + round(seconds * S)


@dataclass(frozen=True)
class Conn:
    start_s: float
    end_s: float
    closed: bool = True  # False: the recorder died with it open (no close event)


@dataclass(frozen=True)
class Run:
    run_id: str
    conns: tuple[Conn, ...]


def exchange_trades(start_s: float, end_s: float, every_s: float) -> list[tuple[str, float]]:
    """(trade_id, the time the exchange sent it) every `every_s` seconds."""
    out, t, n = [], start_s, 0
    while t < end_s:
        out.append((f"trade-{n:06d}", t))
        n += 1
        t = round(t + every_s, 9)
    return out


def record_host(
    root: Path,
    runs: Sequence[Run],
    trades: Sequence[tuple[str, float]],
    *,
    clock_ns: int = 0,
    delay_s: Callable[[int], float] | float = 0.0,
    base_ns: int = BASE_NS,
    segment_every: int = 0,
) -> dict[str, list[tuple[int, int]]]:
    """Write the host's capture under `root`; returns, per run, the true (unshifted)
    (start_ns, end_ns) of each connection as `merge` should report it.

    `delay_s` is the network delay of the n-th trade received (a number or a function
    of n). `segment_every` > 0 cuts a journal segment every that many records.
    """
    truth: dict[str, list[tuple[int, int]]] = {}
    for run in runs:
        first = run.conns[0].start_s
        b = RunBuilder(root, run.run_id, s(first, base_ns) + clock_ns - 2_000_000)
        b.event(RunStart(run_id=run.run_id, version="0.1.0"), 0)
        conn_truth: list[tuple[int, int]] = []
        seq = 0
        for number, conn in enumerate(run.conns, 1):
            b.now_ns = max(b.now_ns, s(conn.start_s, base_ns) + clock_ns)
            opened = b.event(Opened(url=URL), number)
            b.send(subscribe(1, ["trade", "ticker"]), number)
            b.receive(subscribed(1, "trade", 1), number)
            b.receive(subscribed(1, "ticker", 2), number)
            for n, (trade_id, sent_s) in enumerate(trades):
                if not conn.start_s <= sent_s < conn.end_s:
                    continue
                delay = delay_s(n) if callable(delay_s) else delay_s
                b.now_ns = max(b.now_ns, s(sent_s + delay, base_ns) + clock_ns)
                seq += 1
                frame = trade(1, seq, M1, "0.4700", "0.5300", "1.00")
                frame["msg"]["trade_id"] = trade_id
                b.receive(frame, number)
                b.receive(ticker(2, M1), number)
            if conn.closed:
                b.now_ns = max(b.now_ns, s(conn.end_s, base_ns) + clock_ns)
                closed = b.event(Closed(code=1000, reason="bye", disconnect_reason="shutdown"),
                                 number)  # fmt: skip
                conn_truth.append((opened.recv_ns - clock_ns, closed.recv_ns - clock_ns))
            else:  # open until the run's last record (fixed below)
                conn_truth.append((opened.recv_ns - clock_ns, -1))
        if run.conns[-1].closed:
            b.event(RunStop(reason="signal"), 0)
        run_end = b.records[-1].recv_ns - clock_ns
        conn_truth = [(start, run_end if end < 0 else end) for start, end in conn_truth]
        starts = (0,) if not segment_every else tuple(range(0, len(b.records), segment_every))
        b.write(starts)
        truth[run.run_id] = conn_truth
    return truth
