"""Every dataset equals what a ReplaySession consumer sees, frame by frame.

The reference is an ordinary `ReplaySession` with one `orderbook()` consumer per
market and a raw trade consumer (tests/replay/datasets/reference.py); the derived
book_changes, replayed, must pass through exactly the same sequence of book states
(valid flag and both ladders, in exact units), each taking effect when the session's
frame made it (or, handed over from another connection, when the hand-over came),
quotes must be exactly the tops of those states, trades exactly the frames delivered,
depth the top levels of each book just before each interval's end, and bars the
OHLCV of the delivered trades with the book's top just before the bar's end. On the
standard capture, examples/sample (four disconnects, a planned rotation, gaps and
duplicates), a capture of every rule, two redundant feeds, and random streams
(Hypothesis).
"""

from __future__ import annotations

import bisect
import json
import random
import tempfile
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.datasets import compute, derive, table
from replay.datasets.mirror import SubunitValue
from replay.datasets.rows import trade_batch
from replay.datasets.spec import Spec
from stream.fixed import price_units, size_units, units
from tests.replay.capture_factory import (
    BASE_NS,
    M1,
    RUN_A,
    RunBuilder,
    build_standard_capture,
    delta,
    snapshot,
    subscribed,
    trade,
)
from tests.replay.datasets.captures import (
    build_rules_capture,
    random_capture,
    random_feeds_capture,
)
from tests.replay.datasets.reference import (
    State,
    Timed,
    assert_same_times,
    collapse,
    reference_replay,
    state_before,
    timed_states_from_changes,
)
from tests.replay.report.feeds_capture import build_feeds_capture

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sample"


def _top(state: State) -> tuple[Any, ...]:
    valid, yes, no = state
    bid = max(yes) if yes else None
    ask = max(no) if no else None
    return (valid, bid and bid[0], bid and bid[1], ask and 10_000 - ask[0], ask and ask[1])


def _u(value: Decimal | None, scale: int) -> int | None:
    return None if value is None else int(value.scaleb(scale))


def _quotes_by_market(quotes: pa.Table) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for r in quotes.to_pylist():
        out.setdefault(r["market"], []).append((
            r["valid"], _u(r["bid"], 4), _u(r["bid_size"], 2), _u(r["ask"], 4),
            _u(r["ask_size"], 2),
        ))  # fmt: skip
        if r["bid"] is not None and r["ask"] is not None:
            assert r["spread"] == r["ask"] - r["bid"]
            assert r["mid"] == (r["bid"] + r["ask"]) / 2
    return out


def _trade_units(frame: Any) -> tuple[Any, ...]:
    msg = json.loads(bytes(frame.raw))["msg"]
    if "yes_price_dollars" in msg:
        yes, count = price_units(msg["yes_price_dollars"]), size_units(msg["count_fp"])
    else:
        yes, count = units(msg["yes_price"], 2), units(msg["count"], 2)
    return frame.recv_ns, frame.seq, frame.market_ticker, msg["trade_id"], yes, count


def _depth_rows(depth: pa.Table, levels: int) -> list[tuple[Any, ...]]:
    rows = []
    for r in depth.to_pylist():
        ks = range(1, levels + 1)
        bids = tuple((_u(r[f"bid_{k}"], 4), _u(r[f"bid_size_{k}"], 2)) for k in ks)
        asks = tuple((_u(r[f"ask_{k}"], 4), _u(r[f"ask_size_{k}"], 2)) for k in ks)
        rows.append((r["ts_ns"], r["market"], r["recv_ns"], r["valid"], bids, asks))
    return sorted(rows, key=lambda row: (row[0], row[1]))


