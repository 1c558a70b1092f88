"""Sequence tracking, gaps, resyncs and resets (docs/protocol.md sections 9.1-9.4 and 8.16)."""

from __future__ import annotations

import json
from decimal import Decimal

from stream import Delivery, DeliveryQueue, GapDetected, Overflow, ResyncRequested

from .harness import Driver, wire

D = Decimal


def book_consumer(d: Driver, tickers: list[str], *, owns: bool = True) -> DeliveryQueue:
    queue = DeliveryQueue(10_000, Overflow.DROP_OLDEST)
    d.engine.add_consumer(
        "orderbook_delta",
        {"market_tickers": tickers},
        owns_wire=owns,
        delivery=Delivery.BOOK,
        queue=queue,
        tickers=frozenset(tickers),
    )
    d.flush()
    return queue


def frame_consumer(
    d: Driver, channel: str, params: dict | None = None, owns: bool = True
) -> DeliveryQueue:
    queue = DeliveryQueue(10_000, Overflow.DROP_OLDEST)
    d.engine.add_consumer(
        channel, params or {}, owns_wire=owns, delivery=Delivery.FRAME, queue=queue
    )
    d.flush()
    return queue


def drain(queue: DeliveryQueue) -> list:
    return queue.drain(len(queue))


def subscribed_book(markets: list[str]) -> tuple[Driver, DeliveryQueue, int]:
    """A driver with one orderbook subscription acked as sid 1, snapshots seq 1..n applied."""
    d = Driver()
    d.open(1)
    queue = book_consumer(d, markets)
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    for i, market in enumerate(markets):
        d.recv(wire.snapshot(1, i + 1, market))
    return d, queue, len(markets)


def test_in_order_deltas_apply_to_the_book() -> None:
    d, queue, seq = subscribed_book(["KX-A"])
    d.recv(wire.delta(1, seq + 1, "KX-A", "0.4000", "5.00"))
    d.recv(wire.delta(1, seq + 2, "KX-A", "0.4100", "2.00"))
    books = drain(queue)
    assert books[-1].yes == {D("0.40"): D("15.00"), D("0.41"): D("2.00")}
    assert books[-1].best_yes_bid == (D("0.41"), D("2.00"))
    assert d.engine.stats.gaps == 0


def test_duplicate_seq_is_dropped_and_never_applied_twice() -> None:
    d, queue, seq = subscribed_book(["KX-A"])
    d.recv(wire.delta(1, seq + 1, "KX-A", "0.4000", "5.00"))
    d.recv(wire.delta(1, seq + 1, "KX-A", "0.4000", "5.00"))
    assert d.engine.book("KX-A").yes[D("0.40")] == D("15.00")
    assert d.engine.stats.duplicates == 1
    assert not d.of(GapDetected)


def test_gap_drops_the_frame_clears_the_book_and_requests_a_snapshot() -> None:
    d, queue, seq = subscribed_book(["KX-A"])
    drain(queue)
    d.recv(wire.delta(1, seq + 2, "KX-A", "0.4000", "5.00"))  # seq + 1 lost
    (gap,) = d.of(GapDetected)
    assert (gap.kind, gap.expected, gap.got) == ("gap", seq + 1, seq + 2)
    (cleared,) = drain(queue)
    assert not cleared.valid and cleared.reason == "gap"
    ((_, cmd),) = d.take_sent()
    assert cmd["cmd"] == "update_subscription"
    assert cmd["params"] == {"sids": [1], "action": "get_snapshot", "market_tickers": ["KX-A"]}


def test_resync_brings_the_book_back() -> None:
    d, queue, seq = subscribed_book(["KX-A"])
    d.recv(wire.delta(1, seq + 2, "KX-A", "0.4000", "5.00"))
    ((_, cmd),) = d.take_sent()
    d.recv(wire.delta(1, seq + 3, "KX-A", "0.4000", "1.00"))  # no book yet: dropped silently
    d.recv(wire.snapshot(1, seq + 4, "KX-A", yes=[("0.3000", "7.00")], no=[], cmd_id=cmd["id"]))
    d.recv(wire.delta(1, seq + 5, "KX-A", "0.3000", "1.00"))
    book = d.engine.book("KX-A")
    assert book.valid and book.yes == {D("0.30"): D("8.00")} and book.no == {}
    assert d.reports("delta_before_snapshot") == []  # expected during a resync, not warned
    assert drain(queue)[-1] == book


