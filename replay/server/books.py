"""One market's book state and the public payloads that describe it.

This module owns a market's state in the synthetic exchange (a YES and a NO bid
ladder as dicts of price in cents -> resting count, docs/protocol.md section 8.1, plus last
trade, volume and open interest) and how it is written on the wire: deltas,
trades and ticker updates (docs/protocol.md sections 8.1 to 8.3), in the current form (dollar
strings, fp counts) or the legacy one (integer cents and counts). It knows nothing
of how the market moves or of connections.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from replay.server.payloads import PRICE_DOLLARS, count_fp
from replay.server.tape import BookView

__all__ = ["MarketBook", "delta_msg", "rfc3339", "ticker_msg", "trade_msg"]


class MarketBook:
    """One market's state. Prices in cents (1-99), counts as whole contracts."""

    __slots__ = (
        "best_no",
        "best_yes",
        "clock",
        "dollar_volume",
        "event_ticker",
        "last_price",
        "last_size",
        "market_id",
        "no",
        "one_sided",
        "open_interest",
        "status",
        "ticker",
        "volume",
        "yes",
    )

    def __init__(self, ticker: str, market_id: str, event_ticker: str, one_sided: bool) -> None:
        self.ticker = ticker
        self.market_id = market_id
        self.event_ticker = event_ticker
        self.one_sided = one_sided
        self.yes: dict[int, int] = {}
        self.no: dict[int, int] = {}
        self.best_yes = 0  # 0: side empty
        self.best_no = 0
        self.clock = 0
        self.last_price = 50
        self.last_size = 0
        self.volume = 0
        self.open_interest = 0
        self.dollar_volume = 0
        self.status = "active"

    def view(self) -> BookView:
        return BookView(
            self.ticker,
            self.market_id,
            self.clock,
            tuple((PRICE_DOLLARS[p], count_fp(q)) for p, q in sorted(self.yes.items())),
            tuple((PRICE_DOLLARS[p], count_fp(q)) for p, q in sorted(self.no.items())),
        )


def delta_msg(
    book: MarketBook, side: str, price: int, delta: int, ts_ms: int, *, legacy: bool
) -> dict[str, Any]:
    """An `orderbook_delta` msg: `delta` contracts at `price` cents on one bid ladder."""
    if legacy:
        return {
            "market_ticker": book.ticker,
            "market_id": book.market_id,
            "clock": book.clock,
            "price": price,
            "delta": delta,
            "side": side,
            "ts_ms": ts_ms,
        }
    return {
        "market_ticker": book.ticker,
        "market_id": book.market_id,
        "clock": book.clock,
        "price_dollars": PRICE_DOLLARS[price],
        "delta_fp": count_fp(delta),
        "side": side,
        "ts_ms": ts_ms,
    }


def trade_msg(
    book: MarketBook,
    trade_id: str,
    side: str,
    yes_price: int,
    count: int,
    ts_ms: int,
    *,
    legacy: bool,
) -> dict[str, Any]:
    """A `trade` msg; `side` is the taker's outcome side (buying YES takes a NO bid)."""
    if legacy:
        return {
            "trade_id": trade_id,
            "market_ticker": book.ticker,
            "yes_price": yes_price,
            "no_price": 100 - yes_price,
            "count": count,
            "taker_side": side,
            "ts": ts_ms // 1000,
        }
    return {
        "trade_id": trade_id,
        "market_ticker": book.ticker,
        "yes_price_dollars": PRICE_DOLLARS[yes_price],
        "no_price_dollars": PRICE_DOLLARS[100 - yes_price],
        "count_fp": count_fp(count),
        "taker_side": side,
        "taker_outcome_side": side,
        "taker_book_side": "bid" if side == "yes" else "ask",
        "is_block_trade": False,
        "ts": ts_ms // 1000,
        "ts_ms": ts_ms,
    }


def ticker_msg(book: MarketBook, ts_ms: int, *, legacy: bool) -> dict[str, Any]:
    """A `ticker` msg that agrees with the book: best YES bid, YES ask = 1 - best NO bid."""
    yes_bid = book.best_yes
    yes_ask = 100 - book.best_no if book.best_no else 100
    oi_dollars = book.open_interest * book.last_price // 100
    if legacy:
        return {
            "market_ticker": book.ticker,
            "market_id": book.market_id,
            "price": book.last_price,
            "yes_bid": yes_bid,
            "yes_ask": yes_ask,
            "volume": book.volume,
            "open_interest": book.open_interest,
            "dollar_volume": book.dollar_volume,
            "dollar_open_interest": oi_dollars,
            "ts": ts_ms // 1000,
        }
    return {
        "market_ticker": book.ticker,
        "market_id": book.market_id,
        "price_dollars": PRICE_DOLLARS[book.last_price],
        "yes_bid_dollars": PRICE_DOLLARS[yes_bid],
        "yes_ask_dollars": PRICE_DOLLARS[yes_ask],
        "yes_bid_size_fp": count_fp(book.yes.get(yes_bid, 0)),
        "yes_ask_size_fp": count_fp(book.no.get(book.best_no, 0)),
        "last_trade_size_fp": count_fp(book.last_size),
        "volume_fp": count_fp(book.volume),
        "open_interest_fp": count_fp(book.open_interest),
        "dollar_volume": book.dollar_volume,
        "dollar_open_interest": oi_dollars,
        "ts": ts_ms // 1000,
        "ts_ms": ts_ms,
        "time": rfc3339(ts_ms),
    }


_TIME_CACHE: dict[int, str] = {}


def rfc3339(ts_ms: int) -> str:
    """RFC3339 UTC with milliseconds; the second's prefix is cached (one per second)."""
    sec, ms = divmod(ts_ms, 1000)
    prefix = _TIME_CACHE.get(sec)
    if prefix is None:
        if len(_TIME_CACHE) > 64:
            _TIME_CACHE.clear()
        prefix = dt.datetime.fromtimestamp(sec, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _TIME_CACHE[sec] = prefix
    return f"{prefix}.{ms:03d}Z"