def _expected_depth(timed: Timed, changes: pa.Table, interval: int, levels: int
                    ) -> list[tuple[Any, ...]]:  # fmt: skip
    """A row per interval end from the first change's interval on, while a change comes at
    or after it, for each market with a book before it: the top `levels` of the book as
    it stood before that end (None past the book's depth). Its recv_ns is the market's
    last row in book_changes before the end: a delivery that changed nothing (a delta
    removing from an empty level) is no change, a snapshot equal to the book is one."""
    recv = changes.column("recv_ns").to_pylist()
    changed: dict[str, list[int]] = {}
    for market, at in zip(changes.column("market").to_pylist(), recv, strict=True):
        changed.setdefault(market, []).append(at)
    rows: list[tuple[Any, ...]] = []
    if not recv:
        return rows
    end = (recv[0] // interval + 1) * interval
    while end <= recv[-1]:
        for market, states in timed.items():
            found = state_before(states, end)
            if found is None:
                continue
            valid, yes, no = found[1]
            times = changed.get(market, [])
            last = times[bisect.bisect_left(times, end) - 1] if times and times[0] < end else None
            bids = [(p, q) for p, q in sorted(yes, reverse=True)][:levels]
            asks = [(10_000 - p, q) for p, q in sorted(no, reverse=True)][:levels]
            pad = [(None, None)] * levels
            rows.append((end, market, last, valid, tuple((bids + pad)[:levels]),
                         tuple((asks + pad)[:levels])))  # fmt: skip
        end += interval
    return sorted(rows, key=lambda row: (row[0], row[1]))


def _expected_bars(trades: list[Any], timed: Timed, interval: int) -> list[tuple[Any, ...]]:
    """OHLCV per market per interval of the trades delivered (in delivery order), VWAP
    rounded half up to 5 places, and the top of the book as it stood before the end."""
    groups: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for frame in trades:
        recv_ns, _, market, _, yes, count = _trade_units(frame)
        groups.setdefault((recv_ns // interval * interval, market), []).append((yes, count))
    rows = []
    for (start, market), done in sorted(groups.items()):
        prices = [p for p, _ in done]
        volume = sum(c for _, c in done)
        vwap = (Decimal(sum(p * c for p, c in done)) / volume).scaleb(-4).quantize(
            Decimal("0.00001"), ROUND_HALF_UP)  # fmt: skip
        found = state_before(timed.get(market, []), start + interval)
        bid = ask = mid = None
        valid = False
        if found is not None:
            valid, yes_side, no_side = found[1]
            bid = max(yes_side)[0] if yes_side else None
            ask = 10_000 - max(no_side)[0] if no_side else None
            if bid is not None and ask is not None:
                mid = Decimal(bid + ask).scaleb(-4) / 2
        rows.append((start, market, prices[0], max(prices), min(prices), prices[-1], volume,
                     vwap, len(done), bid, ask, mid, valid))  # fmt: skip
    return rows


def _bar_rows(bars: pa.Table) -> list[tuple[Any, ...]]:
    return [
        (r["ts_ns"], r["market"], _u(r["open"], 4), _u(r["high"], 4), _u(r["low"], 4),
         _u(r["close"], 4), _u(r["volume"], 2), r["vwap"], r["trades"], _u(r["bid"], 4),
         _u(r["ask"], 4), r["mid"], r["valid"])
        for r in bars.to_pylist()
    ]  # fmt: skip


def assert_equal_to_replay(root: Path, interval: str = "100ms") -> dict[str, pa.Table]:
    """Derive every dataset and compare each with ReplaySession (depth and bars every
    `interval`)."""
    books, trades, delivered = reference_replay(root)
    changes = compute(root, "book_changes")
    quotes = compute(root, "quotes")
    got_trades = compute(root, "trades")
    timed = timed_states_from_changes(changes)
    mine = {m: [s for _, s in states] for m, states in timed.items()}
    for market, states in books.items():
        assert mine.get(market, []) == states, market
    assert set(mine) <= set(books)
    # depth and bars sample the books at given times: when each state took effect
    assert_same_times(delivered, timed)
    tops = _quotes_by_market(quotes)
    for market, states in books.items():
        want = collapse([_top(s) for s in states])
        assert tops.get(market, []) == want, market
    expected = [_trade_units(f) for f in trades]
    got = [
        (r["recv_ns"], r["seq"], r["market"], r["trade_id"], _u(r["yes_price"], 4),
         _u(r["count"], 2))
        for r in got_trades.to_pylist()
    ]  # fmt: skip
    assert got == expected
    # every typed field as the engine path's own builder makes it from the delivered frame
    fields = ["trade_id", "market", "yes_price", "no_price", "count", "taker_side",
              "exchange_ns", "yes_price_f", "count_f"]  # fmt: skip
    want = [{k: row[k] for k in fields}
            for f in trades for row in trade_batch(f, "", 0, True).to_pylist()]  # fmt: skip
    assert got_trades.select(fields).to_pylist() == want
    step = Spec.parse(f"bars:{interval}").interval_ns
    depth = compute(root, f"depth:3@{interval}")
    assert _depth_rows(depth, 3) == _expected_depth(timed, changes, step, 3)
    bars = compute(root, f"bars:{interval}")
    assert _bar_rows(bars) == _expected_bars(trades, timed, step)
    return {"book_changes": changes, "quotes": quotes, "trades": got_trades, "depth": depth,
            "bars": bars}  # fmt: skip


def test_the_standard_capture(tmp_path: Path) -> None:
    build_standard_capture(tmp_path)
    out = assert_equal_to_replay(tmp_path)
    kinds = out["book_changes"].column("kind").to_pylist()
    assert {"clear", "snapshot", "delta"} <= set(kinds)
    invalid = out["book_changes"].filter(pa.compute.invert(out["book_changes"]["valid"]))
    assert set(invalid.column("kind").to_pylist()) == {"clear"}  # gap, disconnect, reset


def test_examples_sample() -> None:
    out = assert_equal_to_replay(SAMPLE)
    assert out["book_changes"].num_rows > 10_000


def test_two_redundant_feeds(tmp_path: Path) -> None:
    """Books moved between feeds (a feed lost, both lost, one back), all in frames that
    share their receive times."""
    build_feeds_capture(tmp_path)
    out = assert_equal_to_replay(tmp_path, interval="1s")
    assert set(out["book_changes"].column("conn").to_pylist()) == {1, 2, 3, 4}
    assert out["depth"].num_rows and out["bars"].num_rows


def test_every_rule(tmp_path: Path) -> None:
    build_rules_capture(tmp_path)
    out = assert_equal_to_replay(tmp_path)
    changes = out["book_changes"].to_pylist()
    prices = {r["price"] for r in changes if r["price"] is not None}
    assert Decimal("0.4525") in prices and Decimal("0.0001") in prices  # sub-penny
    assert Decimal("10.00") in {r["size"] for r in changes}  # 10.50 - 0.50: fractional
    assert Decimal("0.3100") in prices  # legacy cents
    trades = out["trades"].to_pylist()
    assert [t["valid"] for t in trades].count(False) == 1  # the trade after the gap
    assert len(trades) == len({(t["trade_id"], t["recv_ns"]) for t in trades})


def test_a_market_in_whole_cents_that_starts_trading_between_them(tmp_path: Path) -> None:
    """The kernel keeps a market in whole cents on a cent ladder; the first price between
    cents, reaching the kernel in sequence, moves the market to a finer ladder with every
    level it held (replay.datasets.ladders)."""
    a = RunBuilder(tmp_path, RUN_A, BASE_NS)
    from tests.replay.datasets.captures import _open

    _open(a, 1, 1)
    a.receive(subscribed(1, "orderbook_delta", 1))
    a.receive(snapshot(1, 1, M1, [["0.4500", "3.00"], ["0.4000", "2.00"]], [["0.5000", "1.00"]]))
    a.receive(delta(1, 2, M1, "0.4600", "1.00", "yes"))  # whole cents: the kernel's
    a.receive(delta(1, 3, M1, "0.4550", "5.00", "yes"))  # between cents: fitted
    a.receive(delta(1, 4, M1, "0.4600", "-1.00", "yes"))  # the best goes: 0.4550 is next
    a.receive(delta(1, 5, M1, "0.4525", "1.00", "yes"))  # on the finer ladder now
    a.receive(delta(1, 6, M1, "0.4550", "-5.00", "yes"))  # 0.4525 is next, before 0.4500
    a.receive(snapshot(1, 7, M1, [["0.3300", "1.00"]], [["0.5050", "2.00"]]))
    a.receive(delta(1, 8, M1, "0.3325", "4.00", "yes"))
    a.write()
    out = assert_equal_to_replay(tmp_path)
    bids = [r["bid"] for r in out["quotes"].to_pylist()]
    assert bids == [Decimal(b) for b in ("0.4500", "0.4600", "0.4550", "0.4525", "0.3300",
                                          "0.3325")]  # fmt: skip


def test_trades_in_every_form_the_exchange_has_sent(tmp_path: Path) -> None:
    """Taker sides in other cases, from the outcome side alone, absent, or another word;
    times in milliseconds, seconds or neither; legacy cents: each trade's fields as the
    engine path builds them (the kernel reads most of them as codes and units)."""
    a = RunBuilder(tmp_path, RUN_A, BASE_NS)
    from tests.replay.datasets.captures import _open

    _open(a, 1, 1)
    forms: list[dict[str, Any]] = [
        {"taker_side": "YES"}, {"taker_side": "No"}, {"taker_side": None},
        {"taker_side": "buy"}, {"ts_ms": None}, {"ts_ms": None, "ts": None},
    ]  # fmt: skip
    seq = 0
    for change in forms:
        seq += 1
        frame = trade(2, seq, M1, "0.4000", "0.6000", "3.00")
        frame["msg"] |= change
        frame["msg"] = {k: v for k, v in frame["msg"].items() if v is not None}
        a.receive(frame)
    for outcome in ("no", None):  # no taker_side at all: the outcome side, or nothing
        seq += 1
        frame = trade(2, seq, M1, "0.4000", "0.6000", "3.00")
        del frame["msg"]["taker_side"]
        if outcome is None:
            del frame["msg"]["taker_outcome_side"]
        else:
            frame["msg"]["taker_outcome_side"] = outcome
        a.receive(frame)
    seq += 1
    frame = trade(2, seq, M1, "0.4000", "0.6000", "3.00")
    frame["msg"] |= {"taker_side": None, "taker_outcome_side": "no"}  # sent as null
    a.receive(frame)
    seq += 1
    a.receive(trade(2, seq, M1, 41, 59, 7, legacy=True))
    a.write()
    out = assert_equal_to_replay(tmp_path)
    sides = out["trades"].column("taker_side").to_pylist()
    assert sides == ["yes", "no", "yes", "buy", "yes", "yes", "no", None, "no", "no"]
    assert out["trades"].column("exchange_ns").null_count == 1


@pytest.mark.parametrize("where", ["delta", "snapshot price", "snapshot size"])
def test_a_value_finer_than_the_units_is_refused_not_rounded(tmp_path: Path, where: str) -> None:
    a = RunBuilder(tmp_path, RUN_A, BASE_NS)
    from tests.replay.datasets.captures import _open

    _open(a, 1, 1)
    a.receive(subscribed(1, "orderbook_delta", 1))
    levels = {"delta": [["0.4500", "1.00"]], "snapshot price": [["0.4500", "1.00"],
              ["0.45005", "2.00"]], "snapshot size": [["0.4500", "1.005"]]}[where]  # fmt: skip
    a.receive(snapshot(1, 1, M1, levels, [["0.5000", "1.00"]]))
    if where == "delta":
        a.receive(delta(1, 2, M1, "0.45005", "1.00", "yes"))
    a.write()
    with pytest.raises(SubunitValue, match=f"{M1}: a level at .* finer than the datasets' units"):
        compute(tmp_path, "book_changes")


def test_a_change_at_an_interval_end_belongs_to_the_next_interval(tmp_path: Path) -> None:
    """Depth at an interval's end and a bar's closing quote are the book before any change
    received at that very nanosecond."""
    from tests.replay.datasets.captures import _open

    a = RunBuilder(tmp_path, RUN_A, BASE_NS)
    _open(a, 1, 1)
    a.receive(snapshot(1, 1, M1, [["0.4500", "3.00"]], [["0.5000", "1.00"]]))
    a.receive(trade(2, 1, M1, "0.4500", "0.5500", "2.00"))
    a.now_ns = BASE_NS + 10**9  # exactly the first interval's end
    a.receive(delta(1, 2, M1, "0.4600", "1.00", "yes"))
    a.receive(trade(2, 2, M1, "0.4600", "0.5400", "1.00"))
    a.now_ns = BASE_NS + 2 * 10**9
    a.receive(delta(1, 3, M1, "0.4700", "1.00", "yes"))
    a.write()
    out = assert_equal_to_replay(tmp_path, interval="1s")
    depth = [(r["ts_ns"] - BASE_NS, r["bid_1"]) for r in out["depth"].to_pylist()]
    assert depth == [(10**9, Decimal("0.4500")), (2 * 10**9, Decimal("0.4600"))]
    bars = [(r["ts_ns"] - BASE_NS, r["close"], r["bid"]) for r in out["bars"].to_pylist()]
    assert bars == [(0, Decimal("0.4500"), Decimal("0.4500")),
                    (10**9, Decimal("0.4600"), Decimal("0.4600"))]  # fmt: skip


@pytest.mark.parametrize("changes", [2, 5])
def test_quotes_received_in_one_nanosecond_close_a_bar_with_the_last(
    tmp_path: Path, changes: int
) -> None:
    from tests.replay.datasets.captures import _open

    a = RunBuilder(tmp_path, RUN_A, BASE_NS)
    _open(a, 1, 1)
    a.receive(snapshot(1, 1, M1, [["0.4000", "3.00"]], [["0.5000", "1.00"]]))
    a.receive(trade(2, 1, M1, "0.4500", "0.5500", "2.00"))
    a.step_ns = 0  # the next frames share one receive time
    for k in range(changes):
        a.receive(delta(1, 2 + k, M1, f"0.{41 + k}00", "1.00", "yes"))
    a.write()
    out = assert_equal_to_replay(tmp_path, interval="1s")
    assert out["bars"].column("bid").to_pylist() == [Decimal(f"0.{40 + changes}00")]
    derive(tmp_path, datasets="quotes,bars:1s,bars:1m")  # written: the quotes spilled
    assert table(tmp_path, "bars:1s").equals(out["bars"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 1), st.integers(0, 9999),
                          st.integers(1, 4999)), min_size=1, max_size=60))  # fmt: skip
def test_random_streams(steps: list[tuple[int, int, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = random_capture(Path(tmp), steps)
        assert_equal_to_replay(root)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 99), st.integers(0, 1), st.integers(0, 9),
                          st.integers(0, 9999)), min_size=1, max_size=80))  # fmt: skip