def test_gap_on_a_multi_market_subscription_resyncs_every_market() -> None:
    d, queue, seq = subscribed_book(["KX-A", "KX-B", "KX-C"])
    d.recv(wire.delta(1, seq + 2, "KX-B", "0.4000", "5.00"))
    ((_, cmd),) = d.take_sent()
    assert cmd["params"]["market_tickers"] == ["KX-A", "KX-B", "KX-C"]
    for i, market in enumerate(["KX-A", "KX-B", "KX-C"]):
        d.recv(wire.snapshot(1, seq + 3 + i, market, cmd_id=cmd["id"]))
    assert all(d.engine.book(m).valid for m in ["KX-A", "KX-B", "KX-C"])
    assert d.engine.stats.resyncs == 1


def test_seq_below_the_last_is_a_reset_that_resyncs() -> None:
    d, queue, seq = subscribed_book(["KX-A"])
    d.recv(wire.delta(1, seq + 1, "KX-A", "0.4000", "5.00"))
    d.recv(wire.delta(1, 1, "KX-A", "0.4000", "5.00"))
    (gap,) = d.of(GapDetected)
    assert gap.kind == "reset" and gap.got == 1
    assert d.engine.book("KX-A") is None
    assert [c["params"]["action"] for _, c in d.take_sent()] == ["get_snapshot"]


def test_a_malformed_delta_does_not_advance_the_watermark() -> None:
    # snapshot seq 1, malformed delta seq 2, good delta seq 3: a gap at 3
    # (docs/protocol.md section 9.3)
    d, queue, seq = subscribed_book(["KX-A"])
    bad = (
        b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"KX-A",'
        b'"side":"yes","price_dollars":"0.4000"}}'
    )  # delta_fp missing
    d.recv(bad)
    assert d.reports("malformed")[0].message == "orderbook_delta.msg.delta_fp: field required"
    d.recv(wire.delta(1, 3, "KX-A", "0.4000", "5.00"))
    (gap,) = d.of(GapDetected)
    assert (gap.expected, gap.got) == (2, 3)


def test_invalid_json_on_a_sequenced_channel_shows_up_as_a_gap() -> None:
    d, queue, seq = subscribed_book(["KX-A"])
    d.recv(b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{')
    assert len(d.reports("malformed")) == 1
    d.recv(wire.delta(1, 3, "KX-A", "0.4000", "5.00"))
    assert len(d.of(GapDetected)) == 1


def test_one_resync_in_flight_covers_further_gaps() -> None:
    d, queue, seq = subscribed_book(["KX-A"])
    d.recv(wire.delta(1, seq + 2, "KX-A", "0.4000", "5.00"))
    d.recv(wire.delta(1, seq + 4, "KX-A", "0.4000", "5.00"))
    assert len(d.of(GapDetected)) == 2
    assert len(d.take_sent()) == 1


def test_gap_on_a_stateless_channel_is_reported_and_the_frame_still_delivered() -> None:
    d = Driver()
    d.open(1)
    queue = frame_consumer(d, "trade")
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "trade", 5))
    d.recv(wire.trade(5, 1, "KX-A", "t1"))
    d.recv(wire.trade(5, 3, "KX-A", "t3"))
    assert [f.seq for f in drain(queue)] == [1, 3]
    assert [(g.expected, g.got) for g in d.of(GapDetected)] == [(2, 3)]
    assert d.take_sent() == []  # nothing to resync on a channel without snapshots


def test_a_reset_on_a_stateless_channel_is_reported_and_its_frames_still_delivered() -> None:
    d = Driver()
    d.open(1)
    queue = frame_consumer(d, "trade")
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "trade", 5))
    for seq, trade_id in ((1, "a"), (2, "b"), (3, "c"), (1, "d"), (2, "e")):
        d.recv(wire.trade(5, seq, "KX-A", trade_id))
    delivered = drain(queue)
    assert [f.seq for f in delivered] == [1, 2, 3, 1, 2]  # the exchange sent them all
    assert [(g.kind, g.expected, g.got) for g in d.of(GapDetected)] == [("reset", 4, 1)]


