"""Builds real capture partitions for tests, from Python lists of records.

A `RunBuilder` plays one recorder run: it hands out `idx` in order, advances both
clocks, derives the routing columns with the project's own `ColumnDeriver`, and
writes real Parquet files in the capture layout (`schemas.record.partition_file`,
`schemas.arrow.CAPTURE_SCHEMA`). Frame helpers build realistic Kalshi frames in the
current and the legacy field forms (docs/protocol.md sections 4, 7 and 8).

`build_standard_capture` writes the capture most tests share: two runs, acks and
commands, a seq gap with its resync, a seq reset, a reconnect, private channels,
an invalid-UTF-8 frame, and a second run that ended without `run_stop`.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.arrow import CAPTURE_SCHEMA, DICTIONARY_COLUMNS
from schemas.events import (
    Attempt,
    Closed,
    ConnectionEvent,
    FrameRejected,
    Opened,
    ReconnectWait,
    RunStart,
    RunStop,
)
from schemas.record import (
    OPCODE_BINARY,
    OPCODE_TEXT,
    CaptureRecord,
    ColumnDeriver,
    Dir,
    partition_file,
    utc_date,
)

__all__ = [
    "BASE_NS",
    "M1",
    "M2",
    "RUN_A",
    "RUN_B",
    "URL",
    "RunBuilder",
    "StandardCapture",
    "build_standard_capture",
    "delta",
    "dumps",
    "fill",
    "lifecycle",
    "position",
    "read_rows",
    "snapshot",
    "subscribe",
    "subscribed",
    "ticker",
    "trade",
    "truncate_file",
    "update_get_snapshot",
    "user_order",
    "write_rows",
]

#: 2026-11-21T08:00:00Z in ns.
BASE_NS = 1_795_248_000_000_000_000
RUN_A = "20261121T080000Z-aaaaaaaa"
RUN_B = "20261122T000000Z-bbbbbbbb"
M1 = "KXBTCD-26NOV21-T100000"
M2 = "KXETHD-26NOV21-T4000"
URL = "wss://external-api-ws.kalshi.com/trade-api/ws/v2"


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes, as the exchange sends them."""
    return json.dumps(obj, separators=(",", ":")).encode()


# -- frames (docs/protocol.md section 8) -------------------------------------------------


def subscribe(id_: int, channels: list[str], tickers: list[str] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"channels": channels}
    if tickers:
        params["market_tickers"] = tickers
    return {"id": id_, "cmd": "subscribe", "params": params}


def update_get_snapshot(id_: int, sid: int, tickers: list[str]) -> dict[str, Any]:
    params = {"sids": [sid], "action": "get_snapshot", "market_tickers": tickers}
    return {"id": id_, "cmd": "update_subscription", "params": params}


def subscribed(id_: int, channel: str, sid: int) -> dict[str, Any]:
    return {"id": id_, "type": "subscribed", "msg": {"channel": channel, "sid": sid}}


def snapshot(
    sid: int,
    seq: int,
    market: str,
    yes: list[list[Any]] | None,
    no: list[list[Any]] | None,
    *,
    legacy: bool = False,
    id_: int | None = None,
) -> dict[str, Any]:
    msg: dict[str, Any] = {"market_ticker": market, "market_id": "9b0f6d1e", "clock": 100 + seq}
    # One-sided snapshots omit the empty side's key (docs/protocol.md section 8.1).
    if yes is not None:
        msg["yes" if legacy else "yes_dollars_fp"] = yes
    if no is not None:
        msg["no" if legacy else "no_dollars_fp"] = no
    frame: dict[str, Any] = {"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": msg}
    if id_ is not None:
        frame["id"] = id_
    return frame


def delta(
    sid: int, seq: int, market: str, price: Any, qty: Any, side: str, *, legacy: bool = False
) -> dict[str, Any]:
    msg: dict[str, Any] = {"market_ticker": market, "market_id": "9b0f6d1e", "clock": 200 + seq}
    if legacy:
        msg |= {"price": price, "delta": qty, "side": side}
    else:
        msg |= {"price_dollars": price, "delta_fp": qty, "side": side}
        msg |= {"ts": "2026-11-21T08:00:01Z", "ts_ms": 1_795_248_001_250}
    return {"type": "orderbook_delta", "sid": sid, "seq": seq, "msg": msg}


