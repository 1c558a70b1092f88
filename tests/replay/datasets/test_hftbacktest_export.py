"""The hftbacktest export: hftbacktest's own backtest loop over an export sees our book.

A capture is built with the project's capture factory (real Parquet, real frames):
a sub-penny market with fractional sizes, a snapshot, deltas on both ladders, trades
by YES and NO takers, a sequence gap and its resync, a disconnect and a reconnect with
a one-sided book. It is exported through the datasets API (`replay.datasets.table`),
then hftbacktest's `HashMapMarketDepthBacktest` elapses over the file step by step,
and its best bid and ask (ticks and sizes) at every chosen time must be those of the
book `ReplaySession` delivers at that time; invalid books must be empty there. The
mapping's own rules (dtype, flags, tick and lot, timestamps, the opening book) are
checked on small hand-made tables, and the command on the capture.
"""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import hftbacktest
import numpy as np
import pyarrow as pa
import pytest

from kalshi_tape.cli import main
from replay.datasets import hftbacktest as hx
from replay.datasets.export_cli import export_hftbacktest
from replay.datasets.schema import BOOK_CHANGES, TRADES
from replay.reading.session import ReplaySession
from schemas.events import Attempt, Closed, Opened, RunStart, RunStop

from ..capture_factory import (
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

pytestmark = pytest.mark.timeout(180)
MS = 1_000_000
INVALID_MIN = -(2**63)
INVALID_MAX = 2**63 - 1


def no_taker(sid: int, seq: int, market: str, yes: str, no: str, count: str) -> dict[str, Any]:
    """A trade whose taker bought NO (sold YES)."""
    frame = trade(sid, seq, market, yes, no, count)
    frame["msg"] |= {"taker_side": "no", "taker_outcome_side": "no", "taker_book_side": "ask"}
    return frame


@dataclass
class Built:
    root: Path
    run: RunBuilder
    start_mid_book: int  # a time inside M1's first book (after some deltas)


def build_capture(root: Path) -> Built:
    """M1 ticks below a cent and trades fractions; M2 is a cent market beside it."""
    a = RunBuilder(root, RUN_A, BASE_NS)
    a.event(RunStart(run_id=RUN_A, version="0.1.0"), 0)
    a.event(Attempt(url=URL, attempt=1), 1)
    a.event(Opened(url=URL, standby=False), 1)
    a.send(subscribe(1, ["orderbook_delta"], [M1, M2]))
    a.send(subscribe(2, ["trade"]))
    a.receive(subscribed(1, "orderbook_delta", 1))
    a.receive(subscribed(2, "trade", 2))
    yes = [["0.4512", "100.50"], ["0.4400", "7.00"]]
    a.receive(snapshot(1, 1, M1, yes, [["0.5000", "20.25"], ["0.4900", "3.00"]]))
    a.receive(snapshot(1, 2, M2, [["0.3000", "10.00"]], None))
    a.receive(delta(1, 3, M1, "0.4600", "2.50", "yes"))  # a new best bid
    a.receive(delta(1, 4, M1, "0.5000", "-20.25", "no"))  # the best NO bid goes: ask 0.51
    a.receive(delta(1, 5, M1, "0.4951", "1.75", "no"))  # ask 0.5049, sub-penny
    a.receive(trade(2, 1, M1, "0.5049", "0.4951", "1.75"))
    mid = a.now_ns - MS // 2
    a.receive(delta(1, 6, M1, "0.4512", "-0.50", "yes"))  # below the best bid
    a.receive(delta(1, 7, M2, "0.3100", "1.00", "yes"))
    a.receive(no_taker(2, 2, M1, "0.4600", "0.5400", "0.25"))
    a.receive(trade(2, 3, M2, "0.3100", "0.6900", "1.00"))
    a.receive(delta(1, 8, M1, "0.4600", "-2.50", "yes"))  # the best bid goes: 0.4512
    a.receive(delta(1, 10, M1, "0.4700", "5.00", "yes"))  # seq 9 lost: a gap
    a.send(update_get_snapshot(4, 1, [M1, M2]))
    a.receive(snapshot(1, 11, M1, [["0.4700", "5.00"], ["0.4512", "100.00"]],
                       [["0.5100", "0.50"]], id_=4))  # fmt: skip
    a.receive(snapshot(1, 12, M2, [["0.3100", "1.00"]], None, id_=4))
    a.receive(delta(1, 13, M1, "0.5200", "4.00", "no"))  # ask 0.48
    a.receive(delta(1, 14, M1, "0.4700", "-5.00", "yes"))
    a.receive(trade(2, 4, M1, "0.4800", "0.5200", "3.50"))
    a.advance(2_000_000_000)  # later than the deltas' exchange time from here on
    a.receive(delta(1, 15, M1, "0.4512", "0.05", "yes"))
    a.event(Closed(code=1006, reason="", disconnect_reason="transport"), 1)
    a.advance(500_000_000)
    a.event(Attempt(url=URL, attempt=1), 2)
    a.event(Opened(url=URL, standby=False), 2)
    a.send(subscribe(5, ["orderbook_delta"], [M1]), conn=2)
    a.receive(subscribed(5, "orderbook_delta", 1), conn=2)
    a.receive(snapshot(1, 1, M1, [["0.4000", "1.00"]], None), conn=2)  # one-sided
    a.receive(delta(1, 2, M1, "0.5500", "2.00", "no"), conn=2)  # ask 0.45
    a.event(Closed(code=1000, reason="bye", disconnect_reason="shutdown"), 2)
    a.event(RunStop(reason="signal"), 0)
    a.write()
    return Built(root, a, mid)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_capture(tmp_path_factory.mktemp("hft") / "capture")


# -- the two sides of the comparison ---------------------------------------------------------

Top = tuple[int | None, float | None, int | None, float | None]  # bid tick, qty, ask tick, qty


async def _replayed_books(root: Path, market: str) -> list[tuple[int, Any]]:
    async with ReplaySession(root) as session:
        books = await session.orderbook(market)
        return [(book.recv_ns, book) async for book in books]


def ours_at(books: list[tuple[int, Any]], t: int, tick: D) -> Top:
    """The best YES bid and ask of the last book delivered at or before `t`."""
    at = bisect.bisect_right([recv_ns for recv_ns, _ in books], t)
    current = books[at - 1][1] if at else None
    if current is None or not current.valid:
        return (None, None, None, None)
    bid, ask = current.best_yes_bid, current.best_yes_ask
    return (
        None if bid is None else int(bid.price / tick),
        None if bid is None else float(bid.size),
        None if ask is None else int(ask.price / tick),
        None if ask is None else float(ask.size),
    )


@dataclass
class HftRun:
    tops: list[Top]
    trades: list[tuple[str, float, float]]  # (BUY/SELL, price, qty)


def hft_run(path: Path, tick: float, lot: float, times: list[int]) -> HftRun:
    """hftbacktest's own loop over the file: elapse to each time, read its best bid/ask."""
    asset = (
        hftbacktest.BacktestAsset()
        .data([str(path)])
        .linear_asset(1.0)
        .constant_order_latency(0, 0)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0)
        .tick_size(tick)
        .lot_size(lot)
        .last_trades_capacity(64)
    )
    hbt = hftbacktest.HashMapMarketDepthBacktest([asset])
    tops: list[Top] = []
    trades: list[tuple[str, float, float]] = []
    try:
        hbt.elapse(0)  # the clock starts at the first event
        for t in times:
            if t > hbt.current_timestamp:
                hbt.elapse(t - hbt.current_timestamp)
            depth = hbt.depth(0)
            bid, ask = depth.best_bid_tick, depth.best_ask_tick
            tops.append(
                (
                    None if bid == INVALID_MIN else bid,
                    None if bid == INVALID_MIN else depth.best_bid_qty,
                    None if ask == INVALID_MAX else ask,
                    None if ask == INVALID_MAX else depth.best_ask_qty,
                )
            )
            for ev in hbt.last_trades(0):
                side = "BUY" if int(ev["ev"]) & hftbacktest.BUY_EVENT else "SELL"
                trades.append((side, float(ev["px"]), float(ev["qty"])))
            hbt.clear_last_trades(0)
    finally:
        hbt.close()
    return HftRun(tops, trades)


