"""Market and event lifecycle: the `market_lifecycle_v2`, `multivariate_market_lifecycle`
and legacy `multivariate` channels (docs/protocol.md sections 8.8, 8.9 and 8.15).

Owns the models of `market_lifecycle_v2` (both payload schemas: the lifecycle
events, and `metadata_updated` which shares the type), `multivariate_market_lifecycle`,
`event_lifecycle`, `event_fee_update` and the legacy `multivariate_lookup`. These
types are rare; clarity wins over speed here. Open-ended enums (`event_type`,
`result`, `price_level_structure`, fee types, strike types) are plain strings: Kalshi
adds values (the `center_*` variants), and a new value must not make a frame unreadable.
It knows nothing of which channel a sid belongs to.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag

from schemas.messages.base import Dollars, EpochS, MessageBase, Number, Side, WireModel

__all__ = [
    "AdditionalMetadata",
    "EventFeeUpdate",
    "EventFeeUpdateMsg",
    "EventLifecycle",
    "EventLifecycleMsg",
    "MarketLifecycleMsg",
    "MarketLifecyclePayload",
    "MarketLifecycleV2",
    "MarketMetadataUpdatedMsg",
    "MultivariateLookup",
    "MultivariateLookupMsg",
    "MultivariateMarketLifecycle",
    "PriceRange",
    "SelectedMarket",
]


class PriceRange(WireModel):
    """A tick band: prices from `start` to `end` move in steps of `step` (dollars)."""

    start: Dollars
    end: Dollars
    step: Dollars


class AdditionalMetadata(WireModel):
    """Descriptive fields sent with a `created` lifecycle event."""

    name: str
    title: str
    yes_sub_title: str
    no_sub_title: str
    rules_primary: str
    rules_secondary: str
    can_close_early: bool
    event_ticker: str
    # A lifecycle `*_ts`, so seconds like open_ts / close_ts (docs/protocol.md section 7).
    expected_expiration_ts: EpochS
    strike_type: str | None = None
    # JSON numbers on the wire; kept exact (see schemas.messages.base).
    floor_strike: Number | None = None
    cap_strike: Number | None = None
    custom_strike: dict[str, Any] | None = None


class MarketLifecycleMsg(WireModel):
    """A market lifecycle event: created, activated, deactivated, close_date_updated,
    determined, settled, price_level_structure_updated.

    Which optional fields are present depends on `event_type` (docs/protocol.md section 8.8 table).
    """

    market_ticker: str
    event_type: str
    exchange_index: int | None = None
    open_ts: EpochS | None = None
    close_ts: EpochS | None = None
    determination_ts: EpochS | None = None
    result: str | None = None
    settlement_value: Dollars | None = None
    settled_ts: EpochS | None = None
    is_deactivated: bool | None = None
    additional_metadata: AdditionalMetadata | None = None
    price_level_structure: str | None = None
    price_ranges: tuple[PriceRange, ...] | None = None


class MarketMetadataUpdatedMsg(WireModel):
    """The `metadata_updated` event: a separate payload schema under the same type."""

    market_ticker: str
    event_type: Literal["metadata_updated"]
    strike_type: str | None = None
    floor_strike: Number | None = None
    cap_strike: Number | None = None
    custom_strike: dict[str, Any] | None = None
    yes_sub_title: str | None = None


def _lifecycle_schema(payload: Any) -> str:
    # Called with the raw payload when validating and with the model when serialising.
    if isinstance(payload, dict):
        event_type = payload.get("event_type")
    else:
        event_type = getattr(payload, "event_type", None)
    return "<metadata_updated>" if event_type == "metadata_updated" else "<lifecycle>"


#: Either lifecycle payload, chosen by `event_type`.
MarketLifecyclePayload = Annotated[
    Annotated[MarketLifecycleMsg, Tag("<lifecycle>")]
    | Annotated[MarketMetadataUpdatedMsg, Tag("<metadata_updated>")],
    Discriminator(_lifecycle_schema),
]


class MarketLifecycleV2(MessageBase):
    """`market_lifecycle_v2`: seq required by the spec."""

    type: Literal["market_lifecycle_v2"]
    msg: MarketLifecyclePayload


class MultivariateMarketLifecycle(MessageBase):
    """`multivariate_market_lifecycle`: the lifecycle payload, for MVE markets only."""

    type: Literal["multivariate_market_lifecycle"]
    msg: MarketLifecyclePayload


class EventLifecycleMsg(WireModel):
    """An event was created (docs/protocol.md section 8.8)."""

    event_ticker: str
    exchange_index: int
    title: str
    subtitle: str
    collateral_return_type: str  # MECNET / DIRECNET / ""
    series_ticker: str
    strike_date: EpochS | None = None
    strike_period: str | None = None


class EventLifecycle(MessageBase):
    """`event_lifecycle`: rides both lifecycle channels; the sid's ack tells which."""

    type: Literal["event_lifecycle"]
    msg: EventLifecycleMsg


class EventFeeUpdateMsg(WireModel):
    """A fee override of an event changed.

    Both overrides are required keys; null means the override was cleared.
    """

    event_ticker: str
    fee_type_override: str | None
    fee_multiplier_override: Number | None


class EventFeeUpdate(MessageBase):
    """`event_fee_update`: on `market_lifecycle_v2` only."""

    type: Literal["event_fee_update"]
    msg: EventFeeUpdateMsg


class SelectedMarket(WireModel):
    """One leg of a multivariate lookup."""

    event_ticker: str
    market_ticker: str
    side: Side


class MultivariateLookupMsg(WireModel):
    """A multivariate combination resolved to its market (legacy channel `multivariate`)."""

    collection_ticker: str
    event_ticker: str
    market_ticker: str
    selected_markets: tuple[SelectedMarket, ...]


class MultivariateLookup(MessageBase):
    """`multivariate_lookup`: removed from the spec, present in older captures (no seq)."""

    type: Literal["multivariate_lookup"]
    msg: MultivariateLookupMsg
