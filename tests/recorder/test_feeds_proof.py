"""The proof of redundant capture against the simulated exchange.

Two feeds with independent faults (drops, 1011 closes and sequence gaps, at different
times: each fault targets one feed's connections by the `tag` in its URL), and a third
connection without faults that records the exchange's true book at every clock. Then:

- every valid book the session delivered equals the truth at its clock;
- the time the session's book was invalid is at most the time both feeds were broken
  at once (each feed's broken time is measured by running the engine over that feed's
  records alone, as a one-feed recorder would have seen them);
- no trade either feed received is missing, none is delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from recorder.link.sink import MemorySink, SinkRecord
from replay.reading.session import drive_event
from replay.server.faults import parse_fault
from stream import Delivery, DeliveryQueue, Engine, Overflow
from stream.book import BookSnapshot

from ..replay.rebuild import apply_book_frame
from .live_helpers import Reader, eventually, sim_server, trade_id, watched_session

pytestmark = pytest.mark.timeout(90)

Side = dict[Decimal, Decimal]
FAULTS = [
    "drop@every=0.9s,tag=a",
    "gap@p=0.004,tag=a",
    "close:1011@every=1.3s,tag=b",
    "gap@p=0.004,tag=b",
]


class TruthBook:
    """A plain client without faults: the exchange's book of one market at every clock."""

    def __init__(self, url: str, ticker: str) -> None:
        self.url, self.ticker = url, ticker
        self.at: dict[int, tuple[Side, Side]] = {}
        self._books: dict[str, tuple[Side, Side]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ws = await ws_connect(self.url, compression=None, max_size=None)
        params = {"channels": ["orderbook_delta"], "market_tickers": [self.ticker]}
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": params}))
        self._task = asyncio.get_running_loop().create_task(self._read(ws))

    async def _read(self, ws: Any) -> None:
        async with ws:
            async for raw in ws:
                frame = json.loads(raw)
                if apply_book_frame(self._books, frame):
                    yes, no = self._books[self.ticker]
                    self.at[frame["msg"]["clock"]] = (dict(yes), dict(no))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def invalid_spans(books: list[BookSnapshot], end_ns: int) -> list[tuple[int, int]]:
    """[start, end) receive-time spans during which the latest book was invalid (or none
    had come yet)."""
    spans, since = [], None
    for book in books:
        if not book.valid and since is None:
            since = book.recv_ns
        elif book.valid and since is not None:
            spans.append((since, book.recv_ns))
            since = None
    if since is not None:
        spans.append((since, end_ns))
    return spans


def one_feed_alone(records: list[SinkRecord], feed: int, ticker: str) -> list[BookSnapshot]:
    """The books a one-feed recorder of `feed` would have had: the engine run over that
    feed's records only, as a replay drives it."""
    engine = Engine()
    queue = DeliveryQueue(10_000_000, Overflow.BLOCK)
    engine.add_consumer("orderbook_delta", owns_wire=False, delivery=Delivery.BOOK,
                        queue=queue, tickers=frozenset({ticker}))  # fmt: skip
    for r in records:
        if r.feed != feed:
            continue
        if r.dir == "in":
            engine.frame_received(r.raw, r.recv_ns, r.mono_ns, r.conn)
        elif r.dir == "out":
            engine.command_sent(r.raw, r.recv_ns, r.mono_ns, r.conn)
        elif r.dir == "event":
            drive_event(engine, r.event.to_bytes(), r.recv_ns, r.mono_ns, r.conn, 1)
    return [b for b in queue.drain(10_000_000) if b.market == ticker]


def overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    return sum(max(0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def total(spans: list[tuple[int, int]]) -> int:
    return sum(e - s for s, e in spans)


async def test_two_feeds_with_independent_faults_give_one_true_book_and_every_trade() -> None:
    faults = tuple(parse_fault(spec) for spec in FAULTS)
    async with sim_server(rate_fps=400.0, faults=faults) as server:
        ticker = server.tape.market_tickers()[0]
        truth = TruthBook(server.url, ticker)
        await truth.start()
        sink = MemorySink()
        urls = [f"{server.url}?tag=a", f"{server.url}?tag=b"]
        watched = watched_session(server, feeds=2, urls=urls, sink=sink)
        async with watched.session.connect() as session:
            books = Reader(await session.orderbook(ticker, maxsize=1_000_000))
            trades = Reader(await session.subscribe_trade(raw=True, maxsize=1_000_000))
            await asyncio.sleep(6.0)
            await server.quiesce()
            await eventually(lambda: len(truth.at) > 0)
            end_ns = max(r.recv_ns for r in sink.records)
            delivered = list(books.items)
            got = [trade_id(f) for f in trades.items]
        await books.stop()
        await trades.stop()
        await truth.stop()

    # The faults really hit both feeds, and only them.
    closes = [r for r in sink.records if r.dir == "event" and r.name == "close"]
    assert {r.feed for r in closes} == {0, 1}
    # Every valid book equals the exchange's book at its clock.
    valid = [b for b in delivered if b.valid]
    assert len(valid) > 100
    for book in valid:
        assert book.clock in truth.at, f"clock {book.clock} never seen by the truth client"
        assert (dict(book.yes), dict(book.no)) == truth.at[book.clock], book
    # Invalid only while both feeds were broken.
    start_ns = min(b.recv_ns for b in delivered)
    alone = [one_feed_alone(sink.records, f, ticker) for f in (0, 1)]
    broken = [invalid_spans([b for b in a if b.recv_ns >= start_ns], end_ns) for a in alone]
    assert all(total(s) > 0 for s in broken), "a feed was never broken: the faults missed"
    arbitrated = invalid_spans(delivered, end_ns)
    both = overlap(broken[0], broken[1])
    assert total(arbitrated) <= both, (total(arbitrated), both, [total(s) for s in broken])
    # Trades: every one either feed received, once.
    received = {
        json.loads(r.raw)["msg"]["trade_id"]
        for r in sink.records
        if r.dir == "in" and b'"type":"trade"' in r.raw
    }
    assert len(got) == len(set(got)), "a trade was delivered twice"
    assert received <= set(got), f"{len(received - set(got))} trades received but not delivered"