def trade(
    sid: int, seq: int, market: str, yes: Any, no: Any, count: Any, *, legacy: bool = False
) -> dict[str, Any]:
    msg: dict[str, Any] = {"trade_id": f"t-{sid}-{seq}", "market_ticker": market}
    if legacy:
        msg |= {"yes_price": yes, "no_price": no, "count": count, "taker_side": "no"}
        msg |= {"ts": 1_795_248_002}
    else:
        msg |= {"yes_price_dollars": yes, "no_price_dollars": no, "count_fp": count}
        msg |= {"taker_side": "yes", "taker_outcome_side": "yes", "taker_book_side": "bid"}
        msg |= {"is_block_trade": False, "ts": 1_795_248_001, "ts_ms": 1_795_248_001_500}
    return {"type": "trade", "sid": sid, "seq": seq, "msg": msg}


def ticker(sid: int, market: str, *, legacy: bool = False) -> dict[str, Any]:
    msg: dict[str, Any] = {"market_ticker": market, "market_id": "9b0f6d1e"}
    if legacy:
        msg |= {"price": 48, "yes_bid": 47, "yes_ask": 49, "volume": 1200, "open_interest": 800}
        msg |= {"ts": 1_795_248_003}
    else:
        msg |= {"price_dollars": "0.4800", "yes_bid_dollars": "0.4700"}
        msg |= {"yes_ask_dollars": "0.4900", "volume_fp": "1200.00", "open_interest_fp": "800.00"}
        msg |= {"dollar_volume": 576, "dollar_open_interest": 384, "yes_bid_size_fp": "10.00"}
        msg |= {"yes_ask_size_fp": "7.50", "last_trade_size_fp": "2.00", "ts": 1_795_248_003}
        msg |= {"ts_ms": 1_795_248_003_125, "time": "2026-11-21T08:00:03.125Z"}
    return {"type": "ticker", "sid": sid, "msg": msg}


def fill(sid: int, market: str, *, legacy: bool = False) -> dict[str, Any]:
    msg: dict[str, Any] = {"trade_id": "f-1", "order_id": "o-1", "market_ticker": market}
    msg |= {"is_taker": True, "side": "yes", "action": "buy", "ts": 1_795_248_004}
    if legacy:
        msg |= {"yes_price": 35, "count": 3, "post_position": 3}
    else:
        msg |= {"yes_price_dollars": "0.3500", "count_fp": "3.00", "fee_cost": "0.021000"}
        msg |= {"post_position_fp": "3.00", "outcome_side": "yes", "book_side": "bid"}
        msg |= {"ts_ms": 1_795_248_004_500, "exchange_index": 2}
    return {"type": "fill", "sid": sid, "msg": msg}


def user_order(sid: int, market: str, *, legacy: bool = False) -> dict[str, Any]:
    msg: dict[str, Any] = {"order_id": "o-1", "user_id": "u-1", "ticker": market}
    msg |= {"status": "executed", "side": "yes", "client_order_id": "c-1"}
    if legacy:
        msg |= {"yes_price": 35, "fill_count": 3, "remaining_count": 0, "initial_count": 3}
        msg |= {"created_time": "2026-11-21T08:00:04Z"}
    else:
        msg |= {"yes_price_dollars": "0.3500", "fill_count_fp": "3.00"}
        msg |= {"remaining_count_fp": "0.00", "initial_count_fp": "3.00"}
        msg |= {"taker_fill_cost_dollars": "1.050000", "maker_fill_cost_dollars": "0.000000"}
        msg |= {"taker_fees_dollars": "0.021000", "maker_fees_dollars": "0.000000"}
        msg |= {"created_time": "2026-11-21T08:00:04Z", "created_ts_ms": 1_795_248_004_250}
    return {"type": "user_order", "sid": sid, "msg": msg}


def position(sid: int, market: str) -> dict[str, Any]:
    msg = {"user_id": "u-1", "market_ticker": market, "position_fp": "-3.00"}
    msg |= {"position_cost_dollars": "1.050000", "realized_pnl_dollars": "0.120000"}
    msg |= {"fees_paid_dollars": "0.021000", "position_fee_cost_dollars": "0.021000"}
    msg |= {"volume_fp": "3.00"}
    return {"type": "market_position", "sid": sid, "msg": msg}


def lifecycle(sid: int, seq: int, market: str) -> dict[str, Any]:
    msg = {"market_ticker": market, "event_type": "determined", "result": "yes"}
    msg |= {"settlement_value": "1.0000", "determination_ts": 1_795_251_600}
    return {"type": "market_lifecycle_v2", "sid": sid, "seq": seq, "msg": msg}


# -- runs ---------------------------------------------------------------------------