def test_random_redundant_feeds(steps: list[tuple[int, int, int, int]]) -> None:
    """Two feeds delivering one exchange's stream each in its own time, with gaps,
    resyncs, duplicates and reconnects on either: books handed between the feeds (from
    the kernel's copy of the other feed's book), lost on both, back; each trade once."""
    with tempfile.TemporaryDirectory() as tmp:
        root = random_feeds_capture(Path(tmp), steps)
        assert_equal_to_replay(root)


def test_long_random_redundant_feeds(tmp_path: Path) -> None:
    """Longer streams than Hypothesis tends to draw (30 of 120 steps, fixed seeds): each
    has moves between the feeds after a feed's book took frames on the engine's path
    (a price between cents)."""
    moves = 0
    for seed in range(30):
        rnd = random.Random(seed)
        steps = [(rnd.randint(0, 99), rnd.randint(0, 1), rnd.randint(0, 9),
                  rnd.randint(0, 9999)) for _ in range(120)]  # fmt: skip
        out = assert_equal_to_replay(random_feeds_capture(tmp_path / str(seed), steps))
        changes = out["book_changes"].to_pylist()
        last: dict[str, int] = {}
        for row in changes:  # a valid book's first row from another connection: a move
            moved = last.get(row["market"], row["conn"]) != row["conn"]
            if row["kind"] == "clear" and row["valid"] and moved:
                moves += 1
            last[row["market"]] = row["conn"]
    assert moves > 100


