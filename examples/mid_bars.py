"""A backtest strategy: 1-minute mid-price bars per market, and a toy momentum signal.

    kalshi-tape backtest examples/mid_bars.py:mid_bars examples/sample \\
        --reducer examples/mid_bars.py:combine --shard 15s --workers 2

`mid_bars` runs once per shard on a Dask worker. It receives the shard's
`ReplaySession` (books already seeded at the shard's start) and folds the mid price of
every book update into bars; a bar cut by a shard edge comes back as two partial bars.
`combine` (the reducer) gets the shards' results in time order, joins the partial bars
and scores the signal: "the next bar moves the way this one did".
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

BAR_NS = 60 * 10**9


async def mid_bars(session: Any, shard: Any) -> list[dict[str, Any]]:
    """The shard's (partial) 1-minute bars of the mid price, per market."""
    markets = sorted(session.capture.markets("orderbook_delta"))
    if shard.markets is not None:  # a market group
        markets = [m for m in markets if m in shard.markets]
    updates = {market: await session.orderbook(market) for market in markets}
    bars: dict[tuple[str, int], dict[str, Any]] = {}

    async def follow(market: str, books: Any) -> None:
        async for book in books:
            # The book as it was at the shard's start was counted by the shard before.
            if not book.valid or book.mid is None or book.recv_ns < shard.start_ns:
                continue
            mid = float(book.mid)
            start = book.recv_ns // BAR_NS * BAR_NS
            bar = bars.get((market, start))
            if bar is None:
                bars[market, start] = {
                    "market": market, "start_ns": start, "updates": 1,
                    "open": mid, "high": mid, "low": mid, "close": mid,
                }  # fmt: skip
            else:
                bar["high"], bar["low"] = max(bar["high"], mid), min(bar["low"], mid)
                bar["close"] = mid
                bar["updates"] += 1

    await asyncio.gather(*(follow(m, books) for m, books in updates.items()))
    return sorted(bars.values(), key=lambda b: (b["start_ns"], b["market"]))


def combine(shard_results: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Join the partial bars (in time order) and score the toy momentum signal."""
    bars: dict[tuple[str, int], dict[str, Any]] = {}
    for part in (bar for result in shard_results for bar in result):
        key = (part["market"], part["start_ns"])
        bar = bars.get(key)
        if bar is None:
            bars[key] = dict(part)
            continue
        bar["high"], bar["low"] = max(bar["high"], part["high"]), min(bar["low"], part["low"])
        bar["close"] = part["close"]
        bar["updates"] += part["updates"]
    hits = calls = 0
    by_market: dict[str, list[dict[str, Any]]] = {}
    for (market, _), bar in sorted(bars.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        by_market.setdefault(market, []).append(bar)
    for series in by_market.values():
        for now, nxt in itertools.pairwise(series):
            move, then = now["close"] - now["open"], nxt["close"] - nxt["open"]
            if move and then:  # flat bars call nothing
                calls += 1
                hits += (move > 0) == (then > 0)
    return {
        "bars": len(bars),
        "markets": len(by_market),
        "signal": {"calls": calls, "hits": hits, "hit_rate": hits / calls if calls else None},
        "last_bars": [by_market[m][-1] for m in sorted(by_market)],
    }
