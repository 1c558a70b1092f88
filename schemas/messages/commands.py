"""Client commands: `{"id", "cmd", "params"}` (docs/protocol.md sections 4 and 6).

Owns the models of `subscribe`, `unsubscribe`, `update_subscription` and
`list_subscriptions` with every parameter of section 6. The models check shape and
the structural exclusivity rules of the spec (one market form, `sid` xor `sids`).
Rules that have their own error code and depend on values (unknown channel names:
8, shard ranges: 19-22, a market filter a channel requires: 14, missing index ids:
24...) are the simulated exchange's to answer, so they are not checked here.
Serialise a command with `model_dump_json(exclude_none=True)`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.messages.base import WireModel

__all__ = [
    "ListSubscriptions",
    "ListSubscriptionsParams",
    "Subscribe",
    "SubscribeParams",
    "Unsubscribe",
    "UnsubscribeParams",
    "UpdateAction",
    "UpdateSubscription",
    "UpdateSubscriptionParams",
]

NonEmptyStrs = Annotated[tuple[str, ...], Field(min_length=1)]

UpdateAction = Literal[
    "add_markets",
    "delete_markets",
    "get_snapshot",
    "subscribe_indices",
    "unsubscribe_indices",
    "indexlist",
    "subscribe_underlyings",
    "unsubscribe_underlyings",
    "underlying_list",
]


def _exclusive(model: WireModel, groups: tuple[tuple[str, ...], ...], title: str) -> None:
    """Raise a field-located error when fields of two different groups are both set."""
    chosen: str | None = None
    for group in groups:
        for name in group:
            if getattr(model, name) is None:
                continue
            if chosen is None:
                chosen = name
                break
            error = PydanticCustomError(
                "mutually_exclusive",
                "{field} cannot be given together with {other}",
                {"field": name, "other": chosen},
            )
            raise ValidationError.from_exception_data(
                title, [InitErrorDetails(type=error, loc=(name,), input=getattr(model, name))]
            )


# A market is named by exactly one form: ticker, tickers, id or ids (ids on ticker only).
_MARKET_FORMS = (("market_ticker",), ("market_tickers",), ("market_id",), ("market_ids",))


class _MarketSelector(WireModel):
    market_ticker: str | None = None
    market_tickers: NonEmptyStrs | None = None
    market_id: str | None = None
    market_ids: NonEmptyStrs | None = None


class SubscribeParams(_MarketSelector):
    """Parameters of `subscribe`: the channels, then filters per channel (section 6).

    Booleans left None were not sent (the server default applies).
    """

    channels: NonEmptyStrs
    send_initial_snapshot: bool | None = None
    skip_ticker_ack: bool | None = None
    use_yes_price: bool | None = None
    user_filter: Literal["", "self"] | None = None
    shard_factor: int | None = None
    shard_key: int | None = None
    index_ids: NonEmptyStrs | None = None
    underlying_tickers: NonEmptyStrs | None = None

    @model_validator(mode="after")
    def _one_market_form(self) -> Self:
        _exclusive(self, _MARKET_FORMS, "subscribe")
        return self


class Subscribe(WireModel):
    """`subscribe`: the server answers one `subscribed` per channel, each with this `id`."""

    cmd: Literal["subscribe"]
    id: int | None = None
    params: SubscribeParams


class UnsubscribeParams(WireModel):
    """Parameters of `unsubscribe`."""

    sids: Annotated[tuple[int, ...], Field(min_length=1)]


class Unsubscribe(WireModel):
    """`unsubscribe`: cancel subscriptions."""

    cmd: Literal["unsubscribe"]
    id: int | None = None
    params: UnsubscribeParams


class UpdateSubscriptionParams(_MarketSelector):
    """Parameters of `update_subscription`: one subscription, an action, its arguments.

    The subscription is `sid` or a one-element `sids`, never both (error 12);
    `subscription_sid` gives it either way.
    """

    action: UpdateAction
    sid: int | None = None
    sids: Annotated[tuple[int, ...], Field(min_length=1, max_length=1)] | None = None
    send_initial_snapshot: bool | None = None
    index_ids: NonEmptyStrs | None = None
    underlying_tickers: NonEmptyStrs | None = None

    @model_validator(mode="after")
    def _one_subscription(self) -> Self:
        if self.sid is None and self.sids is None:
            raise ValidationError.from_exception_data(
                "update_subscription",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "subscription_required",
                            "Field required: give sid or sids (one element)",
                        ),
                        loc=("sid",),
                        input=None,
                    )
                ],
            )
        _exclusive(self, (("sid",), ("sids",)), "update_subscription")
        _exclusive(self, _MARKET_FORMS, "update_subscription")
        return self

    @property
    def subscription_sid(self) -> int:
        """The one sid this update targets, whichever form carried it."""
        if self.sid is not None:
            return self.sid
        assert self.sids is not None  # guaranteed by validation
        return self.sids[0]


class UpdateSubscription(WireModel):
    """`update_subscription`: mutate one subscription."""

    cmd: Literal["update_subscription"]
    id: int | None = None
    params: UpdateSubscriptionParams


class ListSubscriptionsParams(WireModel):
    """`list_subscriptions` takes no parameters; anything sent is kept as extras."""


class ListSubscriptions(WireModel):
    """`list_subscriptions`: the reply is an `ok` whose `msg` is an array."""

    cmd: Literal["list_subscriptions"]
    id: int | None = None
    params: ListSubscriptionsParams | None = None
