"""Two redundant feeds against the simulated exchange: one of them killed over and over,
the session's trades and book go on as if nothing happened."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.server import serve

from recorder.link.feeds import FeedSet
from recorder.link.live import LiveSession
from schemas.errors import ConfigError

from .live_helpers import (
    Observer,
    Reader,
    Watched,
    book_matches_truth,
    eventually,
    sim_server,
    trade_id,
    watched_session,
)

pytestmark = pytest.mark.timeout(180)


def test_feeds_are_checked() -> None:
    with pytest.raises(ConfigError, match="feeds"):
        LiveSession("ws://127.0.0.1:9/x", feeds=9)
    with pytest.raises(ConfigError, match="urls"):
        LiveSession("ws://127.0.0.1:9/x", feeds=2, urls=["ws://127.0.0.1:9/x"])
    with pytest.raises(ConfigError, match="local_addresses"):
        LiveSession("ws://127.0.0.1:9/x", feeds=2, local_addresses=["127.0.0.2"])


@dataclass
class TwoFeeds:
    server: Any
    observer: Observer
    watched: Watched
    session: Any
    source: FeedSet


@contextlib.asynccontextmanager
async def two_feeds(rate_fps: float) -> AsyncIterator[TwoFeeds]:
    """A live session of two feeds on the simulated exchange, and an observer of the
    exchange's trades; the session closes first."""
    async with sim_server(rate_fps=rate_fps) as server, Observer(server.url) as observer:
        watched = watched_session(server, feeds=2)
        async with watched.session.connect() as session:
            assert isinstance(session._live, FeedSet)
            yield TwoFeeds(server, observer, watched, session, session._live)


async def test_killing_one_feed_loses_no_trade_and_never_invalidates_the_book() -> None:
    async with two_feeds(rate_fps=300.0) as two:
        session, source, observer = two.session, two.source, two.observer
        ticker = two.server.tape.market_tickers()[0]
        trades = Reader(await session.subscribe_trade(raw=True))
        books = Reader(await session.orderbook(ticker, maxsize=100_000))
        await eventually(lambda: all(f.active_conn is not None for f in source.feeds))
        await books.more_than(0)
        owners = []
        for _ in range(4):  # the feed the book comes from is dropped; it reconnects
            await asyncio.sleep(0.15)
            owner = session.engine.arbiter.owners[ticker]  # a live group is its feed
            owners.append(owner)
            feed = source.feeds[owner]
            before = feed.active_conn
            await feed.control.kill()
            await eventually(lambda f=feed, b=before: f.active_conn not in (None, b))
        assert await book_matches_truth(session, two.server, ticker)
        await observer.sync(99)
        await eventually(lambda: len(trades.items) >= len(observer.trade_ids))
        got = [trade_id(f) for f in trades.items]
        seen_books = list(books.items)  # the session's close invalidates the book after
        await trades.stop()
        await books.stop()
    watched = two.watched
    assert len(got) == len(set(got)), "a trade was delivered twice"
    assert set(observer.trade_ids) <= set(got), "a trade the exchange sent is missing"
    # Each kill moved the book to the other feed (which one owned it first is a race).
    assert all(a != b for a, b in itertools.pairwise(owners))
    assert seen_books and all(b.valid for b in seen_books)
    # The capture's side: both feeds recorded, the moves of the book recorded.
    feeds = {r.feed for r in watched.sink.records if r.dir == "in"}
    assert feeds == {0, 1}
    opens = [r for r in watched.sink.records if r.dir == "event" and r.name == "open"]
    assert {r.feed for r in opens} == {0, 1} and len(opens) >= 6
    moves = [(m.event.from_feed, m.event.to_feed) for m in watched.events("arbitrate")]
    assert moves[:4] == [(owner, 1 - owner) for owner in owners]
    assert session.stats.arbitrations == len(moves)


async def test_each_feed_connects_from_its_own_local_address() -> None:
    peers: list[str] = []

    async def handler(ws: Any) -> None:
        peers.append(ws.remote_address[0])
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        session = LiveSession(f"ws://127.0.0.1:{port}/ws", feeds=2,
                              local_addresses=["127.0.0.2", "127.0.0.3"])  # fmt: skip
        async with session.connect():
            await eventually(lambda: len(peers) == 2)
    assert sorted(peers) == ["127.0.0.2", "127.0.0.3"]


ROTATIONS = 8


async def test_rotating_both_feeds_at_once_delivers_each_trade_once_to_every_consumer() -> None:
    """Make-before-break on both feeds at the same time, again and again, with two trade
    consumers and a book: each consumer gets every trade the exchange sent, none twice
    (a standby's held copy is counted once, not once per consumer that held it; one
    feed's switch leaves the frames the other feed's standby holds), and the book never
    goes invalid."""
    async with two_feeds(rate_fps=3000.0) as two:
        session, source, observer = two.session, two.source, two.observer
        ticker = two.server.tape.market_tickers()[0]
        first = Reader(await session.subscribe_trade(raw=True, maxsize=1_000_000))
        second = Reader(await session.subscribe_trade(raw=True, maxsize=1_000_000))
        books = Reader(await session.orderbook(ticker, maxsize=1_000_000))
        await eventually(lambda: all(f.active_conn is not None for f in source.feeds))
        await first.more_than(10)
        rotated = 0
        for _ in range(ROTATIONS):
            rotated += await session.rotate()
            await first.more_than(len(first.items) + 5)
        assert await book_matches_truth(session, two.server, ticker)  # the exchange quiet
        await observer.sync(99)
        truth = list(observer.trade_ids)  # every trade it sent
        for reader in (first, second):
            await eventually(lambda r=reader: truth[-1] in {trade_id(f) for f in r.items})
        got = [[trade_id(f) for f in reader.items] for reader in (first, second)]
        switches = len(two.watched.events("switch"))
        seen_books = list(books.items)
        for reader in (first, second, books):
            await reader.stop()
    assert rotated == ROTATIONS and switches >= 2 * ROTATIONS  # each rotation switched both feeds
    for ids in got:
        assert len(ids) == len(set(ids)), "a trade was delivered twice"
        since = truth.index(ids[0])  # the session's first trade (the observer came first)
        missing = [(truth.index(t) - since, t) for t in set(truth[since:]) - set(ids)]
        assert not missing, f"of {len(truth) - since} trades sent, missing: {sorted(missing)}"
    assert got[0] == got[1]
    assert seen_books and all(b.valid for b in seen_books)