def test_a_stray_lower_frame_is_a_reset_and_the_stream_resumes_without_a_false_gap() -> None:
    d = Driver()
    d.open(1)
    queue = frame_consumer(d, "trade")
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "trade", 5))
    for seq, trade_id in ((1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e"), (2, "x"), (6, "f")):
        d.recv(wire.trade(5, seq, "KX-A", trade_id))
    d.recv(wire.trade(5, 9, "KX-A", "g"))  # 7 and 8 are really missing
    assert [f.seq for f in drain(queue)] == [1, 2, 3, 4, 5, 2, 6, 9]
    assert [(g.kind, g.expected, g.got) for g in d.of(GapDetected)] == [
        ("reset", 6, 2),
        ("gap", 7, 9),
    ]


def test_an_exact_duplicate_on_a_stateless_channel_is_dropped_and_counted() -> None:
    d = Driver()
    d.open(1)
    queue = frame_consumer(d, "trade")
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "trade", 5))
    d.recv(wire.trade(5, 1, "KX-A", "a"))
    d.recv(wire.trade(5, 1, "KX-A", "a"))  # the same bytes again: a duplicate
    d.recv(wire.trade(5, 1, "KX-A", "z"))  # the same seq, another trade: a reset, kept
    d.recv(wire.trade(5, 2, "KX-A", "b"))
    assert [(f.seq, f.raw.count(b'"z"')) for f in drain(queue)] == [(1, 0), (1, 1), (2, 0)]
    assert d.engine.stats.duplicates == 1
    assert [g.kind for g in d.of(GapDetected)] == ["reset"]


def test_unsequenced_channels_are_not_seq_checked() -> None:
    d = Driver()
    d.open(1)
    queue = frame_consumer(d, "ticker")
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "ticker", 2))
    for _ in range(3):
        d.recv(wire.ticker(2, "KX-A"))
    assert len(drain(queue)) == 3 and not d.of(GapDetected)


def test_connection_close_resets_sequence_state_and_books() -> None:
    d, queue, seq = subscribed_book(["KX-A"])
    d.close(1)
    assert not drain(queue)[-1].valid
    d.open(2)
    ((conn, cmd),) = d.take_sent()
    assert conn == 2 and cmd["cmd"] == "subscribe"
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1), conn=2)  # same sid number, new conn
    d.recv(wire.snapshot(1, 1, "KX-A"), conn=2)  # seq starts again at 1: no reset
    assert not d.of(GapDetected)
    assert d.engine.book("KX-A").valid


def test_get_snapshot_error_falls_back_to_unsubscribe_and_subscribe() -> None:
    d, queue, seq = subscribed_book(["KX-A"])
    d.recv(wire.delta(1, seq + 2, "KX-A", "0.4000", "5.00"))
    ((_, resync),) = d.take_sent()
    d.recv(wire.error(13, "Unsupported action", cmd_id=resync["id"], sid=1))
    sent = [c for _, c in d.take_sent()]
    assert [c["cmd"] for c in sent] == ["unsubscribe", "subscribe"]
    assert sent[0]["params"] == {"sids": [1]}
    assert sent[1]["params"]["market_tickers"] == ["KX-A"]
    d.recv(wire.ack(sent[1]["id"], "orderbook_delta", 2))
    d.recv(wire.delta(1, seq + 3, "KX-A", "0.4000", "5.00"))  # old sid: retired, ignored
    d.recv(wire.snapshot(2, 1, "KX-A", yes=[("0.2000", "1.00")]))
    assert d.engine.book("KX-A").yes == {D("0.20"): D("1.00")}
    assert [r.method for r in d.of(ResyncRequested)] == ["get_snapshot", "resubscribe"]


