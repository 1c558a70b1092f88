"""The SQL views over a capture: typed values for both wire forms, connections, gaps.

Every test builds real Parquet partitions (`capture_factory`) and queries them
with a real DuckDB through `replay.sql.connection.connect`. Results are fetched as Arrow, as
the query command does.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from replay.reading.layout import list_capture_files
from replay.sql.connection import VIEW_NAMES, connect, run_query
from replay.sql.verify import verify_capture
from schemas.errors import ConfigError
from schemas.events import Closed, Opened
from schemas.record import CaptureRecord

from .capture_factory import (
    M1,
    M2,
    RUN_A,
    RunBuilder,
    StandardCapture,
    build_standard_capture,
    delta,
    snapshot,
    subscribe,
    subscribed,
    trade,
    truncate_file,
    update_get_snapshot,
)
from .two_feeds import record_two_feeds

UTC = dt.UTC


@pytest.fixture
def cap(tmp_path: Path) -> StandardCapture:
    return build_standard_capture(tmp_path / "capture")


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    return con.sql(sql).to_arrow_table().to_pylist()


def one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The single row of a query (fetched whole: DuckDB 2 keeps a half-read result open)."""
    (row,) = con.execute(sql).fetchall()
    return row


def test_trades_view_gives_exact_decimals_for_current_and_legacy_forms(
    cap: StandardCapture,
) -> None:
    con = connect(cap.root)
    got = rows(
        con,
        "SELECT market_ticker, yes_price_dollars, no_price_dollars, count, taker_outcome_side, "
        f"taker_book_side, exchange_time FROM trades WHERE run_id = '{RUN_A}' ORDER BY idx LIMIT 2",
    )
    assert got == [
        {
            "market_ticker": M1,
            "yes_price_dollars": Decimal("0.4700"),
            "no_price_dollars": Decimal("0.5300"),
            "count": Decimal("12.00"),
            "taker_outcome_side": "yes",
            "taker_book_side": "bid",
            "exchange_time": dt.datetime(2026, 11, 21, 8, 0, 1, 500_000, tzinfo=UTC),  # ts_ms
        },
        {  # legacy: integer cents and an integer count; taker_side maps to the canonical sides
            "market_ticker": M2,
            "yes_price_dollars": Decimal("0.3100"),
            "no_price_dollars": Decimal("0.6900"),
            "count": Decimal("4.00"),
            "taker_outcome_side": "no",
            "taker_book_side": "ask",
            "exchange_time": dt.datetime(2026, 11, 21, 8, 0, 2, tzinfo=UTC),  # ts, int seconds
        },
    ]


