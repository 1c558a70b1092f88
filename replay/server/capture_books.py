"""The true books of a served capture: recorded deltas applied, recorded snapshots diffed.

This module owns the replay server's truth for `orderbook_delta` (docs/protocol.md section 8.1):
one YES and one NO bid ladder per market, exact decimals, at the position the
server has served up to. A recorded delta is applied as it is served. A recorded
snapshot (after a reconnect or a resync in the capture, or the very first one) is
never re-sent as a snapshot, which would break the seq of every subscriber: it
replaces the book, and the difference from the book it replaces goes out as
synthetic `orderbook_delta` events, one per changed level, so every connected
client's book stays equal to the truth. New subscribers get the truth as their
snapshot (`view`). Both wire forms are read (current dollar strings and the
legacy integer cents); synthetic deltas use the form of the snapshot they come
from. It knows nothing of sockets, subscriptions or how the capture is read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from replay.server.tape import BookView, TapeEvent
from schemas.channels import Channel

__all__ = ["CaptureBooks"]

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_Ladder = dict[Decimal, Decimal]


#: Parsed prices and counts: a feed repeats few distinct strings, and parsing a Decimal
#: costs more than the rest of applying a delta. Cleared when it grows large.
_PARSED: dict[str, Decimal] = {}


def _dec(value: Any) -> Decimal | None:
    if isinstance(value, str):
        found = _PARSED.get(value)
        if found is not None:
            return found
    # Counts and prices may arrive as JSON numbers instead of strings (docs/protocol.md section 7).
    try:
        parsed = Decimal(value if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    if isinstance(value, str):
        if len(_PARSED) >= 100_000:
            _PARSED.clear()
        _PARSED[value] = parsed
    return parsed


def _price_str(price: Decimal) -> str:
    text = f"{price:.4f}"
    return text if Decimal(text) == price else format(price, "f")


def _count_str(count: Decimal) -> str:
    text = f"{count:.2f}"
    return text if Decimal(text) == count else format(count, "f")


def _ladder(rows: Any, legacy: bool) -> _Ladder:
    """`[[price, count], ...]` (dollar strings, or cents when legacy) as price -> count."""
    out: _Ladder = {}
    if not isinstance(rows, list):
        return out
    for row in rows:
        if not isinstance(row, list | tuple) or len(row) != 2:
            continue
        price, count = _dec(row[0]), _dec(row[1])
        if price is None or count is None or count <= 0:
            continue
        out[price / _HUNDRED if legacy else price] = count
    return out


class _Book:
    __slots__ = ("clock", "legacy", "market_id", "no", "yes")

    def __init__(self) -> None:
        self.yes: _Ladder = {}
        self.no: _Ladder = {}
        self.clock = 0
        self.market_id = ""
        self.legacy = False


class CaptureBooks:
    """Every market's true book at the served position."""

    def __init__(self) -> None:
        self._books: dict[str, _Book] = {}
        self._ids: dict[str, str] = {}

    def __contains__(self, ticker: object) -> bool:
        return ticker in self._books

    def _book(self, ticker: str) -> _Book:
        book = self._books.get(ticker)
        if book is None:
            book = self._books[ticker] = _Book()
        return book

    def apply_delta(self, payload: Mapping[str, Any]) -> None:
        """Apply a recorded `orderbook_delta` msg (qty += delta; a level at 0 is gone)."""
        ticker = payload.get("market_ticker")
        if not isinstance(ticker, str):
            return
        book = self._book(ticker)
        legacy = "price_dollars" not in payload and "price" in payload
        price = _dec(payload.get("price" if legacy else "price_dollars"))
        delta = _dec(payload.get("delta" if legacy else "delta_fp"))
        side = payload.get("side")
        if price is None or delta is None or side not in ("yes", "no"):
            return
        if legacy:
            price /= _HUNDRED
        ladder = book.yes if side == "yes" else book.no
        left = ladder.get(price, _ZERO) + delta
        if left > 0:
            ladder[price] = left
        else:
            ladder.pop(price, None)
        self._meta(book, payload)

    def replace(self, payload: Mapping[str, Any], ts_ms: int) -> list[TapeEvent]:
        """Replace a market's book with a recorded snapshot msg; return the synthetic
        deltas that turn the old book into the new one (none when they are equal)."""
        ticker = payload.get("market_ticker")
        if not isinstance(ticker, str):
            return []
        book = self._book(ticker)
        if "yes_dollars_fp" in payload or "no_dollars_fp" in payload:
            book.legacy = False
        elif "yes" in payload or "no" in payload:
            book.legacy = True
        legacy = book.legacy
        yes = _ladder(payload.get("yes" if legacy else "yes_dollars_fp"), legacy)
        no = _ladder(payload.get("no" if legacy else "no_dollars_fp"), legacy)
        self._meta(book, payload)
        book.market_id = book.market_id or self._ids.get(ticker, "")
        out: list[TapeEvent] = []
        for side, old, new in (("yes", book.yes, yes), ("no", book.no, no)):
            for price in sorted(old.keys() | new.keys()):
                change = new.get(price, _ZERO) - old.get(price, _ZERO)
                if change:
                    out.append(self._delta(ticker, book, side, price, change, ts_ms))
        book.yes, book.no = yes, no
        return out

    def note_market_id(self, ticker: str, market_id: str) -> None:
        """Remember a market's id (for the snapshots of markets with no book yet)."""
        self._ids.setdefault(ticker, market_id)

    def view(self, ticker: str) -> BookView:
        """The market's book now (empty, clock 0, before the capture showed one)."""
        book = self._books.get(ticker) or _Book()
        return BookView(
            ticker,
            book.market_id or self._ids.get(ticker, ""),
            book.clock,
            tuple((_price_str(p), _count_str(q)) for p, q in sorted(book.yes.items())),
            tuple((_price_str(p), _count_str(q)) for p, q in sorted(book.no.items())),
        )

    def views(self) -> Iterator[BookView]:
        for ticker in list(self._books):
            yield self.view(ticker)

    @staticmethod
    def _meta(book: _Book, payload: Mapping[str, Any]) -> None:
        clock = payload.get("clock")
        if isinstance(clock, int) and not isinstance(clock, bool):
            book.clock = clock
        market_id = payload.get("market_id")
        if isinstance(market_id, str) and market_id:
            book.market_id = market_id

    @staticmethod
    def _delta(
        ticker: str, book: _Book, side: str, price: Decimal, change: Decimal, ts_ms: int
    ) -> TapeEvent:
        msg: dict[str, Any] = {"market_ticker": ticker, "market_id": book.market_id,
                               "clock": book.clock}  # fmt: skip
        if book.legacy:
            msg.update(price=int(price * _HUNDRED), delta=int(change), side=side)
        else:
            msg.update(price_dollars=_price_str(price), delta_fp=_count_str(change), side=side)
            msg["ts_ms"] = ts_ms
        return TapeEvent(Channel.ORDERBOOK_DELTA, "orderbook_delta", ticker, msg)