@dataclass
class RunBuilder:
    """One recorder run: records in idx order, with both clocks, written as Parquet."""

    root: Path
    run_id: str = RUN_A
    start_ns: int = BASE_NS
    step_ns: int = 1_000_000
    records: list[CaptureRecord] = field(default_factory=list)
    next_idx: int = 1
    now_ns: int = 0
    _deriver: ColumnDeriver = field(default_factory=ColumnDeriver)

    def __post_init__(self) -> None:
        self.now_ns = self.start_ns

    def _add(self, dir_: str, raw: bytes, conn: int, binary: bool = False) -> CaptureRecord:
        d = self._deriver.derive(dir_, raw, conn)
        opcode = None if dir_ == Dir.EVENT else OPCODE_BINARY if binary else OPCODE_TEXT
        mono = 5_000_000_000 + (self.now_ns - self.start_ns)
        rec = CaptureRecord(
            self.run_id,
            self.next_idx,
            conn,
            self.now_ns,
            mono,
            dir_,
            d.channel,
            d.type,
            d.sid,
            d.seq,
            d.market_ticker,
            raw,
            opcode,
        )
        self.records.append(rec)
        self.next_idx += 1
        self.now_ns += self.step_ns
        return rec

    def receive(
        self, frame: dict[str, Any] | bytes, conn: int = 1, *, binary: bool = False
    ) -> CaptureRecord:
        """A frame received (`binary`: it came as a binary WebSocket message)."""
        raw = frame if isinstance(frame, bytes) else dumps(frame)
        return self._add(Dir.IN, raw, conn, binary)

    def send(self, command: dict[str, Any], conn: int = 1) -> CaptureRecord:
        return self._add(Dir.OUT, dumps(command), conn)

    def event(self, event: ConnectionEvent, conn: int = 0) -> CaptureRecord:
        return self._add(Dir.EVENT, event.to_bytes(), conn)

    def skip_idx(self, count: int) -> None:
        """Leave `count` idx values unused: a hole in the run's total order."""
        self.next_idx += count

    def advance(self, ns: int) -> None:
        self.now_ns += ns

    def write(self, segment_starts: tuple[int, ...] = (0,)) -> list[Path]:
        """Write the records as segments (each starting at a record position)."""
        bounds = [*segment_starts, len(self.records)]
        paths: list[Path] = []
        for seg, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            paths += write_rows(self.root, self.records[lo:hi], self.run_id, seg)
        return paths