def test_typed_columns_have_decimal_and_timestamptz_types(cap: StandardCapture) -> None:
    con = connect(cap.root)
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE trades)").fetchall())
    assert types["yes_price_dollars"] == "DECIMAL(18,4)"
    assert types["count"] == "DECIMAL(18,2)"
    assert types["exchange_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["recv_time"] == "TIMESTAMP WITH TIME ZONE"
    money = dict(
        con.execute("SELECT column_name, column_type FROM (DESCRIBE user_orders)").fetchall()
    )
    assert money["taker_fees_dollars"] == "DECIMAL(18,6)"


def test_tickers_map_legacy_cents_and_counts_into_the_same_columns(cap: StandardCapture) -> None:
    got = rows(
        connect(cap.root),
        "SELECT price_dollars, yes_bid_dollars, yes_ask_dollars, volume, open_interest, "
        "dollar_volume, exchange_time FROM tickers ORDER BY idx",
    )
    current, legacy = got
    for row in got:
        assert (row["price_dollars"], row["yes_bid_dollars"], row["yes_ask_dollars"]) == (
            Decimal("0.4800"),
            Decimal("0.4700"),
            Decimal("0.4900"),
        )
        assert (row["volume"], row["open_interest"]) == (Decimal("1200.00"), Decimal("800.00"))
    assert current["dollar_volume"] == 576 and legacy["dollar_volume"] is None
    assert current["exchange_time"] == dt.datetime(2026, 11, 21, 8, 0, 3, 125_000, tzinfo=UTC)
    assert legacy["exchange_time"] == dt.datetime(2026, 11, 21, 8, 0, 3, tzinfo=UTC)


def test_book_views_read_both_forms_and_one_sided_snapshots(cap: StandardCapture) -> None:
    con = connect(cap.root)
    first_two = rows(
        con, "SELECT market_ticker, yes_levels, no_levels FROM book_snapshots ORDER BY idx LIMIT 2"
    )
    assert first_two[0]["yes_levels"] == [
        {"price_dollars": Decimal("0.4500"), "quantity": Decimal("100.00")},
        {"price_dollars": Decimal("0.4700"), "quantity": Decimal("50.00")},
    ]
    assert first_two[1] == {  # legacy cents, and the empty NO side's key is absent
        "market_ticker": M2,
        "yes_levels": [{"price_dollars": Decimal("0.3000"), "quantity": Decimal("10.00")}],
        "no_levels": [],
    }
    deltas = rows(con, "SELECT side, price_dollars, delta FROM book_deltas ORDER BY idx LIMIT 2")
    assert deltas == [
        {"side": "yes", "price_dollars": Decimal("0.4700"), "delta": Decimal("-50.00")},
        {"side": "no", "price_dollars": Decimal("0.3100"), "delta": Decimal("5.00")},
    ]
    snap = cap.resync_snapshot_idx
    levels = one(
        con, f"SELECT count(*), sum(quantity) FROM book_snapshot_levels WHERE idx = {snap}"
    )
    assert levels == (2, Decimal("115.00"))
    assert rows(
        con, f"SELECT request_id FROM book_snapshots WHERE idx = {cap.resync_snapshot_idx}"
    ) == [{"request_id": 4}]


def test_private_channels_are_typed_in_both_forms(cap: StandardCapture) -> None:
    con = connect(cap.root)
    fills = rows(
        con,
        "SELECT yes_price_dollars, count, fee_cost_dollars, post_position FROM fills ORDER BY idx",
    )
    assert fills == [
        {
            "yes_price_dollars": Decimal("0.3500"),
            "count": Decimal("3.00"),
            "fee_cost_dollars": Decimal("0.021000"),
            "post_position": Decimal("3.00"),
        },
        {
            "yes_price_dollars": Decimal("0.3500"),
            "count": Decimal("3.00"),
            "fee_cost_dollars": None,
            "post_position": Decimal("3.00"),
        },
    ]
    orders = rows(
        con,
        "SELECT market_ticker, yes_price_dollars, fill_count, taker_fees_dollars, created_time "
        "FROM user_orders ORDER BY idx",
    )
    assert [o["market_ticker"] for o in orders] == [M1, M2]  # user_order names it `ticker`
    assert {o["yes_price_dollars"] for o in orders} == {Decimal("0.3500")}
    assert {o["fill_count"] for o in orders} == {Decimal("3.00")}
    assert orders[0]["taker_fees_dollars"] == Decimal("0.021000")
    assert orders[0]["created_time"] == dt.datetime(2026, 11, 21, 8, 0, 4, 250_000, tzinfo=UTC)
    assert orders[1]["created_time"] == dt.datetime(2026, 11, 21, 8, 0, 4, tzinfo=UTC)  # RFC3339
    (pos,) = rows(con, "SELECT position, realized_pnl_dollars, volume FROM positions")
    assert pos == {
        "position": Decimal("-3.00"),
        "realized_pnl_dollars": Decimal("0.120000"),
        "volume": Decimal("3.00"),
    }
    (life,) = rows(
        con,
        "SELECT event_type, result, settlement_value_dollars, determination_time FROM lifecycle",
    )
    assert life == {
        "event_type": "determined",
        "result": "yes",
        "settlement_value_dollars": Decimal("1.0000"),
        "determination_time": dt.datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
    }


def test_numbers_sent_as_json_numbers_and_rfc3339_ts_still_read(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path)
    run.event(Opened(url="wss://x", standby=False), 1)
    frame = delta(1, 1, M1, "0.4200", "0", "yes")
    frame["msg"] |= {"delta_fp": 74.77, "price_dollars": 0.42}  # numbers, not strings
    # only the deprecated RFC3339 `ts` is left (docs/protocol.md section 8.1)
    del frame["msg"]["ts_ms"]
    run.receive(frame)
    bad = trade(2, 1, M1, "not-a-price", "0.5000", "1.00")
    run.receive(bad)
    run.write()
    con = connect(tmp_path)
    assert rows(con, "SELECT price_dollars, delta, exchange_time FROM book_deltas") == [
        {
            "price_dollars": Decimal("0.4200"),
            "delta": Decimal("74.77"),
            "exchange_time": dt.datetime(2026, 11, 21, 8, 0, 1, tzinfo=UTC),
        }
    ]
    # A malformed value is NULL, and the rest of the row still reads.
    assert rows(con, "SELECT yes_price_dollars, no_price_dollars FROM trades") == [
        {"yes_price_dollars": None, "no_price_dollars": Decimal("0.5000")}
    ]


def test_frames_view_holds_every_record_with_its_date(cap: StandardCapture) -> None:
    con = connect(cap.root)
    records = cap.run_a.records + cap.run_b.records
    assert one(con, "SELECT count(*) FROM frames") == (len(records),)
    unknown = rows(
        con, "SELECT idx, raw, channel, type, \"date\" FROM frames WHERE channel = '_unknown'"
    )
    assert unknown == [
        {
            "idx": cap.unknown_idx,
            "raw": b'\xff\xfe{"type":"trade"',
            "channel": "_unknown",
            "type": "_malformed",
            "date": dt.date(2026, 11, 21),
        }
    ]
    by_date = dict(
        con.execute('SELECT "date"::VARCHAR, count(*) FROM frames GROUP BY 1').fetchall()
    )
    assert by_date == {"2026-11-21": len(cap.run_a.records), "2026-11-22": len(cap.run_b.records)}


def test_typed_views_read_only_their_own_partitions(cap: StandardCapture) -> None:
    con = connect(cap.root)
    (ticker_file,) = [p for p in cap.paths if "channel=ticker" in str(p)]
    truncate_file(ticker_file, 100)  # any read of it now fails
    assert one(con, "SELECT count(*) FROM trades") == (6,)
    with pytest.raises(duckdb.Error):
        one(con, "SELECT count(*) FROM tickers")
    # `frames` reads every footer to learn which files hold `opcode` (older ones lack it):
    # a damaged file anywhere stops it, where `verify` names the file.
    with pytest.raises(duckdb.Error):
        one(con, "SELECT count(*) FROM frames WHERE channel = 'trade'")


def test_connections_view_has_one_row_per_connection_with_frame_counts(
    cap: StandardCapture,
) -> None:
    got = rows(
        connect(cap.root),
        "SELECT run_id, conn, close_code, close_reason, disconnect_reason, frames_in, frames_out, "
        "frames FROM connections ORDER BY run_id, conn",
    )
    expected = []
    for run in (cap.run_a, cap.run_b):
        for conn in sorted({r.conn for r in run.records if r.conn > 0}):
            n_in = sum(1 for r in run.records if r.conn == conn and r.dir == "in")
            n_out = sum(1 for r in run.records if r.conn == conn and r.dir == "out")
            expected.append((run.run_id, conn, n_in, n_out, n_in + n_out))
    assert [
        (r["run_id"], r["conn"], r["frames_in"], r["frames_out"], r["frames"]) for r in got
    ] == expected
    assert [(r["close_code"], r["close_reason"], r["disconnect_reason"]) for r in got] == [
        (1006, "", "transport"),
        (1000, "bye", "shutdown"),
        (None, None, None),  # run B never closed
    ]


def test_frames_events_and_connections_say_which_feed(tmp_path: Path) -> None:
    two = record_two_feeds(tmp_path)
    con = connect(two.root)
    by_feed = dict(con.execute("SELECT feed, count(*) FROM frames GROUP BY ALL").fetchall())
    assert by_feed == dict(two.records)
    types = {r[0]: r[1] for r in con.execute("DESCRIBE frames").fetchall()}
    assert types["feed"] == "TINYINT"
    conns = con.execute("SELECT conn, feed FROM connections ORDER BY conn").fetchall()
    assert conns == [(1, 0), (2, 1), (3, 1)]
    events = con.execute("SELECT feed, count(*) FROM events GROUP BY ALL ORDER BY ALL").fetchall()
    assert events == [(f, two.by_channel[("_session", f)]) for f in (0, 1)]
    (checkpoint,) = con.execute(
        "SELECT conn, feed FROM frames WHERE channel = '_checkpoint'"
    ).fetchall()
    assert checkpoint == (two.checkpoint_conn, 1)  # a checkpoint's feed is its group's


def test_gaps_view_finds_a_planted_gap_and_its_resync(cap: StandardCapture) -> None:
    (gap,) = rows(connect(cap.root), f"SELECT * FROM gaps WHERE idx = {cap.gap_idx}")
    assert (
        gap["kind"],
        gap["channel"],
        gap["sid"],
        gap["prev_seq"],
        gap["seq"],
        gap["missing"],
    ) == (
        "gap",
        "orderbook_delta",
        1,
        4,
        7,
        2,
    )
    assert gap["resync_command"] == "update_subscription"
    assert gap["resync_command_idx"] == cap.resync_cmd_idx
    assert gap["resync_snapshot_idx"] == cap.resync_snapshot_idx
    assert gap["recovered"] is True
    assert gap["gap_time"] < gap["resync_command_time"] < gap["resync_snapshot_time"]
    assert gap["recovery_s"] == pytest.approx(0.002)


def test_gaps_view_reports_resets_and_unrecovered_gaps(cap: StandardCapture) -> None:
    # A trade gap has nothing to resync (no snapshots on that channel): `recovered` is NULL.
    got = rows(
        connect(cap.root), "SELECT idx, kind, channel, recovered FROM gaps ORDER BY run_id, idx"
    )
    assert got == [
        {"idx": cap.gap_idx, "kind": "gap", "channel": "orderbook_delta", "recovered": True},
        {"idx": cap.trade_gap_idx, "kind": "gap", "channel": "trade", "recovered": None},
        {"idx": cap.reset_idx, "kind": "reset", "channel": "orderbook_delta", "recovered": False},
    ]


def test_a_sid_reused_by_a_new_subscription_is_not_a_reset(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path)
    run.send(subscribe(1, ["trade"]))
    run.receive(subscribed(1, "trade", 1))
    run.receive(trade(1, 1, M1, "0.5000", "0.5000", "1.00"))
    run.receive(trade(1, 2, M1, "0.5000", "0.5000", "1.00"))
    run.receive({"id": 2, "type": "unsubscribed", "sid": 1, "seq": 3})
    run.send(subscribe(3, ["trade"]))
    run.receive(subscribed(3, "trade", 1))  # the server reuses sid 1; seq starts again
    run.receive(trade(1, 1, M1, "0.5000", "0.5000", "1.00"))
    run.receive(trade(1, 3, M1, "0.5000", "0.5000", "1.00"))  # but this one is a real gap
    run.write()
    got = rows(connect(tmp_path), "SELECT kind, prev_seq, seq FROM gaps")
    assert got == [{"kind": "gap", "prev_seq": 1, "seq": 3}]


def test_gaps_after_a_stray_lower_seq_count_from_the_highest_seq_seen(tmp_path: Path) -> None:
    # 1 2 3 4, a stray 2, then 5 6: one reset, nothing missing (the engine delivers all of
    # them and reports only the reset). Then 9: a gap of 7 and 8 counted from 6.
    run = RunBuilder(tmp_path)
    run.receive(subscribed(1, "trade", 1))
    for seq in (1, 2, 3, 4, 2, 5, 6, 9):
        run.receive(trade(1, seq, M1, "0.5000", "0.5000", "1.00"))
    run.write()
    got = rows(
        connect(tmp_path),
        "SELECT kind, prev_seq, expected_seq, seq, missing FROM gaps ORDER BY idx",
    )
    assert got == [
        {"kind": "reset", "prev_seq": 4, "expected_seq": 5, "seq": 2, "missing": 0},
        {"kind": "gap", "prev_seq": 6, "expected_seq": 7, "seq": 9, "missing": 2},
    ]
    summary = verify_capture(tmp_path).seq_summary
    assert (summary["reset"], summary["gap"], summary["missing"]) == (1, 1, 2)


def test_a_gap_right_after_a_stray_lower_seq_counts_from_the_highest(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path)
    run.receive(subscribed(1, "trade", 1))
    for seq in (5, 6, 2, 9):  # 9 after the stray 2: 7 and 8 are missing, not 3..8
        run.receive(trade(1, seq, M1, "0.5000", "0.5000", "1.00"))
    run.write()
    got = rows(connect(tmp_path), "SELECT kind, expected_seq, seq, missing FROM gaps ORDER BY idx")
    assert got == [
        {"kind": "reset", "expected_seq": 7, "seq": 2, "missing": 0},
        {"kind": "gap", "expected_seq": 7, "seq": 9, "missing": 2},
    ]


def test_a_resubscribe_after_a_book_gap_counts_as_recovery(tmp_path: Path) -> None:
    run = RunBuilder(tmp_path)
    run.receive(subscribed(1, "orderbook_delta", 1))
    run.receive(snapshot(1, 1, M1, [["0.5000", "1.00"]], None))
    gap = run.receive(delta(1, 4, M1, "0.5000", "1.00", "yes"))
    cmd = run.send(subscribe(2, ["orderbook_delta"]))
    run.write()
    (row,) = rows(
        connect(tmp_path), "SELECT idx, resync_command, resync_command_idx, recovered FROM gaps"
    )
    assert row == {
        "idx": gap.idx,
        "resync_command": "subscribe",
        "resync_command_idx": cmd.idx,
        "recovered": True,
    }


def book_gap_then_get_snapshot(tmp_path: Path) -> tuple[RunBuilder, CaptureRecord]:
    """A run whose order book subscription (sid 1) skips seq 2; get_snapshot goes out."""
    run = RunBuilder(tmp_path)
    run.receive(subscribed(1, "orderbook_delta", 1))
    run.receive(snapshot(1, 1, M1, [["0.5000", "1.00"]], None))
    gap = run.receive(delta(1, 3, M1, "0.5000", "1.00", "yes"))
    run.send(update_get_snapshot(2, 1, [M1]))
    return run, gap


def test_a_book_gap_whose_resync_the_server_overtook_is_recovered_by_the_resubscribe(
    tmp_path: Path,
) -> None:
    # get_snapshot went out, then the server ended the sid (error 25) and the recorder
    # subscribed again: the new subscription's snapshots rebuild the books.
    run, _ = book_gap_then_get_snapshot(tmp_path)
    run.receive({"type": "error", "sid": 1, "seq": 4, "msg": {"code": 25, "msg": "overflow"}})
    run.send(subscribe(3, ["orderbook_delta"], [M1]))
    run.receive({"id": 2, "type": "error", "sid": 1, "msg": {"code": 7, "msg": "unknown sid"}})
    run.receive(subscribed(3, "orderbook_delta", 2))
    run.receive(snapshot(2, 1, M1, [["0.5000", "1.00"]], None))
    run.write()
    (row,) = rows(connect(tmp_path), "SELECT kind, resync_command, recovered FROM gaps")
    assert row == {"kind": "gap", "resync_command": "update_subscription", "recovered": True}


def test_a_book_gap_whose_connection_closed_is_recovered_by_the_reconnects_subscribe(
    tmp_path: Path,
) -> None:
    # get_snapshot went out, then the connection dropped before the snapshot came: the
    # reconnect's subscribe (a new connection) rebuilt the books. Found by the fault soak.
    run, gap = book_gap_then_get_snapshot(tmp_path)
    run.event(Closed(code=1011, reason="", disconnect_reason="server_closed"), 1)
    run.event(Opened(url="ws://x", standby=False), 2)
    again = run.send(subscribe(3, ["orderbook_delta"], [M1]), conn=2)
    run.receive(subscribed(3, "orderbook_delta", 1), conn=2)
    run.receive(snapshot(1, 1, M1, [["0.5000", "1.00"]], None), conn=2)
    run.write()
    (row,) = rows(connect(tmp_path), "SELECT resync_command, recovered, recovery_s FROM gaps")
    assert row == {
        "resync_command": "update_subscription",
        "recovered": True,
        "recovery_s": pytest.approx((again.recv_ns - gap.recv_ns) / 1e9),
    }
    assert verify_capture(tmp_path).seq_summary["unrecovered"] == 0


def test_a_subscribe_on_another_open_connection_does_not_recover_a_book_gap(
    tmp_path: Path,
) -> None:
    # Two shards: a gap on connection 1 (still open, no resync answered) is not mended by
    # connection 2 subscribing the channel for its own markets.
    run, _ = book_gap_then_get_snapshot(tmp_path)
    run.send(subscribe(3, ["orderbook_delta"], [M2]), conn=2)
    run.receive(subscribed(3, "orderbook_delta", 1), conn=2)
    run.write()
    (row,) = rows(connect(tmp_path), "SELECT recovered, recovery_s FROM gaps")
    assert row == {"recovered": False, "recovery_s": None}


def test_a_trade_gap_is_neither_recovered_nor_unrecovered(tmp_path: Path) -> None:
    # Trades lost on the wire cannot be fetched again: a later subscribe recovers nothing.
    run = RunBuilder(tmp_path)
    run.receive(subscribed(1, "trade", 1))
    run.receive(trade(1, 1, M1, "0.5000", "0.5000", "1.00"))
    run.receive(trade(1, 4, M1, "0.5000", "0.5000", "1.00"))
    run.send(subscribe(2, ["trade"]))
    run.write()
    (row,) = rows(connect(tmp_path), "SELECT missing, recovered, recovery_s FROM gaps")
    assert row == {"missing": 2, "recovered": None, "recovery_s": None}
    report = verify_capture(tmp_path)
    assert report.seq_summary["unrecovered"] == 0
    assert report.seq_summary["unresyncable"] == 1
    assert not any("resync" in w for w in report.warnings())


def test_an_empty_root_has_every_view_and_no_rows(tmp_path: Path) -> None:
    con = connect(tmp_path)
    for view in VIEW_NAMES:
        assert one(con, f"SELECT count(*) FROM {view}") == (0,), view


def test_a_root_whose_path_holds_a_quote_still_works(tmp_path: Path) -> None:
    cap = build_standard_capture(tmp_path / "o'neil's capture")
    assert one(connect(cap.root), "SELECT count(*) FROM trades") == (6,)


def test_a_damaged_file_makes_connect_point_to_verify(cap: StandardCapture) -> None:
    (ticker_file,) = [p for p in cap.paths if "channel=ticker" in str(p)]
    truncate_file(ticker_file, 100)
    with pytest.raises(ConfigError, match="kalshi-tape verify"):
        connect(cap.root)


def test_a_missing_root_is_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        connect(tmp_path / "nope")


def test_listing_reports_files_outside_the_layout_as_stray(cap: StandardCapture) -> None:
    (cap.root / "notes.txt").write_text("hello")
    part = cap.paths[0].parent
    (part / ".tmp-publish.parquet").write_bytes(b"partial")
    listing = list_capture_files(cap.root)
    assert len(listing.files) == len(cap.paths)
    assert {s.path.name for s in listing.stray} == {"notes.txt", ".tmp-publish.parquet"}
    assert one(connect(cap.root), "SELECT count(*) FROM trades") == (6,)


def test_run_query_streams_arrow_batches(cap: StandardCapture) -> None:
    reader = run_query(connect(cap.root), "SELECT idx FROM frames ORDER BY run_id, idx")
    table = reader.read_all()
    assert table.num_rows == len(cap.run_a.records) + len(cap.run_b.records)
