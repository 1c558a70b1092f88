"""Redundant feeds: two groups with the same subscriptions, arbitrated into one stream."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from stream import Delivery, DeliveryQueue, Engine, EngineConfig, Overflow
from stream.book import BookSnapshot
from stream.decode import decode_frame
from stream.events import Arbitrated, Frame, SendCommand

from .harness import wire

M = "KX-A"
T0 = 1_795_244_476_000_000_000


class Feeds:
    """Two feeds as a replay drives them: group 10 is feed 0 (conn 1), group 11 feed 1
    (conn 2), each subscribed to trade (sid 1), orderbook_delta (sid 2) and ticker (sid 3)."""

    def __init__(self, engine: Engine | None = None, *, open_both: bool = True) -> None:
        self.engine = engine or Engine()
        self.t = T0
        self.trades = self.queue("trade", Delivery.FRAME)
        self.tickers = self.queue("ticker", Delivery.FRAME)
        self.books = self.queue("orderbook_delta", Delivery.BOOK)
        self.raw_books = self.queue("orderbook_delta", Delivery.FRAME)
        self.outputs: list[object] = []
        if open_both:
            self.open(0)
            self.open(1)

    def queue(self, channel: str, delivery: Delivery) -> DeliveryQueue:
        q = DeliveryQueue(1000, Overflow.BLOCK)
        self.engine.add_consumer(channel, owns_wire=False, delivery=delivery, queue=q)
        return q

    def tick(self) -> tuple[int, int]:
        self.t += 1000
        return self.t, self.t

    def open(self, feed: int, conn: int | None = None) -> int:
        conn = conn if conn is not None else feed + 1
        e = self.engine
        e.connection_attempt(*self.tick(), group=10 + feed, feed=feed)
        e.connection_opened(conn, *self.tick(), group=10 + feed, feed=feed)
        for cmd_id, channel, sid in ((1, "trade", 1), (2, "orderbook_delta", 2), (3, "ticker", 3)):
            cmd = {"id": cmd_id, "cmd": "subscribe", "params": {"channels": [channel]}}
            e.command_sent(json.dumps(cmd).encode(), *self.tick(), conn)
            e.frame_received(wire.ack(cmd_id, channel, sid), *self.tick(), conn)
        self.flush()
        return conn

    def standby(self, feed: int, conn: int) -> None:
        """Open `conn` as feed `feed`'s make-before-break standby, subscribed like `open`."""
        e = self.engine
        e.connection_opened(conn, *self.tick(), standby=True, group=10 + feed, feed=feed)
        for cmd_id, channel, sid in ((1, "trade", 1), (2, "orderbook_delta", 2), (3, "ticker", 3)):
            cmd = {"id": cmd_id, "cmd": "subscribe", "params": {"channels": [channel]}}
            e.command_sent(json.dumps(cmd).encode(), *self.tick(), conn)
            e.frame_received(wire.ack(cmd_id, channel, sid), *self.tick(), conn)
        self.flush()

    def recv(self, raw: bytes, conn: int) -> None:
        self.engine.frame_received(raw, *self.tick(), conn)
        self.flush()

    def close(self, conn: int) -> None:
        self.engine.connection_closed(conn, *self.tick(), code=None, will_reconnect=True)
        self.flush()

    def flush(self) -> None:
        while self.engine.outbox:
            out = self.engine.outbox.popleft()
            self.outputs.append(out)
            if isinstance(out, SendCommand):  # a live edge sends it and reports it sent
                self.engine.command_sent(out.raw, *self.tick(), out.conn)

    def switches(self) -> list[tuple[str, int | None, int | None, str]]:
        found = [o for o in self.outputs if isinstance(o, Arbitrated)]
        return [(a.market, a.from_feed, a.to_feed, a.reason) for a in found]


def levels(book: BookSnapshot) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return dict(book.yes), dict(book.no)