def write_rows(
    root: Path, rows: list[CaptureRecord], run_id: str, segment: int, suffix: str = ""
) -> list[Path]:
    """Write rows as one file per (channel, date), as the publisher does."""
    groups: dict[tuple[str, str], list[CaptureRecord]] = {}
    for rec in rows:
        groups.setdefault((rec.channel, utc_date(rec.recv_ns)), []).append(rec)
    paths = []
    for (channel, date), recs in sorted(groups.items()):
        path = root / partition_file(channel, date, run_id, segment, suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = {name: [getattr(r, name) for r in recs] for name in CAPTURE_SCHEMA.names}
        table = pa.Table.from_pydict(columns, schema=CAPTURE_SCHEMA)
        pq.write_table(table, path, compression="zstd", use_dictionary=list(DICTIONARY_COLUMNS))
        paths.append(path)
    return paths


def read_rows(path: Path) -> list[CaptureRecord]:
    """Read a capture file back as records (to copy rows into another file)."""
    table = pq.read_table(path)
    return [CaptureRecord(**row) for row in table.to_pylist()]


def truncate_file(path: Path, keep_bytes: int) -> None:
    """Cut a file short, as a torn write would (the footer is lost)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes])


# -- the shared scenario --------------------------------------------------------------


@dataclass
class StandardCapture:
    root: Path
    run_a: RunBuilder
    run_b: RunBuilder
    paths: list[Path]
    gap_idx: int  # the orderbook delta that jumped seq 4 -> 7
    resync_cmd_idx: int
    resync_snapshot_idx: int
    trade_gap_idx: int  # a trade gap that nothing recovered
    reset_idx: int
    unknown_idx: int


def build_standard_capture(root: Path) -> StandardCapture:
    """Two runs; run A ends cleanly after a reconnect, run B ends without run_stop."""
    a = RunBuilder(root, RUN_A, BASE_NS)
    a.event(RunStart(run_id=RUN_A, version="0.1.0"), 0)
    a.event(Attempt(url=URL, attempt=1), 1)
    a.event(Opened(url=URL, standby=False), 1)
    a.send(subscribe(1, ["orderbook_delta"], [M1, M2]))
    a.send(subscribe(2, ["trade", "ticker"]))
    a.send(subscribe(3, ["fill", "user_orders", "market_positions", "market_lifecycle_v2"]))
    a.receive(subscribed(1, "orderbook_delta", 1))
    a.receive(subscribed(2, "trade", 2))
    a.receive(subscribed(2, "ticker", 3))
    for sid, channel in ((4, "fill"), (5, "user_orders"), (6, "market_positions")):
        a.receive(subscribed(3, channel, sid))
    a.receive(subscribed(3, "market_lifecycle_v2", 7))
    a.receive(
        snapshot(1, 1, M1, [["0.4500", "100.00"], ["0.4700", "50.00"]], [["0.5000", "20.00"]])
    )
    a.receive(snapshot(1, 2, M2, [[30, 10]], None, legacy=True))
    a.receive(delta(1, 3, M1, "0.4700", "-50.00", "yes"))
    a.receive(delta(1, 4, M2, 31, 5, "no", legacy=True))
    a.receive(trade(2, 1, M1, "0.4700", "0.5300", "12.00"))
    a.receive(trade(2, 2, M2, 31, 69, 4, legacy=True))
    a.receive(ticker(3, M1))
    a.receive(ticker(3, M2, legacy=True))
    gap = a.receive(delta(1, 7, M1, "0.4600", "15.00", "yes"))
    cmd = a.send(update_get_snapshot(4, 1, [M1, M2]))
    snap = a.receive(snapshot(1, 8, M1, [["0.4500", "100.00"], ["0.4600", "15.00"]], None, id_=4))
    a.receive(snapshot(1, 9, M2, [["0.3000", "10.00"]], [["0.6900", "5.00"]], id_=4))
    a.receive(delta(1, 10, M1, "0.4500", "-100.00", "yes"))
    a.receive(trade(2, 3, M1, "0.4600", "0.5400", "1.50"))
    unknown = a.receive(b'\xff\xfe{"type":"trade"')
    a.event(FrameRejected(idx=unknown.idx, reason="not JSON"), 1)
    trade_gap = a.receive(trade(2, 5, M2, "0.3200", "0.6800", "2.00"))
    a.receive(fill(4, M1))
    a.receive(fill(4, M2, legacy=True))
    a.receive(user_order(5, M1))
    a.receive(user_order(5, M2, legacy=True))
    a.receive(position(6, M1))
    a.receive(lifecycle(7, 1, M1))
    a.receive({"id": 9, "type": "error", "msg": {"code": 7, "msg": "Unknown subscription ID"}})
    a.advance(2_000_000_000)
    a.event(Closed(code=1006, reason="", disconnect_reason="transport"), 1)
    a.event(ReconnectWait(delay_s=0.5, attempt=1), 1)
    a.advance(500_000_000)
    a.event(Attempt(url=URL, attempt=1), 2)
    a.event(Opened(url=URL, standby=False), 2)
    a.send(subscribe(5, ["orderbook_delta"], [M1]), conn=2)
    a.receive(subscribed(5, "orderbook_delta", 1), conn=2)
    a.receive(snapshot(1, 1, M1, [["0.4400", "8.00"]], [["0.5200", "3.00"]]), conn=2)
    a.receive(delta(1, 2, M1, "0.4400", "2.00", "yes"), conn=2)
    reset = a.receive(delta(1, 1, M1, "0.4400", "1.00", "yes"), conn=2)
    a.receive(delta(1, 2, M1, "0.4400", "1.00", "yes"), conn=2)
    a.event(Closed(code=1000, reason="bye", disconnect_reason="shutdown"), 2)
    a.event(RunStop(reason="signal"), 0)
    split = next(i for i, r in enumerate(a.records) if r.idx == trade_gap.idx)
    paths = a.write((0, split))

    b = RunBuilder(root, RUN_B, BASE_NS + 16 * 3600 * 1_000_000_000)  # the next UTC day
    b.event(RunStart(run_id=RUN_B, version="0.1.0"), 0)
    b.event(Opened(url=URL, standby=False), 1)
    b.send(subscribe(1, ["trade"]))
    b.receive(subscribed(1, "trade", 1))
    b.receive(trade(1, 1, M1, "0.5100", "0.4900", "7.00"))
    b.receive(trade(1, 2, M1, "0.5200", "0.4800", "3.00"))
    paths += b.write()
    return StandardCapture(
        root, a, b, paths, gap.idx, cmd.idx, snap.idx, trade_gap.idx, reset.idx, unknown.idx
    )
