"""The synthetic market: deterministic books, trades and tickers, shared by every connection.

This module owns the exchange's state (a YES and a NO bid ladder per market, as
dicts of price in cents -> resting count, docs/protocol.md section 8.1), how it moves (makers
add and cancel near the top, takers trade through the best level and move the
price), and the public payloads that describe each move: deltas consistent with
the book, trades, ticker updates that agree with it. Other channels' payloads come
from `replay.server.activity`, index feeds from `replay.server.feeds`.

Determinism: one `random.Random(seed)` drives every market event, and timestamps
come from a virtual clock (`epoch_ms + events * 1000 / rate`), so the same seed
gives the same events whatever the wall-clock pacing. No I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Final

from replay.server.activity import Activity, MarketRef
from replay.server.books import MarketBook, delta_msg, ticker_msg, trade_msg
from replay.server.config import ServerConfig
from replay.server.feeds import CFB_5HZ_IDS, CFB_IDS, PYTH_UNDERLYINGS, IndexFeeds
from replay.server.tape import BookView, TapeEvent
from schemas.channels import Channel

__all__ = ["SyntheticMarket"]

_SERIES: Final[tuple[tuple[str, str], ...]] = (
    ("KXBTCD", "Bitcoin price above"),
    ("KXETHD", "Ethereum price above"),
    ("KXHIGHNY", "Highest temperature in NYC"),
    ("KXFEDDECISION", "Fed rate decision"),
    ("KXCPIYOY", "CPI year over year"),
    ("KXNBAGAME", "NBA game winner"),
    ("KXSPX", "S&P 500 close"),
    ("KXGDP", "GDP growth"),
)
_MONTHS: Final = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)
#: The most a single action may try per pull before returning (bounds latency).
_MAX_EVENTS_PER_PULL: Final = 2_000
_DELTA: Final = Channel.ORDERBOOK_DELTA


class SyntheticMarket:
    """A deterministic exchange: N markets under event and series tickers (a `Tape`).

    Args:
        config: markets, seed, rate and mix, depth, one-sided markets, wire form.
        epoch_ms: the virtual clock's start (Unix ms).
    """

    def __init__(self, config: ServerConfig, epoch_ms: int) -> None:
        self._cfg = config
        self._rng = random.Random(config.seed)
        self._epoch_ms = epoch_ms
        self._rate = float(config.rate_fps)
        self._legacy = config.switches.wire == "legacy"
        self._depth_min = config.depth_min
        self._depth_max = config.depth_max
        self._n_events = 0  # events generated so far: the virtual clock
        #: settlement cadence in events (exchange time x rate); 0 disables.
        self._settle_every = int(config.settle_every_s * config.rate_fps)
        self._next_settle = self._settle_every
        self._clock = 0  # exchange clock, shared by all markets (skips values per market)
        self._feeds = IndexFeeds(config.seed, epoch_ms, config.index_hz)
        self._books: dict[str, MarketBook] = {}
        self._by_id: dict[str, str] = {}
        self._active: list[MarketBook] = []
        self._events: dict[str, str] = {}  # event ticker -> series ticker
        self._last_event: str | None = None
        self.activity = Activity(self._rng, config.user_id, self._uuid)
        for i in range(config.markets):
            one_sided = i >= config.markets - config.one_sided_markets
            book = self._new_market(one_sided)
            self._active.append(book)
            self._seed_book(book)
        total = sum(config.mix.values())
        self._actions: list[tuple[float, str]] = []
        acc = 0.0
        for name, weight in config.mix.items():
            acc += weight / total
            self._actions.append((acc, name))

    # -- Tape interface -------------------------------------------------------------

    def market_tickers(self) -> Sequence[str]:
        return list(self._books)

    def has_market(self, ticker: str) -> bool:
        return ticker in self._books

    def ticker_of_id(self, market_id: str) -> str | None:
        return self._by_id.get(market_id)

    def book(self, ticker: str) -> BookView | None:
        book = self._books.get(ticker)
        return None if book is None else book.view()

    def books(self) -> Iterator[BookView]:
        for book in self._books.values():
            yield book.view()

    def active_tickers(self) -> list[str]:
        """Tickers of the markets still trading, in slot order (hottest first)."""
        return [b.ticker for b in self._active]

    def ticker_payload(self, ticker: str) -> dict[str, Any] | None:
        book = self._books.get(ticker)
        return None if book is None else self._ticker_msg(book, self._now_ms())

    def index_ids(self, channel: str) -> Sequence[str]:
        if channel == Channel.PYTH_VALUE:
            return PYTH_UNDERLYINGS
        return CFB_5HZ_IDS if channel == Channel.CFBENCHMARKS_VALUE_5HZ else CFB_IDS

    def pull(self, elapsed_s: float) -> list[TapeEvent]:
        out = self._feeds.pull(elapsed_s)
        target = int(elapsed_s * self._rate)
        if target - self._n_events > self._rate:
            # Far behind (the process was starved): skip the backlog, keep the order.
            self._n_events = target - int(self._rate)
        limit = len(out) + _MAX_EVENTS_PER_PULL
        while self._n_events < target and len(out) < limit:
            self._advance(out)
        return out

    def _advance(self, out: list[TapeEvent]) -> None:
        before = len(out)
        if self._settle_every and self._n_events >= self._next_settle:
            self._settle(self._now_ms(), out)
            # Exponential gaps in exchange time, drawn from the same generator.
            self._next_settle += max(1, int(self._rng.expovariate(1.0) * self._settle_every))
        else:
            self._step(out)
        self._n_events += len(out) - before

    def step(self, n: int) -> list[TapeEvent]:
        """Generate at least `n` market events now, ignoring pacing (tests, benchmarks)."""
        out: list[TapeEvent] = []
        while len(out) < n:
            self._advance(out)
        return out

    # -- construction -----------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _new_event(self) -> tuple[str, str]:
        rng = self._rng
        series, title = _SERIES[rng.randrange(len(_SERIES))]
        day = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(365))
        event = f"{series}-{day.year % 100:02d}{_MONTHS[day.month - 1]}{day.day:02d}"
        while event in self._events:
            event += "X"
        self._events[event] = series
        return event, title

    def _new_market(self, one_sided: bool, event: str | None = None) -> MarketBook:
        """List a market under `event`, or (None) under the last event or a new one."""
        rng = self._rng
        if event is None:
            if self._last_event is None or rng.random() < 0.4:
                self._last_event = self._new_event()[0]
            event = self._last_event
        strike = rng.randrange(10, 1000) * 5
        ticker = f"{event}-{'BT'[rng.randrange(2)]}{strike}"
        while ticker in self._books:
            ticker += "5"
        book = MarketBook(ticker, self._uuid(), event, one_sided)
        self._books[ticker] = book
        self._by_id[book.market_id] = ticker
        return book

    def _seed_book(self, book: MarketBook) -> None:
        """A starting book around a random mid: both ladders, depth_min to depth_max."""
        rng = self._rng
        mid = rng.randrange(20, 81)
        book.last_price = mid
        best_yes = mid - 1
        depth = rng.randrange(self._depth_min, self._depth_max + 1)
        for p in range(best_yes, max(0, best_yes - depth), -1):
            book.yes[p] = rng.randrange(1, 500)
        book.best_yes = max(book.yes, default=0)
        if not book.one_sided:
            best_no = 99 - mid
            depth = rng.randrange(self._depth_min, self._depth_max + 1)
            for p in range(best_no, max(0, best_no - depth), -1):
                book.no[p] = rng.randrange(1, 500)
            book.best_no = max(book.no, default=0)

    # -- stepping ---------------------------------------------------------------------

    def _now_ms(self) -> int:
        if not self._rate:
            return self._epoch_ms
        return self._epoch_ms + int(self._n_events * 1000 / self._rate)

    def _pick(self) -> MarketBook:
        # Skewed towards the first slots: a few hot markets, a long quiet tail.
        active = self._active
        return active[int(self._rng.random() ** 2 * len(active))]

    def _step(self, out: list[TapeEvent]) -> None:
        r = self._rng.random()
        action = self._actions[-1][1]
        for threshold, name in self._actions:
            if r < threshold:
                action = name
                break
        ts_ms = self._now_ms()
        if action == "delta":
            self._delta(self._pick(), ts_ms, out)
        elif action == "ticker":
            book = self._pick()
            out.append(
                TapeEvent(Channel.TICKER, "ticker", book.ticker, self._ticker_msg(book, ts_ms))
            )
        elif action == "trade":
            self._trade(self._pick(), ts_ms, out, user=False)
        elif action == "private":
            self._trade(self._pick(), ts_ms, out, user=True)
        elif action == "lifecycle":
            self._lifecycle(ts_ms, out)
        else:
            ref = self._ref(self._pick())
            out.extend(self.activity.emit(action, ref, ts_ms))

    def _ref(self, book: MarketBook) -> MarketRef:
        return MarketRef(
            book.ticker, book.market_id, book.event_ticker, self._events.get(book.event_ticker, "")
        )

    def _tick_clock(self, book: MarketBook) -> int:
        self._clock += 1
        book.clock = self._clock
        return self._clock

    def _delta_event(
        self, book: MarketBook, side: str, price: int, delta: int, ts_ms: int
    ) -> TapeEvent:
        msg = delta_msg(book, side, price, delta, ts_ms, legacy=self._legacy)
        return TapeEvent(_DELTA, "orderbook_delta", book.ticker, msg)

    def _delta(self, book: MarketBook, ts_ms: int, out: list[TapeEvent]) -> None:
        """A maker adds or cancels near the top of one ladder; never crosses the book."""
        rng = self._rng
        yes_side = book.one_sided or rng.random() < 0.5
        if not yes_side and not book.no and book.best_yes >= 99:
            yes_side = True  # the NO ladder has no room: act on the YES one
        elif yes_side and not book.yes and book.best_no >= 99:
            yes_side = False
        if yes_side:
            levels, best, limit = book.yes, book.best_yes, 99 - book.best_no
        else:
            levels, best, limit = book.no, book.best_no, 99 - book.best_yes
        depth = len(levels)
        room = min(self._depth_max, limit)
        if depth == 0 or (depth < self._depth_min and depth < room):
            add = True
        elif depth >= room:
            add = False
        else:
            add = rng.random() < 0.55
        if add:
            if best == 0:
                price = max(1, limit - rng.randrange(5))
            elif best < limit and rng.random() < 0.12:
                price = best + 1  # improve the best bid: the spread narrows
            else:
                price = best - int(rng.random() ** 2 * 15)
                if price < 1:
                    price = best
            if price > limit:
                price = limit
            qty = rng.randrange(1, 400)
            levels[price] = levels.get(price, 0) + qty
            if price > best:
                best = price
            delta = qty
        else:
            price = best - int(rng.random() ** 2 * 10)
            have = levels.get(price)
            if have is None:
                price, have = best, levels[best]
            delta = -(have if rng.random() < 0.35 else rng.randrange(1, have + 1))
            left = have + delta
            if left:
                levels[price] = left
            else:
                del levels[price]
                if price == best:
                    best = max(levels, default=0)
        if yes_side:
            book.best_yes = best
        else:
            book.best_no = best
        self._tick_clock(book)
        out.append(self._delta_event(book, "yes" if yes_side else "no", price, delta, ts_ms))

    def _trade(self, book: MarketBook, ts_ms: int, out: list[TapeEvent], *, user: bool) -> None:
        """A taker trades through the best bid of one side; a swept level moves the price."""
        rng = self._rng
        buy_yes = rng.random() < 0.5
        # Buying YES lifts the YES ask, i.e. takes the best NO bid (docs/protocol.md section 8.1).
        levels, best = (book.no, book.best_no) if buy_yes else (book.yes, book.best_yes)
        if best == 0:
            self._delta(book, ts_ms, out)
            return
        have = levels[best]
        count = have if rng.random() < 0.2 else min(have, rng.randrange(1, 200))
        yes_price = 100 - best if buy_yes else best
        if count == have:
            del levels[best]
            new_best = max(levels, default=0)
        else:
            levels[best] = have - count
            new_best = best
        if buy_yes:
            book.best_no = new_best
        else:
            book.best_yes = new_best
        book.last_price = yes_price
        book.last_size = count
        book.volume += count
        book.open_interest += count // 2 + 1
        book.dollar_volume += count * yes_price // 100
        self._tick_clock(book)
        side = "yes" if buy_yes else "no"
        trade_id = self._uuid()
        trade = trade_msg(book, trade_id, side, yes_price, count, ts_ms, legacy=self._legacy)
        out.append(TapeEvent(Channel.TRADE, "trade", book.ticker, trade))
        out.append(self._delta_event(book, "no" if buy_yes else "yes", best, -count, ts_ms))
        out.append(TapeEvent(Channel.TICKER, "ticker", book.ticker, self._ticker_msg(book, ts_ms)))
        if user:
            out.extend(
                self.activity.user_fill(self._ref(book), trade_id, side, yes_price, count, ts_ms)
            )

    def _ticker_msg(self, book: MarketBook, ts_ms: int) -> dict[str, Any]:
        return ticker_msg(book, ts_ms, legacy=self._legacy)

    def _lifecycle(self, ts_ms: int, out: list[TapeEvent]) -> None:
        """A metadata or close-date update of one active market."""
        book = self._active[self._rng.randrange(len(self._active))]
        kind = "metadata_updated" if self._rng.random() < 0.5 else "close_date_updated"
        out.extend(self.activity.lifecycle(self._ref(book), kind, ts_ms))

    def _settle(self, ts_ms: int, out: list[TapeEvent]) -> None:
        """A market is determined and settles; a new market lists in its slot."""
        rng = self._rng
        slot = rng.randrange(len(self._active))
        book = self._active[slot]
        # Settle: determination closes the book (every resting order cancelled, as
        # deltas, so subscribers' books stay true), then settlement.
        out.extend(self.activity.lifecycle(self._ref(book), "determined", ts_ms))
        for side, levels in (("yes", book.yes), ("no", book.no)):
            for price in sorted(levels):
                self._tick_clock(book)
                out.append(self._delta_event(book, side, price, -levels[price], ts_ms))
            levels.clear()
        book.best_yes = book.best_no = 0
        book.status = "settled"
        out.extend(self.activity.lifecycle(self._ref(book), "settled", ts_ms))
        # A new market lists in the same slot; its book starts empty and fills by deltas.
        new_event = rng.random() < 0.3
        event = self._new_event()[0] if new_event else book.event_ticker
        fresh = self._new_market(book.one_sided, event)
        self._active[slot] = fresh
        ref = self._ref(fresh)
        if new_event:
            out.extend(self.activity.event_created(ref, ts_ms, Channel.MARKET_LIFECYCLE_V2))
        out.extend(self.activity.lifecycle(ref, "created", ts_ms))
        out.extend(self.activity.lifecycle(ref, "activated", ts_ms))