def test_a_trade_both_feeds_bring_is_delivered_once() -> None:
    f = Feeds()
    f.recv(wire.trade(1, 1, M, "t1"), 1)
    f.recv(wire.trade(1, 1, M, "t1"), 2)  # the same trade, on feed 1 later
    f.recv(wire.trade(1, 2, M, "t2", "0.4600"), 2)  # feed 1 first this time
    f.recv(wire.trade(1, 2, M, "t2", "0.4600"), 1)
    f.recv(wire.trade(1, 3, M, "t3"), 2)  # only feed 1 got this one (feed 0 lost it)
    got = [json.loads(fr.raw)["msg"]["trade_id"] for fr in f.trades.drain(10)]
    assert got == ["t1", "t2", "t3"]


def test_a_message_one_feed_repeats_is_delivered_as_often_as_it_came() -> None:
    f = Feeds()
    for _ in range(2):  # two ticker updates with equal content on feed 0
        f.recv(wire.ticker(3, M), 1)
    f.recv(wire.ticker(3, M), 2)
    f.recv(wire.ticker(3, M), 2)
    f.recv(wire.ticker(3, M), 2)  # a third copy only feed 1 has: a third message
    assert [fr.conn for fr in f.tickers.drain(10)] == [1, 1, 2]


def test_the_book_comes_from_one_feed_and_moves_when_it_breaks() -> None:
    f = Feeds()
    f.recv(wire.snapshot(2, 1, M, yes=[("0.4000", "10.00")], no=[("0.5500", "20.00")]), 1)
    f.recv(wire.snapshot(2, 1, M, yes=[("0.4000", "10.00")], no=[("0.5500", "20.00")]), 2)
    f.recv(wire.delta(2, 2, M, "0.4100", "5.00"), 1)
    f.recv(wire.delta(2, 2, M, "0.4100", "5.00"), 2)
    books = f.books.drain(10)
    assert [b.conn for b in books] == [1, 1]  # feed 1's copies are not delivered
    assert f.engine.arbiter.owners[M] == 10
    # Feed 0 skips seq 3: its book breaks, and the market moves to feed 1 at once.
    f.recv(wire.delta(2, 3, M, "0.4200", "1.00"), 2)
    f.recv(wire.delta(2, 4, M, "0.4300", "1.00"), 1)
    assert f.switches() == [(M, 0, 1, "gap")]
    books = f.books.drain(10)
    assert all(b.valid for b in books) and books
    assert books[-1].conn == 2
    assert levels(books[-1])[0] == {
        Decimal("0.4000"): Decimal("10.00"),
        Decimal("0.4100"): Decimal("5.00"),
        Decimal("0.4200"): Decimal("1.00"),
    }
    # Feed 0 resyncs meanwhile; it does not take the market back.
    f.recv(wire.snapshot(2, 5, M, yes=[("0.4000", "10.00")], no=None), 1)
    f.recv(wire.delta(2, 4, M, "0.4400", "1.00"), 2)
    assert [b.conn for b in f.books.drain(10)] == [2]
    assert f.engine.book(M).conn == 2  # type: ignore[union-attr]


def test_the_book_is_invalid_only_while_every_feed_is_broken() -> None:
    f = Feeds()
    f.recv(wire.snapshot(2, 1, M), 1)
    f.recv(wire.snapshot(2, 1, M), 2)
    f.close(2)  # feed 1 lost: it did not own the market, nobody hears of it
    assert all(b.valid for b in f.books.drain(10))
    f.recv(wire.delta(2, 3, M, "0.4100", "5.00"), 1)  # feed 0 gaps too: now both are broken
    assert f.switches() == [(M, 0, None, "gap")]
    assert [b.valid for b in f.books.drain(10)] == [False]
    f.open(1, conn=3)  # feed 1 back, its snapshot first: it owns the market again
    f.recv(wire.snapshot(2, 1, M, yes=[("0.3000", "1.00")]), 3)
    assert f.switches()[-1] == (M, None, 1, "resynced")
    books = f.books.drain(10)
    assert books[-1].valid and books[-1].conn == 3