def test_get_snapshot_without_reply_falls_back_after_the_timeout() -> None:
    d = Driver.with_config(resync_timeout_s=2.0)
    d.open(1)
    book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A"))
    d.recv(wire.delta(1, 3, "KX-A", "0.4000", "5.00"))
    d.take_sent()
    d.advance(1.0)
    assert d.take_sent() == []
    d.advance(1.5)
    assert [c["cmd"] for _, c in d.take_sent()] == ["unsubscribe", "subscribe"]
    assert len(d.reports("resync_timeout")) == 1


def test_control_replies_carrying_the_next_seq_consume_it() -> None:
    # docs/protocol.md section 11.2: if `ok` takes a seq number, the next data frame must
    # not look like a gap.
    d, queue, seq = subscribed_book(["KX-A"])
    d.engine.update_consumer(
        d.engine.consumers()[0].cid, "add_markets", {"market_tickers": ["KX-B"]}
    )
    d.flush()
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ok(cmd["id"], {"market_tickers": ["KX-A", "KX-B"]}, sid=1, seq=seq + 1))
    d.recv(wire.snapshot(1, seq + 2, "KX-B"))
    assert not d.of(GapDetected)
    assert d.engine.consumers()[0].params["market_tickers"] == ["KX-A", "KX-B"]


def test_a_resync_of_a_subscription_the_server_ended_meanwhile_is_not_retried() -> None:
    # Found by the fault soak: a gap sent get_snapshot; the server then ended the sid
    # (error 25) and the recorder subscribed again; the get_snapshot's own error 7
    # (unknown sid) must not fall back to unsubscribe + subscribe as well, or the
    # channel ends up subscribed twice and every frame is recorded twice.
    d = Driver()
    d.open(1)
    d.engine.add_consumer(
        "orderbook_delta",
        {"market_tickers": ["KX-A"]},
        owns_wire=True,
        delivery=Delivery.BOOK,
        queue=None,  # a recorder's own subscription
        tickers=frozenset({"KX-A"}),
    )
    d.flush()
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A"))
    d.recv(wire.delta(1, 3, "KX-A", "0.4000", "5.00"))  # gap
    ((_, resync),) = d.take_sent()
    assert resync["params"]["action"] == "get_snapshot"
    d.recv(wire.error(25, "Subscription buffer overflow", sid=1))
    ((_, again),) = d.take_sent()
    assert again["cmd"] == "subscribe"
    d.recv(wire.error(7, "Unknown subscription ID", cmd_id=resync["id"], sid=1))
    assert d.take_sent() == []
    d.recv(wire.ack(again["id"], "orderbook_delta", 2))
    d.recv(wire.snapshot(2, 1, "KX-A", yes=[("0.2000", "1.00")]))
    assert d.engine.book("KX-A").yes == {D("0.20"): D("1.00")}


def test_unmuting_with_snapshot_frames_gives_a_frame_of_each_valid_book_in_seq_order() -> None:
    """A seek's end (`unmute(snapshot_frames=True)`): a frame consumer gets a snapshot frame
    of each book its subscription holds, of its markets, in seq order; a book still
    waiting for its resync gets none; without the flag a frame consumer gets nothing."""
    d, books, seq = subscribed_book(["KX-A", "KX-B", "KX-C"])
    frames = frame_consumer(d, "orderbook_delta", owns=False)
    narrow = DeliveryQueue(100, Overflow.BLOCK)
    d.engine.add_consumer("orderbook_delta", owns_wire=False, delivery=Delivery.FRAME,
                          queue=narrow, tickers=frozenset({"KX-A"}))  # fmt: skip
    d.engine.mute()
    d.recv(wire.delta(1, seq + 2, "KX-B", "0.4000", "5.00"))  # seq + 1 lost: every book cleared
    ((_, cmd),) = d.take_sent()
    d.recv(wire.snapshot(1, seq + 3, "KX-C", yes=[("0.2000", "3.00")], no=[], cmd_id=cmd["id"]))
    d.recv(wire.snapshot(1, seq + 4, "KX-A", cmd_id=cmd["id"]))
    d.recv(wire.delta(1, seq + 5, "KX-C", "0.2000", "-1.00"))
    d.engine.unmute(snapshot_frames=True)
    got = drain(frames)
    assert [(f.type, f.market_ticker, f.seq) for f in got] == [
        ("orderbook_snapshot", "KX-A", seq + 4),
        ("orderbook_snapshot", "KX-C", seq + 5),
    ]
    msg = json.loads(got[1].raw)["msg"]
    assert msg["yes_dollars_fp"] == [["0.2000", "2.00"]] and "no_dollars_fp" not in msg
    assert [f.message().msg.market_id for f in got] == ["m-KX-A", "m-KX-C"]  # models too
    assert [f.market_ticker for f in drain(narrow)] == ["KX-A"]
    assert [b.market for b in drain(books)][-2:] == ["KX-A", "KX-C"]

    d.engine.mute()
    d.engine.unmute()
    assert drain(frames) == [] and [b.market for b in drain(books)] == ["KX-A", "KX-C"]


