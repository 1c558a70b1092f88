"""The tape: where the exchange's events come from, as the connection layer sees it.

This module owns the interface between a source of market events and the protocol
layer: `TapeEvent` (one payload, already encoded once, fanned out to every matching
subscription) and `Tape` (what the protocol asks of a source: markets, books,
ticker state, index lists, and the events due by a given time). The synthetic
market (`replay.server.market`) is one tape; a recorded capture
(`replay.server.capture_tape`) is another, and an `AsyncTape`: fed by a task of
its own, paced or not, with the close events that reproduce recorded disconnects
(`close_event`, on the pseudo channel `_session`). It knows nothing of sockets,
subscriptions or sids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from schemas.channels import Channel
from schemas.envelope import encode_json

__all__ = ["CLOSE_CHANNEL", "AsyncTape", "BookView", "Tape", "TapeEvent", "close_event"]

#: The pseudo channel of a close event: no subscription routes it; the pump acts on it.
CLOSE_CHANNEL = Channel.SESSION


_TYPE_BYTES: dict[str, bytes] = {}


def _type_bytes(type_: str) -> bytes:
    cached = _TYPE_BYTES.get(type_)
    if cached is None:
        cached = _TYPE_BYTES[type_] = type_.encode()
    return cached


class TapeEvent:
    """One exchange event: a payload for one channel, encoded once.

    Attributes:
        channel: the wire channel it is routed on (`event_lifecycle` rides two).
        type: the wire message type.
        market: the market ticker it is about, for market filters (None if none).
        key: the index id, underlying ticker or RFQ id for index and shard filters.
        payload: the `msg` object as a dict (kept for per-subscription variants).
        msg: `payload` encoded as compact JSON bytes, or the exact bytes given (a
            recorded frame's `msg`, served byte for byte).
        binary: serve its frames as binary WebSocket messages (a frame recorded as
            one); False, the default, serves them as text, as Kalshi sends them.
    """

    __slots__ = (
        "binary",
        "channel",
        "key",
        "market",
        "msg",
        "payload",
        "type",
        "type_b",
        "yes_price_msg",
    )

    def __init__(
        self,
        channel: str,
        type_: str,
        market: str | None,
        payload: dict[str, Any],
        key: str | None = None,
        *,
        msg: bytes | None = None,
        binary: bool = False,
    ) -> None:
        self.channel = channel
        self.type = type_
        self.type_b = _type_bytes(type_)
        self.market = market
        self.key = key
        self.payload = payload
        self.msg = encode_json(payload) if msg is None else msg
        self.binary = binary
        #: cache of the `use_yes_price` form of a NO-side delta, built on first use.
        self.yes_price_msg: bytes | None = None

    def __repr__(self) -> str:
        return f"TapeEvent({self.channel}, {self.type}, {self.market}, {self.msg!r})"


def close_event(code: int | None, reason: str) -> TapeEvent:
    """A close event: the server closes every connection with `code` (None: drops the
    TCP connection without a close frame, as a 1006 was) between the events around it."""
    return TapeEvent(CLOSE_CHANNEL, "close", None, {"code": code, "reason": reason})


@dataclass(frozen=True)
class BookView:
    """A market's book at one instant, in current wire form.

    Attributes:
        market_ticker, market_id: the market.
        clock: exchange clock of the newest change included (0: none yet).
        yes, no: `(price_dollars, count_fp)` bid levels, ascending by price.
    """

    market_ticker: str
    market_id: str
    clock: int
    yes: tuple[tuple[str, str], ...]
    no: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, Any]:
        """`{"market_ticker", "clock", "yes": {price: count}, "no": {...}}` for comparisons."""
        return {
            "market_ticker": self.market_ticker,
            "clock": self.clock,
            "yes": dict(self.yes),
            "no": dict(self.no),
        }


class Tape(Protocol):
    """What the protocol layer needs from a source of exchange events.

    Every method is synchronous and does no I/O; `pull` is called by the server's
    pacing loop with the seconds elapsed since the tape started and returns the
    events due by then, in order.
    """

    def market_tickers(self) -> Sequence[str]:
        """Tickers of every market the tape knows (active or not)."""
        ...

    def has_market(self, ticker: str) -> bool:
        """True when the tape knows this market."""
        ...

    def ticker_of_id(self, market_id: str) -> str | None:
        """The ticker of a market id (the `market_id(s)` selectors), or None."""
        ...

    def book(self, ticker: str) -> BookView | None:
        """The market's book now (the truth), or None for an unknown market."""
        ...

    def books(self) -> Iterator[BookView]:
        """Every market's book now."""
        ...

    def ticker_payload(self, ticker: str) -> dict[str, Any] | None:
        """A `ticker` msg with the market's current state (send_initial_snapshot)."""
        ...

    def index_ids(self, channel: str) -> Sequence[str]:
        """Index ids (cfbenchmarks channels) or underlying tickers (pyth) served."""
        ...

    def pull(self, elapsed_s: float) -> list[TapeEvent]:
        """Events due by `elapsed_s` seconds after start, not returned before."""
        ...


@runtime_checkable
class AsyncTape(Tape, Protocol):
    """A tape fed by a task of its own (a recorded capture), with a pacing choice.

    The server awaits `start()` when it starts and `stop()` when it stops. Before
    the first pull it waits for a subscription when `waits_for_subscriber` is
    True, so a client that connects after the server starts misses nothing. A
    paced tape is pulled by time (`pull`); an unpaced one (`paced` False) is drained
    with `take(limit)` only while every connection's send queue has room, so no
    reader is ever too slow. In both, a close event (`close_event`) is always the
    last event of a batch: the server acts on it before it pulls again.
    """

    paced: bool
    waits_for_subscriber: bool

    async def start(self) -> None:
        """Start feeding (called once the server's event loop runs)."""
        ...

    async def stop(self) -> None:
        """Stop feeding and release what the feed holds."""
        ...

    def take(self, limit: int) -> list[TapeEvent]:
        """The next events, about `limit` of them at most, whatever their time."""
        ...