def test_a_raw_frame_consumer_gets_a_snapshot_frame_of_the_new_feed_book() -> None:
    f = Feeds()
    f.recv(wire.snapshot(2, 1, M, yes=[("0.4000", "10.00")], no=[("0.5500", "20.00")]), 1)
    f.recv(wire.snapshot(2, 1, M, yes=[("0.4000", "10.00")], no=[("0.5500", "20.00")]), 2)
    f.recv(wire.delta(2, 2, M, "0.4000", "-4.00"), 2)
    f.raw_books.drain(10)
    f.close(1)  # feed 0's connection lost: the market moves to feed 1
    assert f.switches() == [(M, 0, 1, "disconnect")]
    (frame,) = f.raw_books.drain(10)
    assert isinstance(frame, Frame) and frame.type == "orderbook_snapshot" and frame.conn == 2
    decoded = decode_frame(frame.raw)
    assert decoded.msg.yes_dollars_fp == [("0.4000", "6.00")]
    assert decoded.msg.no_dollars_fp == [("0.5500", "20.00")]
    assert (decoded.sid, decoded.seq) == (2, 2)
    model = frame.message()  # what a model or struct consumer gets: valid, with the id
    assert model.msg.market_id == "m-" + M and model.msg.market_ticker == M


def test_one_feed_alone_is_not_arbitrated() -> None:
    engine = Engine()
    f = Feeds(engine, open_both=False)
    f.engine.connection_attempt(*f.tick(), group=10, feed=0)
    assert not engine._core.arbitrating
    f.open(0)
    f.recv(wire.trade(1, 1, M, "t1"), 1)
    f.recv(wire.trade(1, 2, M, "t1"), 1)  # one feed: a repeat is delivered as it came
    assert len(f.trades.drain(10)) == 2


def test_a_live_session_with_two_feeds_subscribes_on_both() -> None:
    engine = Engine(EngineConfig(feeds=2))
    queue = DeliveryQueue(100, Overflow.BLOCK)
    engine.add_consumer("trade", {}, owns_wire=True, queue=queue)
    engine.connection_attempt(1, 1, group=0)
    engine.connection_opened(1, 2, 2, group=0)
    engine.connection_attempt(3, 3, group=1)
    engine.connection_opened(2, 4, 4, group=1)
    sent = [(o.conn, json.loads(o.raw)["cmd"]) for o in engine.outbox if isinstance(o, SendCommand)]
    assert sent == [(1, "subscribe"), (2, "subscribe")]


def test_a_checkpoint_names_what_its_feed_delivers_and_a_restore_delivers_it_so() -> None:
    """Feed 1 delivers the book after feed 0's gap; both feeds' checkpoints, restored into a
    fresh engine (oldest first, as a seek does), deliver it from feed 1 again; a record
    that names nothing leaves it to the first feed restored with a valid book."""
    from stream.events import Checkpoint

    f = Feeds(Engine(EngineConfig(checkpoint_interval_s=1)))
    for conn in (1, 2):
        f.recv(wire.snapshot(2, 1, M, yes=[("0.4000", "10.00")], no=[("0.5500", "20.00")]), conn)
    f.recv(wire.delta(2, 3, M, "0.4200", "1.00"), 1)  # feed 0 skips seq 2: M moves to feed 1
    f.recv(wire.delta(2, 2, M, "0.4100", "5.00"), 2)
    f.recv(wire.snapshot(2, 4, M, yes=[("0.4000", "10.00")], no=None), 1)  # feed 0 valid again
    assert f.switches() == [(M, 0, 1, "gap")] and f.engine.arbiter.owners[M] == 11
    f.engine.tick(f.t + 2 * 10**9, f.t + 2 * 10**9)
    f.flush()
    records = {o.group: o.record for o in f.outputs if isinstance(o, Checkpoint)}
    assert records[10]["delivers"] == [] and records[11]["delivers"] == [M]

    def restored(record_0: dict[str, object], record_1: dict[str, object]) -> int:
        engine = Engine()
        for feed in (0, 1):
            engine.connection_attempt(T0, T0, group=10 + feed, feed=feed)
        for feed, conn, record in ((0, 1, record_0), (1, 2, record_1)):
            engine.restore_checkpoint(record, T0, T0, conn=conn, group=10 + feed, feed=feed)
        return engine.arbiter.owners[M]

    assert restored(records[10], records[11]) == 11
    unnamed = [{k: v for k, v in r.items() if k != "delivers"} for r in (records[10], records[11])]
    assert restored(*unnamed) == 10


def trade_ids(queue: DeliveryQueue) -> list[str]:
    return [json.loads(fr.raw)["msg"]["trade_id"] for fr in queue.drain(100)]