def test_unmuting_tells_book_consumers_of_each_book_still_awaiting_its_resync() -> None:
    """A book cleared during a seek's fast-forward and not back at its end reaches a book
    consumer at unmute as the invalid book a pass delivered at the clear, before the books
    held: per market, a consumer is left with what a pass from the start left it with."""

    def run(seek: bool) -> tuple[list, list]:
        d, books, seq = subscribed_book(["KX-A", "KX-B", "KX-C"])
        narrow = DeliveryQueue(100, Overflow.BLOCK)
        d.engine.add_consumer("orderbook_delta", owns_wire=False, delivery=Delivery.BOOK,
                              queue=narrow, tickers=frozenset({"KX-B"}))  # fmt: skip
        drain(books)
        if seek:
            d.engine.mute()
        d.recv(wire.delta(1, seq + 2, "KX-B", "0.4000", "5.00"))  # seq + 1 lost: all cleared
        ((_, cmd),) = d.take_sent()
        d.recv(wire.snapshot(1, seq + 3, "KX-C", yes=[("0.2000", "3.00")], no=[],
                             cmd_id=cmd["id"]))  # fmt: skip
        if seek:
            d.engine.unmute()
        return drain(books), drain(narrow)

    (seek_books, seek_narrow), (pass_books, pass_narrow) = run(True), run(False)
    assert [(b.market, b.valid, b.reason) for b in seek_books] == [
        ("KX-A", False, "gap"), ("KX-B", False, "gap"), ("KX-C", True, None),
    ]  # fmt: skip
    assert {b.market: b for b in seek_books} == {b.market: b for b in pass_books}
    assert seek_narrow == pass_narrow[-1:] and not seek_narrow[0].valid
    # A book back by the seek's end is no longer told invalid; nothing is told twice
    d, books, seq = subscribed_book(["KX-A"])
    d.engine.mute()
    d.recv(wire.delta(1, seq + 2, "KX-A", "0.4000", "5.00"))
    ((_, cmd),) = d.take_sent()
    d.recv(wire.snapshot(1, seq + 3, "KX-A", cmd_id=cmd["id"]))
    d.engine.unmute()
    assert [b.valid for b in drain(books)][-1:] == [True]
    d.engine.mute()
    d.engine.unmute()
    assert [b.valid for b in drain(books)] == [True]


def test_a_snapshot_with_json_numbers_keeps_its_market_id_for_the_frames_built_from_it() -> None:
    """The exact decode (numbers sent as JSON numbers) keeps the market's id as the usual
    one does: a snapshot frame built from the book carries it (models require the key)."""
    d, books, seq = subscribed_book(["KX-A"])
    frames = frame_consumer(d, "orderbook_delta", owns=False)
    d.recv(
        b'{"type":"orderbook_snapshot","sid":1,"seq":%d,"msg":{"market_ticker":"KX-A",'
        b'"market_id":"id-A","clock":7,"yes_dollars_fp":[[0.45,10]],"no_dollars_fp":[]}}'
        % (seq + 1)
    )
    assert d.engine.book("KX-A").yes == {D("0.45"): D("10.00")}
    drain(frames)
    d.engine.mute()
    d.engine.unmute(snapshot_frames=True)
    (frame,) = drain(frames)
    assert frame.message().msg.market_id == "id-A"
    assert json.loads(frame.raw)["msg"]["yes_dollars_fp"] == [["0.4500", "10.00"]]
