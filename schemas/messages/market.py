"""Public market data: `orderbook_snapshot`, `orderbook_delta`, `ticker`, `trade`.

Owns the payload and envelope models of the `orderbook_delta`, `ticker` and
`trade` channels (docs/protocol.md section 8.1-8.3) and their legacy integer-cent forms
("Legacy field forms"). These are the hot types (about 98% of frames): everything
here validates in pydantic-core on the current form; the legacy conversion runs
only for frames that fail the current form. It knows nothing of books or sequencing.

Fields that the legacy generation predates (market ids, clocks, ms timestamps,
sizes) are required but nullable: a current frame must carry them, and a legacy
frame gets None.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import Field

from schemas.messages.base import (
    BookSide,
    Contracts,
    Dollars,
    EpochMs,
    EpochS,
    Level,
    MessageBase,
    Rfc3339,
    Side,
    WireModel,
)
from schemas.messages.legacy import (
    LegacyForm,
    fill_missing,
    legacy_count,
    legacy_dollars,
    legacy_levels,
    outcome_of,
    rename_legacy,
)

__all__ = [
    "OrderbookDelta",
    "OrderbookDeltaMsg",
    "OrderbookSnapshot",
    "OrderbookSnapshotMsg",
    "Ticker",
    "TickerMsg",
    "Trade",
    "TradeMsg",
]


# --- orderbook_snapshot -------------------------------------------------------------------


class OrderbookSnapshotMsg(WireModel):
    """Full bid ladders of one market (docs/protocol.md section 8.1).

    A side with no levels has its key absent on the wire (behaviour 20): it becomes
    an empty tuple here. Levels are `(price_dollars, count)`, in wire order
    (ascending in the spec example). `clock` and `market_id` are None only on
    legacy frames.
    """

    market_ticker: str
    market_id: str | None
    clock: int | None
    yes_dollars_fp: tuple[Level, ...] = ()
    no_dollars_fp: tuple[Level, ...] = ()
    # Both ladders are optional, so a legacy snapshot carrying ids and a clock would
    # pass as a current one with an empty book. These guards make a legacy `yes` /
    # `no` array fail the current form (in pydantic-core, at no cost) so that the
    # legacy conversion runs. They are always None on a parsed model.
    yes: None = Field(default=None, exclude=True, repr=False)
    no: None = Field(default=None, exclude=True, repr=False)


def _snapshot_from_legacy(payload: dict[str, Any]) -> dict[str, Any]:
    for legacy, current in (("yes", "yes_dollars_fp"), ("no", "no_dollars_fp")):
        rename_legacy(payload, legacy, current, legacy_levels)
        # A frame with both forms: the current ladder counts, the legacy copy is dropped.
        payload.pop(legacy, None)
    fill_missing(payload, ("market_id", "clock"))
    return payload


class OrderbookSnapshot(MessageBase):
    """`orderbook_snapshot`: seq required by the spec; `id` set when answering `get_snapshot`."""

    type: Literal["orderbook_snapshot"]
    msg: Annotated[OrderbookSnapshotMsg, LegacyForm(("yes", "no"), _snapshot_from_legacy)]


# --- orderbook_delta ----------------------------------------------------------------------


class OrderbookDeltaMsg(WireModel):
    """A change of resting quantity at one bid level (docs/protocol.md section 8.1).

    `delta_fp` is signed and never an absolute quantity. `ts` is an RFC3339 string
    here (deprecated), unlike the int seconds of ticker and trade.
    """

    market_ticker: str
    market_id: str | None
    clock: int | None
    price_dollars: Dollars
    delta_fp: Contracts
    side: Side
    client_order_id: str | None = None
    subaccount: int | None = None
    ts: Rfc3339 | None = None
    ts_ms: EpochMs | None = None


def _delta_from_legacy(payload: dict[str, Any]) -> dict[str, Any]:
    rename_legacy(payload, "price", "price_dollars", legacy_dollars)
    rename_legacy(payload, "delta", "delta_fp", legacy_count)
    fill_missing(payload, ("market_id", "clock"))
    return payload


class OrderbookDelta(MessageBase):
    """`orderbook_delta`: seq required by the spec."""

    type: Literal["orderbook_delta"]
    msg: Annotated[OrderbookDeltaMsg, LegacyForm(("price", "delta"), _delta_from_legacy)]


# --- ticker -------------------------------------------------------------------------------


class TickerMsg(WireModel):
    """Market summary, sent whenever a field changes (docs/protocol.md section 8.2).

    `dollar_volume` and `dollar_open_interest` are whole signed dollars (JSON ints).
    """

    market_ticker: str
    market_id: str | None
    price_dollars: Dollars
    yes_bid_dollars: Dollars
    yes_ask_dollars: Dollars
    volume_fp: Contracts
    open_interest_fp: Contracts
    dollar_volume: int
    dollar_open_interest: int
    yes_bid_size_fp: Contracts | None
    yes_ask_size_fp: Contracts | None
    last_trade_size_fp: Contracts | None
    ts_ms: EpochMs | None
    # `ts` and `time` are marked required but deprecated (docs/protocol.md sections 8.2 and 7):
    # optional here so frames keep parsing once Kalshi drops them.
    ts: EpochS | None = None
    time: Rfc3339 | None = None


_TICKER_LEGACY: Final = (
    ("price", "price_dollars", legacy_dollars),
    ("yes_bid", "yes_bid_dollars", legacy_dollars),
    ("yes_ask", "yes_ask_dollars", legacy_dollars),
    ("volume", "volume_fp", legacy_count),
    ("open_interest", "open_interest_fp", legacy_count),
)


def _ticker_from_legacy(payload: dict[str, Any]) -> dict[str, Any]:
    for legacy, current, convert in _TICKER_LEGACY:
        rename_legacy(payload, legacy, current, convert)
    fill_missing(
        payload,
        ("market_id", "yes_bid_size_fp", "yes_ask_size_fp", "last_trade_size_fp", "ts_ms"),
    )
    return payload


class Ticker(MessageBase):
    """`ticker`: no seq."""

    type: Literal["ticker"]
    msg: Annotated[
        TickerMsg, LegacyForm((name for name, _, _ in _TICKER_LEGACY), _ticker_from_legacy)
    ]


# --- trade --------------------------------------------------------------------------------


class TradeMsg(WireModel):
    """A public trade (docs/protocol.md section 8.3). `ts` is int seconds, `ts_ms` int ms."""

    trade_id: str
    market_ticker: str
    yes_price_dollars: Dollars
    no_price_dollars: Dollars
    count_fp: Contracts
    taker_outcome_side: Side
    taker_book_side: BookSide
    is_block_trade: bool | None
    ts: EpochS
    ts_ms: EpochMs | None
    # Deprecated but still marked required (docs/protocol.md section 7): optional here.
    taker_side: Side | None = None


def _trade_from_legacy(payload: dict[str, Any]) -> dict[str, Any]:
    rename_legacy(payload, "yes_price", "yes_price_dollars", legacy_dollars)
    rename_legacy(payload, "no_price", "no_price_dollars", legacy_dollars)
    rename_legacy(payload, "count", "count_fp", legacy_count)
    # The taker's outcome is the side it bought (docs/protocol.md section 7).
    sides = outcome_of(payload.get("taker_side"))
    if sides is not None:
        payload.setdefault("taker_outcome_side", sides[0])
        payload.setdefault("taker_book_side", sides[1])
    fill_missing(payload, ("is_block_trade", "ts_ms"))
    return payload


class Trade(MessageBase):
    """`trade`: seq required by the spec."""

    type: Literal["trade"]
    msg: Annotated[TradeMsg, LegacyForm(("yes_price", "no_price", "count"), _trade_from_legacy)]