def test_a_seek_counts_the_copies_it_fast_forwards_over() -> None:
    """A seek mutes the engine up to its start: a trade feed 0 brought just before the
    start is counted then, so feed 1's copy just after it is not delivered (one pass
    delivered feed 0's, before the start); only what came after is."""
    f = Feeds()
    f.engine.mute()
    f.recv(wire.trade(1, 1, M, "t1"), 1)
    f.recv(wire.trade(1, 2, M, "t2"), 2)  # feed 1 first this time
    f.engine.unmute()
    f.recv(wire.trade(1, 1, M, "t1"), 2)
    f.recv(wire.trade(1, 2, M, "t2"), 1)
    f.recv(wire.trade(1, 3, M, "t3"), 1)
    f.recv(wire.trade(1, 3, M, "t3"), 2)
    assert trade_ids(f.trades) == ["t3"]


@pytest.mark.parametrize("switch_before_start", [False, True])
def test_a_seek_delivers_what_one_pass_does_across_a_standby_switch(
    switch_before_start: bool,
) -> None:
    """Feed 0's make-before-break standby (waiting for its snapshot) brings a trade before
    the start; it takes over before or after the start; feed 1's copy comes after the
    start. From the start on, a seek delivers what one pass does: the standby's copy at
    a switch after the start (held through the fast-forward), nothing more of it after a
    switch before the start (counted then)."""

    def run(seek: bool) -> list[tuple[str, int]]:
        f = Feeds()
        for conn in (1, 2):
            f.recv(wire.snapshot(2, 1, M), conn)
        f.standby(0, 3)
        if seek:
            f.engine.mute()
        f.recv(wire.trade(1, 1, M, "t1"), 3)  # held by the standby
        if switch_before_start:
            f.close(1)  # feed 0's active connection goes: the standby takes over
        if seek:
            f.engine.unmute()
        f.trades.drain(100)  # the start: what one pass delivered before it
        if not switch_before_start:
            f.close(1)
        f.recv(wire.trade(1, 1, M, "t1"), 2)
        f.recv(wire.trade(1, 2, M, "t2"), 2)
        return [(json.loads(fr.raw)["msg"]["trade_id"], fr.conn) for fr in f.trades.drain(100)]

    one_pass = run(seek=False)
    assert one_pass == ([("t2", 2)] if switch_before_start else [("t1", 3), ("t2", 2)])
    assert run(seek=True) == one_pass


def test_a_standby_switch_counts_each_held_copy_once_for_every_consumer() -> None:
    """Two trade consumers; feed 1 brings a trade, then feed 0's standby brings it too and
    takes over: neither consumer gets it twice (each held frame counted once, not once
    per consumer that held it)."""
    f = Feeds()
    second = f.queue("trade", Delivery.FRAME)
    for conn in (1, 2):
        f.recv(wire.snapshot(2, 1, M), conn)
    f.standby(0, 3)  # waits for its snapshot
    f.recv(wire.trade(1, 1, M, "t1"), 2)
    f.recv(wire.trade(1, 1, M, "t1"), 3)  # held by both consumers
    f.recv(wire.trade(1, 2, M, "t2"), 3)  # a trade only the standby has so far
    f.close(1)
    f.recv(wire.trade(1, 2, M, "t2"), 2)
    assert trade_ids(f.trades) == ["t1", "t2"]
    assert trade_ids(second) == ["t1", "t2"]


def test_a_standby_closing_keeps_what_another_feeds_standby_holds() -> None:
    """Both feeds rotate at once; feed 1's standby is closed before it is ready: what
    feed 0's standby holds is still delivered at its switch, and only that."""
    f = Feeds()
    for conn in (1, 2):
        f.recv(wire.snapshot(2, 1, M), conn)
    f.standby(0, 3)  # each waits for its snapshot
    f.standby(1, 4)
    f.recv(wire.trade(1, 1, M, "t1"), 3)  # only feed 0's standby has it so far
    f.recv(wire.trade(1, 2, M, "t2"), 4)  # only feed 1's standby has it so far
    f.close(4)  # feed 1's standby gone, its held frames with it
    f.close(1)  # feed 0's standby takes over, delivering what it held
    assert trade_ids(f.trades) == ["t1"]
