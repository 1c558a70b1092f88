"""Strategies the backtest tests run on Dask workers (imported there by name).

`digest` is the correctness probe: per shard, every data frame delivered (receive
time, connection, channel, hash of the bytes, in delivery order) and each market's
book as delivered at the shard's start (the seek's seeding) and at every update.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

CHANNELS = ("orderbook_delta", "trade")


def book_view(book: Any) -> tuple[Any, ...]:
    return (book.valid, book.seq, tuple(book.yes_bids), tuple(book.no_bids))


async def digest(session: Any, shard: Any) -> dict[str, Any]:
    frames: list[tuple[int, int, str, str]] = []
    for channel in CHANNELS:
        session.on(channel, raw=True)(
            lambda f: frames.append((f.recv_ns, f.conn, f.channel, hashlib.sha1(f.raw).hexdigest()))
        )
    markets = sorted(session.capture.markets("orderbook_delta"))
    books = {m: await session.orderbook(m) for m in markets}
    at_start: dict[str, tuple[Any, ...]] = {}
    updates: dict[str, list[tuple[int, tuple[Any, ...]]]] = {}

    async def follow(market: str, sub: Any) -> None:
        async for book in sub:
            if book.recv_ns < shard.start_ns and market not in updates:
                at_start[market] = book_view(book)  # the book the seek seeded
            else:
                updates.setdefault(market, []).append((book.recv_ns, book_view(book)))

    await asyncio.gather(session.run_forever(), *(follow(m, s) for m, s in books.items()))
    return {"frames": frames, "at_start": at_start, "updates": updates}


async def raw_books(session: Any, shard: Any) -> list[dict[str, Any]]:
    """The book frames a raw consumer gets, as (recv_ns and the frame's JSON body)."""
    frames: list[dict[str, Any]] = []
    session.on("orderbook_delta", raw=True)(
        lambda f: frames.append({"recv_ns": f.recv_ns, **json.loads(f.raw)})
    )
    await session.run_forever()
    return frames


async def pausing_digest(session: Any, shard: Any, *, marker: str, pause_shard: int) -> Any:
    """`digest`, but the first attempt at shard `pause_shard` stops mid-shard, writes its
    process id to `marker` and waits there, to be killed."""
    if shard.index == pause_shard and not Path(marker + ".killed").exists():
        sub = await session.subscribe("trade", raw=True)
        async for _ in sub:  # some of the shard is replayed: now we are mid-shard
            Path(marker).write_text(str(os.getpid()))
            while True:
                time.sleep(0.05)  # noqa: ASYNC251 - holds the worker, as a busy strategy would
    return await digest(session, shard)


async def fails_on_the_second_day(session: Any, shard: Any) -> int:
    trades = await session.subscribe("trade", raw=True)
    count = 0
    async for _ in trades:
        count += 1
        if shard.index == 1 and count == 5:
            raise ValueError(f"strategy bug after {count} trades")
    return count


class TradeCounter:
    """The class form: callbacks registered in the constructor, `result()` at the end."""

    def __init__(self, session: Any, shard: Any) -> None:
        self.shard = shard
        self.counts: dict[str, int] = {}
        session.on("trade")(self.on_trade)

    def on_trade(self, trade: Any) -> None:
        market = trade.msg.market_ticker
        self.counts[market] = self.counts.get(market, 0) + 1

    def result(self) -> dict[str, int]:
        return self.counts


def add_counts(results: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in results:
        for market, n in counts.items():
            total[market] = total.get(market, 0) + n
    return total