def chosen_times(run: RunBuilder, since: int) -> list[int]:
    """Every record's receive time, and half a millisecond after it, from `since` on."""
    times = sorted({t for r in run.records for t in (r.recv_ns, r.recv_ns + MS // 2)})
    return [t for t in times if t >= since]


# -- hftbacktest against ReplaySession --------------------------------------------------------


def test_hftbacktest_sees_the_replayed_book_at_every_chosen_time(
    built: Built, tmp_path: Path
) -> None:
    export = export_hftbacktest(str(built.root), M1)
    assert (export.tick_size, export.lot_size) == (D("0.0001"), D("0.01"))
    path = export.save(tmp_path / "m1.npz")
    books = asyncio.run(_replayed_books(built.root, M1))
    first = int(export.events["local_ts"][0])
    times = chosen_times(built.run, first)
    run = hft_run(path, float(export.tick_size), float(export.lot_size), times)
    ours = [ours_at(books, t, export.tick_size) for t in times]
    mismatches = [
        (t - BASE_NS, o, h) for t, o, h in zip(times, ours, run.tops, strict=True) if o != h
    ]
    assert not mismatches
    # The comparison covered what matters: sub-penny asks, both breaks, a one-sided book.
    assert (4600, 2.5, 5049, 1.75) in ours
    assert (None, None, None, None) in ours[2:]  # the gap, the disconnect
    assert (4000, 1.0, None, None) in ours
    assert ours[-1] == (None, None, None, None)  # the run ended: the book is invalid
    # Trades: YES takers buy, NO takers sell, at the YES price, with fractional counts.
    assert run.trades == [("BUY", 0.5049, 1.75), ("SELL", 0.46, 0.25), ("BUY", 0.48, 3.5)]


def test_an_export_from_inside_a_book_opens_with_the_book_of_that_time(
    built: Built, tmp_path: Path
) -> None:
    start = built.start_mid_book
    export = export_hftbacktest(str(built.root), M1, start_ns=start)
    first = export.events[0]
    assert int(first["ev"]) & 0xFF == hx.DEPTH_CLEAR_EVENT and int(first["local_ts"]) == start
    path = export.save(tmp_path / "m1-late.npz")
    books = asyncio.run(_replayed_books(built.root, M1))
    times = chosen_times(built.run, start)
    run = hft_run(path, float(export.tick_size), float(export.lot_size), times)
    assert run.tops == [ours_at(books, t, export.tick_size) for t in times]
    assert run.tops[0] == (4600, 2.5, 5049, 1.75)
    assert run.trades == [("SELL", 0.46, 0.25), ("BUY", 0.48, 3.5)]


def test_the_export_passes_hftbacktests_own_order_checks(built: Built, tmp_path: Path) -> None:
    from hftbacktest.data.validation import validate_event_order

    events = export_hftbacktest(str(built.root), M1).events
    validate_event_order(events)
    assert np.all(events["exch_ts"] <= events["local_ts"])
    # The deltas' exchange time (ts_ms) is after their receipt early on: capped there;
    # after the two-second pause it is before it, and kept.
    deltas = events[(events["ev"] & 0xFF) == hx.DEPTH_EVENT]
    assert np.any(deltas["exch_ts"] < deltas["local_ts"])
    assert np.any(deltas["exch_ts"] == deltas["local_ts"])


# -- the mapping on hand-made tables -----------------------------------------------------------


def book_table(rows: list[tuple[Any, ...]], market: str = M1) -> pa.Table:
    """Rows of (ms, kind, side, price, size, valid[, exchange ms])."""
    out = []
    for row in rows:
        ms, kind, side, price, size, valid = row[:6]
        exchange = row[6] if len(row) > 6 else None
        out.append(
            {
                "recv_ns": BASE_NS + ms * MS,
                "exchange_ns": None if exchange is None else BASE_NS + exchange * MS,
                "run_id": RUN_A,
                "conn": 1,
                "sid": 1,
                "seq": 1,
                "market": market,
                "kind": kind,
                "side": side,
                "price": None if price is None else D(price),
                "size": None if size is None else D(size),
                "delta": None,
                "is_snapshot": kind != "delta",
                "valid": valid,
            }
        )
    return pa.Table.from_pylist(out, schema=BOOK_CHANGES)


def trade_table(
    rows: list[tuple[int, str, str, str]], market: str = M1, valid: bool = True
) -> pa.Table:
    """Rows of (ms, yes price, count, taker side)."""
    out = [
        {
            "recv_ns": BASE_NS + ms * MS,
            "exchange_ns": BASE_NS + ms * MS,
            "market": market,
            "trade_id": f"t{i}",
            "yes_price": D(price),
            "no_price": 1 - D(price),
            "count": D(count),
            "taker_side": taker,
            "valid": valid,
        }
        for i, (ms, price, count, taker) in enumerate(rows)
    ]
    return pa.Table.from_pylist(out, schema=TRADES)


CENT_BOOK = [
    (1, "clear", None, None, None, True),
    (1, "snapshot", "yes", "0.4500", "10.00", True),
    (1, "snapshot", "no", "0.5000", "4.00", True),
    (2, "delta", "yes", "0.4600", "3.00", True),
]


def test_the_event_format_and_flags_are_hftbacktests() -> None:
    from hftbacktest import types

    assert types.event_dtype == hx.EVENT_DTYPE
    for name in ("DEPTH_EVENT", "TRADE_EVENT", "DEPTH_CLEAR_EVENT", "DEPTH_SNAPSHOT_EVENT",
                 "EXCH_EVENT", "LOCAL_EVENT", "BUY_EVENT", "SELL_EVENT"):  # fmt: skip
        assert getattr(hx, name) == getattr(types, name), name


def test_yes_bids_are_bids_and_no_bids_asks_at_one_minus_the_price() -> None:
    export = hx.to_events(book_table(CENT_BOOK), trade_table([(3, "0.5000", "2.00", "yes")]))
    ev = export.events
    both = hx.EXCH_EVENT | hx.LOCAL_EVENT
    assert ev["ev"].tolist() == [
        both | hx.DEPTH_CLEAR_EVENT,
        both | hx.DEPTH_SNAPSHOT_EVENT | hx.BUY_EVENT,
        both | hx.DEPTH_SNAPSHOT_EVENT | hx.SELL_EVENT,
        both | hx.DEPTH_EVENT | hx.BUY_EVENT,
        both | hx.TRADE_EVENT | hx.BUY_EVENT,
    ]
    assert ev["px"][1:].tolist() == [0.45, 0.5, 0.46, 0.5]
    assert ev["qty"][1:].tolist() == [10.0, 4.0, 3.0, 2.0]
    assert (export.tick_size, export.lot_size) == (D("0.01"), D("1"))
    assert (export.depth_events, export.clear_events, export.trade_events) == (3, 1, 1)


def test_tick_and_lot_come_from_the_data_and_a_given_one_must_divide_it() -> None:
    deci = [*CENT_BOOK, (3, "delta", "no", "0.4990", "0.50", True)]
    export = hx.to_events(book_table(deci))
    assert (export.tick_size, export.lot_size) == (D("0.001"), D("0.01"))
    assert export.tick_inferred and export.lot_inferred
    finer = hx.to_events(book_table(CENT_BOOK), tick_size="0.0001", lot_size="0.01")
    assert (finer.tick_size, finer.lot_size) == (D("0.0001"), D("0.01"))
    assert not finer.tick_inferred
    with pytest.raises(ValueError, match=r"tick size 0.01 does not divide 1 price.*0.501"):
        hx.to_events(book_table(deci), tick_size="0.01")
    with pytest.raises(ValueError, match=r"lot size 1 does not divide 1 size.*0.5"):
        hx.to_events(book_table(deci), lot_size="1")
    with pytest.raises(ValueError, match="finer than the data's unit"):
        hx.to_events(book_table(CENT_BOOK), tick_size="0.00001")


def test_rows_between_a_break_and_its_resync_and_before_the_first_snapshot_are_left_out() -> None:
    rows = [
        (0, "delta", "yes", "0.4400", "1.00", True),  # before any snapshot: no book yet
        *CENT_BOOK,
        (5, "clear", None, None, None, False),  # a gap
        (6, "delta", "yes", "0.4700", "1.00", False),
        (7, "clear", None, None, None, True),
        (7, "snapshot", "yes", "0.4700", "1.00", True),
        (8, "delta", "no", "0.5000", "0.00", True),
    ]
    # the first trade after a break of its channel (valid false) is a real trade: kept
    export = hx.to_events(
        book_table(rows), trade_table([(6, "0.4700", "1.00", "yes")], valid=False)
    )
    assert export.skipped == 2
    kinds = (export.events["ev"] & 0xFF).tolist()
    clear, snap, upd, tr = (
        hx.DEPTH_CLEAR_EVENT,
        hx.DEPTH_SNAPSHOT_EVENT,
        hx.DEPTH_EVENT,
        hx.TRADE_EVENT,
    )
    assert kinds == [clear, snap, snap, upd, clear, tr, clear, snap, upd]
    assert export.events["qty"][-1] == 0.0  # a level that went: removed in hftbacktest


def test_timestamps_are_monotone_and_exchange_time_never_after_receipt() -> None:
    rows = [
        (10, "clear", None, None, None, True),
        (10, "snapshot", "yes", "0.4500", "1.00", True),
        (11, "delta", "yes", "0.4600", "1.00", True, 15),  # exchange time after receipt
        (12, "delta", "yes", "0.4700", "1.00", True, 5),  # earlier than the one before
        (9, "delta", "yes", "0.4800", "1.00", True, 8),  # the wall clock stepped back
    ]
    export = hx.to_events(book_table(rows))
    local = ((export.events["local_ts"] - BASE_NS) // MS).tolist()
    exch = ((export.events["exch_ts"] - BASE_NS) // MS).tolist()
    assert local == [10, 10, 11, 12, 12]
    assert exch == [10, 10, 11, 11, 11]
    assert export.clamped == 3
    assert export.events["px"].tolist()[2:] == [0.46, 0.47, 0.48]  # capture order kept
    # A trade received with a book change comes first, as hftbacktest's converters put it.
    export = hx.to_events(book_table(rows[:4]), trade_table([(12, "0.4700", "1.00", "no")]))
    assert (export.events["ev"][3:] & 0xFF).tolist() == [hx.TRADE_EVENT, hx.DEPTH_EVENT]
    assert int(export.events["ev"][3]) & hx.SELL_EVENT


def test_the_opening_book_is_what_the_earlier_changes_add_up_to() -> None:
    prior = book_table([
        *CENT_BOOK,
        (3, "delta", "no", "0.5000", "0.00", True),
        (3, "delta", "no", "0.4800", "2.50", True),
        (4, "delta", "yes", "0.4600", "5.00", True),
    ])  # fmt: skip
    window = book_table([(20, "delta", "yes", "0.4600", "6.00", True)])
    start = BASE_NS + 15 * MS
    export = hx.to_events(window, prior=prior, start_ns=start)
    ev = export.events
    assert (ev["local_ts"][:4] == start).all()
    assert (ev["ev"][:4] & 0xFF).tolist() == [hx.DEPTH_CLEAR_EVENT] + [hx.DEPTH_SNAPSHOT_EVENT] * 3
    assert list(zip(ev["px"][1:4].tolist(), ev["qty"][1:4].tolist(), strict=True)) == [
        (0.46, 5.0), (0.45, 10.0), (0.52, 2.5),
    ]  # fmt: skip
    # after a break that was not resynced, the book is unknown: nothing opens it
    broken = pa.concat_tables([prior, book_table([(5, "clear", None, None, None, False)])])
    with pytest.raises(ValueError, match="no book change or trade"):
        hx.to_events(window, prior=broken, start_ns=start)


def test_more_than_one_market_needs_a_choice_and_an_empty_export_is_refused() -> None:
    both = pa.concat_tables([book_table(CENT_BOOK), book_table(CENT_BOOK, market=M2)])
    with pytest.raises(ValueError, match="2 markets"):
        hx.to_events(both)
    assert hx.to_events(both, market=M2).market == M2
    with pytest.raises(ValueError, match="no book change or trade"):
        hx.to_events(book_table(CENT_BOOK), market="KX-NONE")


def test_the_file_keeps_its_name_and_loads_as_hftbacktest_reads_it(tmp_path: Path) -> None:
    export = hx.to_events(book_table(CENT_BOOK))
    path = export.save(tmp_path / "book.bin")
    assert path == tmp_path / "book.bin" and not (tmp_path / "book.bin.npz").exists()
    with np.load(path) as npz:
        assert npz["data"].dtype == hftbacktest.types.event_dtype
        assert (float(npz["tick_size"]), float(npz["lot_size"]), str(npz["market"])) == (
            0.01, 1.0, M1,
        )  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["book.bin"]


# -- the command --------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_the_command_writes_the_file_and_says_which_tick_and_lot_to_use(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "m1.npz"
    status, out, err = run_cli(
        capsys, "export", "hftbacktest", str(built.root), "--market", M1, "-o", str(out_file)
    )
    assert status == 0, err
    assert "tick_size 0.0001 (from the data), lot_size 0.01 (from the data)" in out
    assert ".tick_size(0.0001).lot_size(0.01)" in out
    with np.load(out_file) as npz:
        data = npz["data"]
    assert len(data) == len(export_hftbacktest(str(built.root), M1).events)
    assert f"{len(data):,} events of {M1}" in out


def test_the_command_refuses_a_market_the_capture_lacks_in_one_line(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "x.npz"
    status, out, err = run_cli(
        capsys, "export", "hftbacktest", str(built.root), "--market", "KX-NONE",
        "-o", str(out_file),
    )  # fmt: skip
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "KX-NONE" in err and M1 in err  # what it holds
    assert not out_file.exists()


def test_the_command_does_not_replace_a_file_without_force(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "m1.npz"
    out_file.write_bytes(b"mine")
    argv = ["export", "hftbacktest", str(built.root), "--market", M1, "-o", str(out_file)]
    status, _, err = run_cli(capsys, *argv)
    assert status == 2 and "already exists" in err and "--force" in err
    assert out_file.read_bytes() == b"mine"
    status, _, err = run_cli(capsys, *argv, "--force")
    assert status == 0, err
    assert out_file.read_bytes() != b"mine"


def test_the_command_refuses_a_tick_that_does_not_divide_the_prices(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(
        capsys, "export", "hftbacktest", str(built.root), "--market", M1,
        "-o", str(tmp_path / "m1.npz"), "--tick-size", "0.01",
    )  # fmt: skip
    assert status == 2
    assert "--tick-size" in err and "0.0001" in err
    assert len(err.strip().splitlines()) == 1
