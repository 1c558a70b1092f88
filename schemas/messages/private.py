"""Private account channels: `fill`, `user_orders`, `market_positions`, `order_group_updates`.

Owns the models of the types `fill`, `user_order` and `market_position` (singular
on the wire, behaviour 16) and `order_group_updates` (docs/protocol.md sections 8.4-8.7), and the
legacy integer-cent forms of fill and user_order. Deprecated direction fields
(`side`, `action`, `purchased_side`, `is_yes`) are marked required by the spec but
are going away (not before 2026-05-14, section 7): they are optional here so that
frames keep parsing once Kalshi drops them. It knows nothing of accounts or books.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from schemas.messages.base import (
    BookSide,
    Contracts,
    Dollars,
    EpochMs,
    EpochS,
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
    outcome_of,
    rename_legacy,
)

__all__ = [
    "Fill",
    "FillMsg",
    "MarketPosition",
    "MarketPositionMsg",
    "OrderGroupUpdateMsg",
    "OrderGroupUpdates",
    "UserOrder",
    "UserOrderMsg",
]


def _derive_sides(payload: dict[str, Any], outcome_key: str, book_key: str) -> None:
    # Legacy frames carry only side + action; the canonical sides follow from them.
    sides = outcome_of(payload.get("side"), payload.get("action"))
    if sides is not None:
        payload.setdefault(outcome_key, sides[0])
        payload.setdefault(book_key, sides[1])


# --- fill ---------------------------------------------------------------------------------


class FillMsg(WireModel):
    """One of your orders traded (docs/protocol.md section 8.4). `ts` int seconds, `ts_ms` int ms.

    `exchange_index`, `ts_ms`, `fee_cost` and `post_position_fp` are None only on
    legacy frames, which predate them.
    """

    trade_id: str
    order_id: str
    market_ticker: str
    exchange_index: int | None
    is_taker: bool
    ts: EpochS
    ts_ms: EpochMs | None
    yes_price_dollars: Dollars
    count_fp: Contracts
    fee_cost: Dollars | None  # dollars with 6 dp, despite the name
    post_position_fp: Contracts | None
    outcome_side: Side
    book_side: BookSide
    client_order_id: str | None = None
    subaccount: int | None = None
    # Deprecated, see the module docstring.
    side: Side | None = None
    action: str | None = None
    purchased_side: Side | None = None


def _fill_from_legacy(payload: dict[str, Any]) -> dict[str, Any]:
    rename_legacy(payload, "yes_price", "yes_price_dollars", legacy_dollars)
    rename_legacy(payload, "count", "count_fp", legacy_count)
    # Legacy `post_position` is an integer count like `count`.
    rename_legacy(payload, "post_position", "post_position_fp", legacy_count)
    _derive_sides(payload, "outcome_side", "book_side")
    fill_missing(payload, ("exchange_index", "ts_ms", "fee_cost", "post_position_fp"))
    return payload


class Fill(MessageBase):
    """`fill`: no seq."""

    type: Literal["fill"]
    msg: Annotated[FillMsg, LegacyForm(("yes_price", "count", "post_position"), _fill_from_legacy)]


# --- user_order ---------------------------------------------------------------------------


class UserOrderMsg(WireModel):
    """The state of one of your orders (docs/protocol.md section 8.6). The market is `ticker`.

    `created_time` and `created_ts_ms` are nullable by the spec. `exchange_index`,
    the sides and the cost and fee amounts are None only on legacy frames.
    """

    order_id: str
    user_id: str
    ticker: str
    exchange_index: int | None
    status: str  # resting / canceled / executed / unknown
    outcome_side: Side | None
    book_side: BookSide | None
    yes_price_dollars: Dollars
    fill_count_fp: Contracts
    remaining_count_fp: Contracts
    initial_count_fp: Contracts
    taker_fill_cost_dollars: Dollars | None
    maker_fill_cost_dollars: Dollars | None
    taker_fees_dollars: Dollars | None
    maker_fees_dollars: Dollars | None
    client_order_id: str
    created_time: Rfc3339 | None
    created_ts_ms: EpochMs | None
    order_group_id: str | None = None
    self_trade_prevention_type: str | None = None
    last_update_time: Rfc3339 | None = None
    expiration_time: Rfc3339 | None = None
    expiration_ts_ms: EpochMs | None = None
    last_updated_ts_ms: EpochMs | None = None
    last_update_reason: str | None = None
    subaccount_number: int | None = None
    # Deprecated, see the module docstring.
    side: Side | None = None
    is_yes: bool | None = None


_MONEY_QUANTUM: Final = Decimal("0.000001")  # user_order costs and fees have 6 dp
_USER_ORDER_LEGACY: Final = (
    ("yes_price", "yes_price_dollars", legacy_dollars),
    ("fill_count", "fill_count_fp", legacy_count),
    ("remaining_count", "remaining_count_fp", legacy_count),
    ("initial_count", "initial_count_fp", legacy_count),
)
# Cost and fee amounts in cents, as the REST order object had them before the move
# to dollar strings; converted when a legacy frame carries them.
_USER_ORDER_LEGACY_MONEY: Final = (
    ("taker_fill_cost", "taker_fill_cost_dollars"),
    ("maker_fill_cost", "maker_fill_cost_dollars"),
    ("taker_fees", "taker_fees_dollars"),
    ("maker_fees", "maker_fees_dollars"),
)


def _money(value: Any, field: str) -> str:
    return legacy_dollars(value, field, _MONEY_QUANTUM)


def _user_order_from_legacy(payload: dict[str, Any]) -> dict[str, Any]:
    for legacy, current, convert in _USER_ORDER_LEGACY:
        rename_legacy(payload, legacy, current, convert)
    for legacy, current in _USER_ORDER_LEGACY_MONEY:
        rename_legacy(payload, legacy, current, _money)
    _derive_sides(payload, "outcome_side", "book_side")
    fill_missing(
        payload,
        (
            "exchange_index",
            "outcome_side",
            "book_side",
            *(current for _, current in _USER_ORDER_LEGACY_MONEY),
            "created_time",
            "created_ts_ms",
        ),
    )
    return payload


class UserOrder(MessageBase):
    """`user_order` (channel `user_orders`): no seq."""

    type: Literal["user_order"]
    msg: Annotated[
        UserOrderMsg,
        LegacyForm((name for name, _, _ in _USER_ORDER_LEGACY), _user_order_from_legacy),
    ]


# --- market_position ----------------------------------------------------------------------


class MarketPositionMsg(WireModel):
    """Your position in one market (docs/protocol.md section 8.5). `position_fp` is signed."""

    user_id: str
    market_ticker: str
    position_fp: Contracts
    position_cost_dollars: Dollars
    realized_pnl_dollars: Dollars
    fees_paid_dollars: Dollars
    position_fee_cost_dollars: Dollars
    volume_fp: Contracts
    subaccount: int | None = None


class MarketPosition(MessageBase):
    """`market_position` (channel `market_positions`): no seq."""

    type: Literal["market_position"]
    msg: MarketPositionMsg


# --- order_group_updates ------------------------------------------------------------------


class OrderGroupUpdateMsg(WireModel):
    """An order group changed (docs/protocol.md section 8.7). `ts_ms` is matching-engine time.

    `contracts_limit_fp` is present on `created` and `limit_updated` only.
    """

    event_type: str  # created / triggered / reset / deleted / limit_updated
    order_group_id: str
    ts_ms: EpochMs
    contracts_limit_fp: Contracts | None = None


class OrderGroupUpdates(MessageBase):
    """`order_group_updates`: seq required by the spec."""

    type: Literal["order_group_updates"]
    msg: OrderGroupUpdateMsg
