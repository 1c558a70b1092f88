"""Subscription lifecycle: acks, the ack window, orphans, teardown, server endings
(docs/protocol.md sections 9.4, 9.5, 9.8, 9.9, 9.11, 9.13, 9.18, 9.20)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from stream import (
    Checkpoint,
    Delivery,
    DeliveryQueue,
    Overflow,
    SubscribeResult,
    SubscribeTimeout,
    SubscriptionTerminated,
)

from .harness import Driver, wire
from .test_engine_sequence import book_consumer, drain, frame_consumer

D = Decimal


def test_frames_before_the_ack_are_stashed_and_delivered_after_it() -> None:
    d = Driver()
    d.open(1)
    queue = frame_consumer(d, "trade")
    ((_, cmd),) = d.take_sent()
    d.recv(wire.trade(7, 1, "KX-A", "t1"))  # data on the new sid races ahead of the ack
    d.recv(wire.trade(7, 2, "KX-A", "t2"))
    assert len(queue) == 0
    d.recv(wire.ack(cmd["id"], "trade", 7))
    d.recv(wire.trade(7, 3, "KX-A", "t3"))
    assert [f.seq for f in drain(queue)] == [1, 2, 3]
    assert d.engine.stats.stashed == 2


def test_nothing_in_the_resubscribe_window_is_lost_after_a_reconnect() -> None:
    d = Driver()
    d.open(1)
    queue = book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A"))
    d.close(1)
    d.open(2)
    ((_, cmd),) = d.take_sent()
    d.recv(wire.snapshot(9, 1, "KX-A", yes=[("0.1000", "1.00")]), conn=2)
    d.recv(wire.delta(9, 2, "KX-A", "0.1000", "4.00"), conn=2)
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 9), conn=2)
    books = drain(queue)
    assert books[-1].yes == {D("0.10"): D("5.00")}
    assert not d.reports("delta_before_snapshot")


def test_stash_is_bounded_evicts_oldest_and_warns_once() -> None:
    d = Driver.with_config(stash_maxlen=3)
    d.open(1)
    queue = frame_consumer(d, "trade")
    ((_, cmd),) = d.take_sent()
    for seq in range(1, 6):
        d.recv(wire.trade(7, seq, "KX-A", f"t{seq}"))
    d.recv(wire.ack(cmd["id"], "trade", 7))
    assert [f.seq for f in drain(queue)] == [3, 4, 5]
    assert len(d.reports("stash_overflow")) == 1
    assert d.engine.stats.stash_evicted == 2


def test_stale_sid_frames_after_teardown_do_not_touch_the_book() -> None:
    d = Driver()
    d.open(1)
    book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A"))
    consumer = d.engine.consumers()[0]
    d.engine.remove_consumer(consumer.cid)
    d.flush()
    ((_, unsub),) = d.take_sent()
    assert unsub["params"] == {"sids": [1]}
    book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 2))
    d.recv(wire.snapshot(2, 1, "KX-A", yes=[("0.3000", "1.00")]))
    d.recv(wire.delta(1, 2, "KX-A", "0.3000", "50.00"))  # late frame on the old sid
    assert d.engine.book("KX-A").yes == {D("0.30"): D("1.00")}
    assert d.engine.stats.stale_frames == 1


def test_orphan_ack_is_answered_with_unsubscribe() -> None:
    d = Driver()
    d.open(1)
    frame_consumer(d, "trade")
    ((_, cmd),) = d.take_sent()
    d.engine.remove_consumer(d.engine.consumers()[0].cid)  # cancelled before the ack
    d.flush()
    d.recv(wire.ack(cmd["id"], "trade", 4))
    ((_, unsub),) = d.take_sent()
    assert unsub["cmd"] == "unsubscribe" and unsub["params"] == {"sids": [4]}
    assert len(d.reports("orphan_ack")) == 1


def test_orphan_unsubscribed_does_not_tear_down_a_live_sub_that_reused_the_sid() -> None:
    d = Driver()
    d.open(1)
    frame_consumer(d, "trade")
    ((_, first),) = d.take_sent()
    d.engine.remove_consumer(d.engine.consumers()[0].cid)
    d.flush()
    d.recv(wire.ack(first["id"], "trade", 4))  # orphan
    ((_, unsub),) = d.take_sent()
    queue = frame_consumer(d, "trade")
    ((_, second),) = d.take_sent()
    d.recv(wire.ack(second["id"], "trade", 4))  # the server reuses sid 4
    d.recv(wire.unsubscribed(4, 1, cmd_id=unsub["id"]))  # the reply to our orphan cleanup
    d.recv(wire.trade(4, 1, "KX-A", "t1"))
    assert [f.seq for f in drain(queue)] == [1]
    assert not queue.closed


def test_server_initiated_unsubscribed_ends_the_iterator_and_drops_books() -> None:
    d = Driver()
    d.open(1)
    queue = book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A"))
    d.recv(wire.unsubscribed(1, 2))
    assert queue.closed
    assert not drain(queue)[-1].valid
    queue.raise_if_failed()  # ends cleanly, no error
    assert d.engine.book("KX-A") is None


@pytest.mark.parametrize("code", [10, 25])
def test_terminal_errors_end_the_subscription_with_an_exception(code: int) -> None:
    d = Driver()
    d.open(1)
    queue = frame_consumer(d, "trade")
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "trade", 3))
    d.recv(wire.trade(3, 1, "KX-A"))
    d.recv(wire.error(code, "Subscription buffer overflow", sid=3))
    assert queue.closed and len(drain(queue)) == 1  # buffered frames still delivered first
    with pytest.raises(SubscriptionTerminated, match="trade") as info:
        queue.raise_if_failed()
    assert info.value.code == code


def test_an_error_riding_a_typed_envelope_reaches_on_error() -> None:
    d = Driver()
    d.open(1)
    queue = frame_consumer(d, "trade")
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "trade", 3))
    d.recv(wire.error(11, "Invalid parameter", sid=3))
    (report,) = d.reports("server_error")
    assert (report.code, report.sid, report.channel) == (11, 3, "trade")
    assert not queue.closed


def test_a_subscribe_ack_that_never_arrives_times_out_naming_the_channel() -> None:
    d = Driver.with_config(ack_timeout_s=5.0)
    d.open(1)
    queue = frame_consumer(d, "fill")
    d.advance(4.9)
    assert not queue.closed
    d.advance(0.2)
    assert queue.closed
    with pytest.raises(SubscribeTimeout, match="'fill'"):
        queue.raise_if_failed()
    (result,) = d.of(SubscribeResult)
    assert isinstance(result.error, SubscribeTimeout)


def test_rejected_subscribe_fails_the_consumer_with_the_server_error() -> None:
    d = Driver()
    d.open(1)
    queue = frame_consumer(d, "orderbook_delta", {})
    ((_, cmd),) = d.take_sent()
    d.recv(wire.error(14, "Market Ticker required", cmd_id=cmd["id"]))
    assert queue.closed
    with pytest.raises(Exception, match="14"):
        queue.raise_if_failed()


def test_delta_before_snapshot_is_dropped_with_a_warning_and_a_snapshot_request() -> None:
    d = Driver()
    d.open(1)
    book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.delta(1, 1, "KX-A", "0.4000", "5.00"))
    d.recv(wire.delta(1, 2, "KX-A", "0.4000", "5.00"))
    assert d.engine.book("KX-A") is None
    assert len(d.reports("delta_before_snapshot")) == 1
    ((_, resync),) = d.take_sent()
    assert resync["params"]["action"] == "get_snapshot"


def test_one_sided_snapshot_with_the_empty_side_omitted_builds_a_book() -> None:
    d = Driver()
    d.open(1)
    book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A", yes=[("0.0500", "3.00")], no=None))
    book = d.engine.book("KX-A")
    assert book.valid and book.no == {} and book.best_yes_ask is None
    assert book.best_no_ask == (D("0.95"), D("3.00"))


def test_attached_consumers_filter_by_ticker_across_wire_subscriptions() -> None:
    d = Driver()
    d.open(1)
    frame_consumer(d, "trade", {"market_tickers": ["KX-A"]})
    frame_consumer(d, "trade", {"market_tickers": ["KX-B"]})
    acks = d.take_sent()
    for sid, (_, cmd) in enumerate(acks, start=1):
        d.recv(wire.ack(cmd["id"], "trade", sid))
    only_b = DeliveryQueue(100, Overflow.BLOCK)
    d.engine.add_consumer(
        "trade",
        {},
        owns_wire=False,
        delivery=Delivery.FRAME,
        queue=only_b,
        tickers=frozenset({"KX-B"}),
    )
    everything = frame_consumer(d, "trade", owns=False)
    d.recv(wire.trade(1, 1, "KX-A", "a1"))
    d.recv(wire.trade(2, 1, "KX-B", "b1"))
    assert [f.market_ticker for f in drain(only_b)] == ["KX-B"]
    assert [f.market_ticker for f in drain(everything)] == ["KX-A", "KX-B"]


def test_a_connection_checkpoint_restored_elsewhere_continues_the_stream_exactly() -> None:
    d = Driver.with_config(checkpoint_interval_s=10.0)
    d.open(1)
    book_consumer(d, ["KX-A", "KX-B"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A"))
    d.recv(wire.snapshot(1, 2, "KX-B", yes=[("0.0100", "1.00")], no=None))
    d.recv(wire.delta(1, 3, "KX-A", "0.4000", "1.00"))
    d.advance(5)
    assert not d.of(Checkpoint)  # not before the interval
    d.advance(6)
    (checkpoint,) = d.of(Checkpoint)
    assert checkpoint.conn == 1 and checkpoint.record["subs"][0]["last_seq"] == 3

    replica = Driver()
    queue = DeliveryQueue(100, Overflow.BLOCK)
    replica.engine.add_consumer(
        "orderbook_delta",
        owns_wire=False,
        delivery=Delivery.BOOK,
        queue=queue,
        tickers=frozenset({"KX-A"}),
    )
    replica.engine.restore_checkpoint(checkpoint.record, 0, 0, conn=1)
    for engine in (d, replica):
        engine.recv(wire.delta(1, 4, "KX-A", "0.4100", "2.00"))
    assert replica.engine.book("KX-A") == d.engine.book("KX-A")
    assert replica.engine.book("KX-B") == d.engine.book("KX-B")
    assert replica.engine.stats.gaps == 0
    assert queue.drain(10)[-1].yes == {D("0.40"): D("11.00"), D("0.41"): D("2.00")}


def test_no_checkpoint_is_taken_while_a_resync_is_in_flight() -> None:
    d = Driver.with_config(checkpoint_interval_s=1.0)
    d.open(1)
    book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A"))
    d.recv(wire.delta(1, 3, "KX-A", "0.4000", "1.00"))  # gap: get_snapshot in flight
    d.advance(2)
    assert not d.of(Checkpoint)
    ((_, resync),) = d.take_sent()
    d.recv(wire.snapshot(1, 4, "KX-A", cmd_id=resync["id"]))
    d.advance(2)
    assert len(d.of(Checkpoint)) == 1


@pytest.mark.parametrize("ending", ["unsubscribed", "error25"])
def test_a_recorders_subscription_ended_by_the_server_is_subscribed_again(ending: str) -> None:
    # A recorder keeps its subscriptions without a queue: one the server ends must be
    # re-issued, or its channel would stop being recorded until the next reconnect.
    # Consumers attached to the channel go on (in replay too, where the re-subscribe is
    # only the next record).
    d = Driver()
    d.open(1)
    d.engine.add_consumer("trade", {}, owns_wire=True, queue=None)
    d.flush()
    attached = frame_consumer(d, "trade", owns=False)
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "trade", 3))
    d.recv(wire.trade(3, 1, "KX-A", "t1"))
    if ending == "unsubscribed":
        d.recv(wire.unsubscribed(3, 2))
    else:
        d.recv(wire.error(25, "Subscription buffer overflow", sid=3))
    ((_, again),) = d.take_sent()
    assert again["cmd"] == "subscribe" and again["params"]["channels"] == ["trade"]
    d.recv(wire.ack(again["id"], "trade", 4))
    d.recv(wire.trade(4, 1, "KX-A", "t2"))
    assert [f.sid for f in drain(attached)] == [3, 4]
    assert not attached.closed
