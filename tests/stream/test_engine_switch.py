"""Make-before-break: a standby connection takes over with no frame lost and none doubled."""

from __future__ import annotations

from decimal import Decimal

from stream import ConnectionState, GapDetected, StateChanged, Switched

from .harness import Driver, wire
from .test_engine_sequence import book_consumer, drain, frame_consumer

D = Decimal


def rotated() -> tuple[Driver, object, object, list[dict]]:
    """conn 1 streaming trades and a book; conn 2 opened as standby and subscribed."""
    d = Driver()
    d.open(1)
    trades = frame_consumer(d, "trade", {"market_tickers": ["KX-A"]})
    books = book_consumer(d, ["KX-A"])
    for sid, (_, cmd) in enumerate(d.take_sent(), start=1):
        d.recv(wire.ack(cmd["id"], cmd["params"]["channels"][0], sid))
    d.recv(wire.snapshot(2, 1, "KX-A"))
    d.recv(wire.trade(1, 1, "KX-A", "t1"))
    d.open(2, standby=True)
    new_cmds = [cmd for conn, cmd in d.take_sent() if conn == 2]
    return d, trades, books, new_cmds


def test_standby_is_subscribed_like_the_active_connection() -> None:
    d, trades, books, cmds = rotated()
    assert [c["params"]["channels"] for c in cmds] == [["trade"], ["orderbook_delta"]]
    assert d.engine.state is ConnectionState.STREAMING


def test_switch_happens_once_the_standby_has_its_snapshots_and_loses_nothing() -> None:
    d, trades, books, cmds = rotated()
    trade_cmd, book_cmd = cmds
    # Both connections carry the same market events from now on.
    d.recv(wire.trade(1, 2, "KX-A", "t2"), conn=1)
    d.recv(wire.ack(trade_cmd["id"], "trade", 11), conn=2)
    d.recv(wire.trade(11, 1, "KX-A", "t2"), conn=2)  # already delivered from conn 1
    d.recv(wire.trade(11, 2, "KX-A", "t3"), conn=2)  # new conn is ahead of the old one
    d.recv(wire.ack(book_cmd["id"], "orderbook_delta", 12), conn=2)
    assert not d.of(Switched)
    d.recv(wire.snapshot(12, 1, "KX-A", yes=[("0.4000", "12.00")]), conn=2)
    (switch,) = d.of(Switched)
    assert (switch.old_conn, switch.new_conn) == (1, 2)
    d.recv(wire.trade(1, 3, "KX-A", "t3"), conn=1)  # late on the old conn: a duplicate
    d.recv(wire.trade(1, 4, "KX-A", "t4"), conn=1)  # only the old conn had it so far
    d.recv(wire.trade(11, 3, "KX-A", "t4"), conn=2)
    d.recv(wire.trade(11, 4, "KX-A", "t5"), conn=2)
    d.close(1, code=1000)
    delivered = [f.raw.split(b'"trade_id":"')[1].split(b'"')[0].decode() for f in drain(trades)]
    assert delivered == ["t1", "t2", "t3", "t4", "t5"]
    assert d.engine.book("KX-A").yes == {D("0.40"): D("12.00")}
    assert books.drain(100)[-1].valid  # the old connection's close invalidated nothing
    assert not d.of(GapDetected)
    assert not [
        s
        for s in d.of(StateChanged)
        if s.new is not ConnectionState.STREAMING and s.old is ConnectionState.STREAMING
    ]


def test_if_the_active_connection_dies_during_the_overlap_the_standby_takes_over() -> None:
    d, trades, books, cmds = rotated()
    d.recv(wire.ack(cmds[0]["id"], "trade", 11), conn=2)
    d.recv(wire.trade(11, 1, "KX-A", "t2"), conn=2)
    d.close(1, code=1006)
    d.recv(wire.trade(11, 2, "KX-A", "t3"), conn=2)
    assert [f.seq for f in drain(trades)] == [1, 1, 2]
    assert d.engine.state is ConnectionState.STREAMING


def test_a_standby_that_never_gets_ready_is_closed_after_the_timeout() -> None:
    d, trades, books, cmds = rotated()
    d.advance(31)
    from stream import CloseConnection

    (close,) = d.of(CloseConnection)
    assert close.conn == 2
    d.close(2)
    d.recv(wire.trade(1, 2, "KX-A", "t2"), conn=1)
    assert [f.seq for f in drain(trades)] == [1, 2]


def test_an_all_markets_book_subscription_switches_once_its_snapshots_are_in() -> None:
    # No market list on the wire: readiness is "a book for every market the active
    # connection has one for".
    d = Driver()
    d.open(1)
    d.engine.add_consumer("orderbook_delta", {}, owns_wire=True, queue=None)  # all markets
    d.flush()
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A"))
    d.recv(wire.snapshot(1, 2, "KX-B"))
    d.open(2, standby=True)
    ((_, cmd2),) = [(c, m) for c, m in d.take_sent() if c == 2]
    d.recv(wire.ack(cmd2["id"], "orderbook_delta", 7), conn=2)
    d.recv(wire.snapshot(7, 1, "KX-A"), conn=2)
    assert not d.of(Switched)
    d.recv(wire.snapshot(7, 2, "KX-B"), conn=2)
    assert len(d.of(Switched)) == 1


def test_a_seek_into_the_overlap_drops_what_the_old_connection_delivered_before_it() -> None:
    """A seek's start falls inside a make-before-break overlap: the old connection
    delivered t2 before the start (fast-forwarded, muted), the standby brings it after.
    As in one pass, the standby's copy is not delivered at the switch: delivery noted
    what the old connection delivered while muted."""

    def run(seek: bool) -> list[str]:
        d, trades, books, cmds = rotated()
        trade_cmd, book_cmd = cmds
        if seek:
            d.engine.mute()
        d.recv(wire.trade(1, 2, "KX-A", "t2"), conn=1)
        if seek:
            d.engine.unmute()
        drain(trades)  # the start: what one pass delivered before it
        d.recv(wire.ack(trade_cmd["id"], "trade", 11), conn=2)
        d.recv(wire.trade(11, 1, "KX-A", "t2"), conn=2)
        d.recv(wire.trade(11, 2, "KX-A", "t3"), conn=2)
        d.recv(wire.ack(book_cmd["id"], "orderbook_delta", 12), conn=2)
        d.recv(wire.snapshot(12, 1, "KX-A"), conn=2)
        assert d.of(Switched)
        return [f.raw.split(b'"trade_id":"')[1].split(b'"')[0].decode() for f in drain(trades)]

    assert run(seek=False) == ["t3"]
    assert run(seek=True) == ["t3"]