def test_tiny_buffers_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every output buffer full at every few rows (flushes mid-window, mid-snapshot, in
    the engine's hand-offs): the same rows as with the real sizes."""
    import replay.datasets.driver as driver
    import replay.datasets.rows as rows

    build_rules_capture(tmp_path)
    expected = {n: compute(SAMPLE, n) for n in ("book_changes", "quotes", "trades")}
    rules = {n: compute(tmp_path, n) for n in ("book_changes", "quotes", "trades")}
    monkeypatch.setattr(rows, "_CAP", 8)
    monkeypatch.setattr(driver, "_BATCH_ROWS", 100)
    for name, want in expected.items():
        assert compute(SAMPLE, name).equals(want), name
    for name, want in rules.items():
        assert compute(tmp_path, name).equals(want), name


def test_bars_inputs_kept_a_few_rows_at_a_time_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bars' inputs (trades, closing quotes numbered by arrival) kept every few rows
    instead of every 64k (where they are all kept at the end): the same bars, in memory
    and written."""
    import replay.datasets.sinks as sinks

    build_rules_capture(tmp_path / "rules")
    roots = (SAMPLE, tmp_path / "rules")
    names = ("bars:1s", "bars:1m")
    expected = {(root, n): compute(root, n) for root in roots for n in names}
    assert all(t.num_rows for t in expected.values())
    for chunk in (sinks._BAR_CHUNK, 3):
        monkeypatch.setattr(sinks, "_BAR_CHUNK", chunk)
        for (root, name), want in expected.items():
            assert compute(root, name).equals(want), (chunk, root, name)
            out = tmp_path / f"out-{chunk}" / root.name
            derive(root, to=out, datasets=",".join(names))
            assert table(root, name, datasets_dir=out).equals(want), (chunk, root, name)


def test_a_snapshot_larger_than_the_buffers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import replay.datasets.rows as rows
    from tests.replay.datasets.captures import _open

    monkeypatch.setattr(rows, "_CAP", 8)
    a = RunBuilder(tmp_path, RUN_A, BASE_NS)
    _open(a, 1, 1)
    a.receive(snapshot(1, 1, M1, [["0.4500", "1.00"]], None))
    a.receive(snapshot(1, 2, M1, [[f"0.{i:04d}", "1.00"] for i in range(100, 140)], None))
    a.receive(delta(1, 3, M1, "0.0100", "1.00", "yes"))
    a.write()
    changes = compute(tmp_path, "book_changes")
    assert changes.column("kind").to_pylist() == (
        ["clear", "snapshot", "clear"] + ["snapshot"] * 40 + ["delta"])  # fmt: skip
    assert_equal_to_replay(tmp_path)
