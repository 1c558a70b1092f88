"""Make-before-break: a group's standby connection replaces its active one without a gap.

A planned reconnect opens a *standby* connection and subscribes it while the
active one goes on delivering; the standby's frames are held. Once it carries
every subscription of the active connection, each with its books in (`ready`),
`maybe_switch` makes it the active one: held frames are flushed (those the old
connection already delivered are skipped, by payload), book consumers get the
new books, and a `Switched` output asks the edge to close the old connection,
which retires meanwhile. If the active connection is lost first, the standby
takes over at once (`switch`).
"""

from __future__ import annotations

from schemas.channels import BOOK_CHANNELS
from stream.connections import Connection, Group
from stream.core import EngineCore
from stream.events import Switched
from stream.fanout import Fanout
from stream.state import ConnectionState
from stream.subscriptions import Delivery, WireSubscription

__all__ = ["Switching"]


class Switching:
    """Make-before-break for one engine (see the module docstring)."""

    __slots__ = ("_core", "_fanout")

    def __init__(self, core: EngineCore, fanout: Fanout) -> None:
        self._core = core
        self._fanout = fanout

    def maybe_switch(self, standby: Connection, recv_ns: int, mono_ns: int) -> None:
        """Switch once the standby carries every subscription of the active connection and
        each of its books has its snapshot."""
        g = standby.group
        active = g.active
        if active is None or g.standby is not standby or standby.pending:
            return
        on_standby = {w.key(): w for w in standby.sids.values()}
        for wire in active.sids.values():
            twin = on_standby.get(wire.key())
            if twin is None or not self.ready(twin, wire):
                return
        g.retiring.add(active.conn)
        self.switch(g, recv_ns, mono_ns)
        self._core.outbox.append(Switched(active.conn, standby.conn, recv_ns, mono_ns))

    @staticmethod
    def ready(twin: WireSubscription, active: WireSubscription) -> bool:
        """A standby subscription is ready when its books are all in: every listed market,
        or (an all-markets subscription) every market the active one has a book for."""
        if not twin.is_book:
            return True
        if twin.awaiting_snapshot:
            return False
        wanted = twin.markets if twin.markets is not None else active.books.keys()
        return all(m in twin.books for m in wanted)

    def switch(self, g: Group, recv_ns: int, mono_ns: int) -> None:
        """Deliver from the group's standby from now on, flushing what it held."""
        core, fanout = self._core, self._fanout
        standby = g.standby
        assert standby is not None
        core.stats.switches += 1
        g.standby = None
        g.active = standby
        core.roles_changed()
        # Across feeds, a market another feed owns stays with it, and a message another
        # feed already brought is not delivered again (stream.arbitration).
        arbiter = fanout.arbiter if core.arbitrating else None
        if arbiter is not None:  # markets no feed had a valid book of are this one's now
            for wire in standby.sids.values():
                for market in wire.books if wire.is_book else ():
                    arbiter.snapshot_applied(standby, wire, market, recv_ns, mono_ns)
        # Every consumer that held a frame holds the same object: its copy is counted once.
        first: dict[int, bool] = {}
        for consumer in list(core.consumers.values()):
            held = [f for f in consumer.held if f.conn == standby.conn]
            consumer.held = [f for f in consumer.held if f.conn != standby.conn]  # other feeds'
            if consumer.channel not in BOOK_CHANNELS:
                for frame in held:
                    if arbiter is not None:
                        verdict = first.get(id(frame))
                        if verdict is None:
                            verdict = first[id(frame)] = arbiter.first_copy(frame)
                        if verdict:
                            fanout.put(consumer, frame)
                    elif not fanout.seen_before(consumer, frame):
                        fanout.put(consumer, frame)
            elif consumer.delivery is not Delivery.BOOK:
                for frame in held:  # from the new snapshot on: consistent by itself
                    if arbiter is None or arbiter.owns(g, frame.market_ticker or ""):
                        fanout.put(consumer, frame)
            else:
                for wire in standby.sids.values():
                    if wire.channel != consumer.channel:
                        continue
                    for market, book in wire.books.items():
                        if consumer.tickers is not None and market not in consumer.tickers:
                            continue
                        if arbiter is None or arbiter.owns(g, market):
                            fanout.put(consumer, book.snapshot())
        if g.state is ConnectionState.CONNECTED:
            core.set_group_state(g, ConnectionState.STREAMING, recv_ns, mono_ns)
