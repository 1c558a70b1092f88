"""B's clock offset from the trades both captures received: `replay.merge.offset`."""

from __future__ import annotations

import json
import random

import pyarrow as pa

from replay.merge.offset import choose_offset, trade_evidence, trade_receipts

_DICT = pa.dictionary(pa.int32(), pa.string())


def _frame(trade_id: str | None, type_: str = "trade") -> bytes:
    msg = {"market_ticker": "KX-A", "yes_price_dollars": "0.4700"}
    if trade_id is not None:
        msg["trade_id"] = trade_id
    return json.dumps({"type": type_, "sid": 1, "seq": 1, "msg": msg}).encode()


def _table(rows: list[tuple[str, str, int, bytes]], *, dictionary: bool = True) -> pa.Table:
    kind = _DICT if dictionary else pa.string()
    types, dirs, recv, raw = zip(*rows, strict=True)
    return pa.table(
        {
            "type": pa.array(types, pa.string()).cast(kind),
            "dir": pa.array(dirs, pa.string()).cast(kind),
            "recv_ns": pa.array(recv, pa.int64()),
            "raw": pa.array(raw, pa.binary()),
        }
    )


def test_receipts_are_the_first_receipt_of_each_trade_received() -> None:
    table = _table([
        ("trade", "in", 300, _frame("t1")),
        ("trade", "in", 100, _frame("t1")),  # the same trade on a second connection, earlier
        ("trade", "in", 200, _frame("t2")),
        ("trade", "out", 50, _frame("t3")),  # not received
        ("ticker", "in", 60, _frame("t4", "ticker")),  # not a trade
        ("trade", "in", 70, b"\xff{not json"),  # does not decode
        ("trade", "in", 80, _frame(None)),  # no trade_id
        ("trade", "in", 90, b'{"type":"trade","msg":{"trade_id":7}}'),  # not a string id
    ])  # fmt: skip
    assert trade_receipts(table) == {"t1": 100, "t2": 200}
    assert trade_receipts(_table([("trade", "in", 5, _frame("x"))], dictionary=False)) == {"x": 5}
    assert trade_receipts(table.slice(0, 0)) == {}


def test_the_offset_is_the_median_difference_and_the_spread_is_reported() -> None:
    a = {f"t{i}": 1_000 * i for i in range(5)}
    b = {f"t{i}": 1_000 * i + d for i, d in enumerate([10, 30, 20, 50, 40])}
    b["only-b"] = 7
    e = trade_evidence(a, b)
    assert (e.trades_a, e.trades_b, e.matches) == (5, 6, 5)
    assert e.median_ns == 30
    assert e.mad_ns == 10  # |d - 30|: 20, 0, 10, 20, 10
    assert (e.min_ns, e.max_ns) == (10, 50)
    assert (e.p5_ns, e.p95_ns) == (10, 50)
    even = trade_evidence({"x": 0, "y": 0}, {"x": 10, "y": 21})
    assert even.median_ns == 15  # the two middles' mean, rounded down


def test_the_median_is_exact_at_nanosecond_scale_of_wall_clock_times() -> None:
    base = 1_795_248_000_123_456_789  # past 2**53: a float median would round it
    e = trade_evidence({"t": base}, {"t": base + 250_000_001})
    assert e.median_ns == 250_000_001


def test_a_few_late_frames_do_not_move_the_estimate() -> None:
    rng = random.Random(3)
    a = {f"t{i}": i * 10**8 for i in range(1_000)}
    b = {t: recv + 250_000_000 + rng.randint(-500_000, 500_000) for t, recv in a.items()}
    for t in list(b)[::20]:  # 5% of the frames held up two seconds on B's side
        b[t] += 2_000_000_000
    e = trade_evidence(a, b)
    assert abs(e.median_ns - 250_000_000) < 100_000
    assert e.max_ns > 2_000_000_000 and e.p5_ns < 250_000_000 < e.p95_ns


def test_no_trade_in_both_leaves_the_offset_unknown_unless_given() -> None:
    e = trade_evidence({"a": 1}, {"b": 2})
    assert (e.matches, e.median_ns, e.p5_ns, e.mad_ns) == (0, None, None, None)
    assert choose_offset(e, None) is None
    given = choose_offset(e, -5)
    assert given is not None
    assert (given.offset_ns, given.source) == (-5, "given")
    found = choose_offset(trade_evidence({"t": 0}, {"t": 9}), None)
    assert found is not None
    assert (found.offset_ns, found.source) == (9, "trades")
    assert found.to_json()["matches"] == 1
    assert choose_offset(trade_evidence({"t": 0}, {"t": 9}), 0).offset_ns == 0  # type: ignore[union-attr]
