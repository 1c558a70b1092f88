"""Server replies to commands: `subscribed`, `unsubscribed`, `ok`, `error`
(docs/protocol.md sections 4 and 5).

Owns the reply models. `ok` has three shapes under one type: the market set after
an `update_subscription`, the cfb / pyth filter after an index update, and the
`list_subscriptions` answer whose `msg` is an ARRAY. `Ok.msg` is chosen by shape.
It knows nothing of which command a reply answers; the engine matches `id`s.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Discriminator, Tag, ValidationError, model_validator
from pydantic_core import InitErrorDetails

from schemas.messages.base import MessageBase, WireModel

__all__ = [
    "Error",
    "ErrorMsg",
    "Ok",
    "OkIndexIdsMsg",
    "OkMarketsMsg",
    "OkPayload",
    "OkUnderlyingsMsg",
    "Subscribed",
    "SubscribedMsg",
    "SubscriptionInfo",
    "Unsubscribed",
]


class SubscribedMsg(WireModel):
    """The channel and server-assigned sid (>= 1) of a new subscription."""

    channel: str
    sid: int


class Subscribed(MessageBase):
    """`subscribed`: one per channel of a `subscribe`; the sid is in `msg`, no seq."""

    type: Literal["subscribed"]
    msg: SubscribedMsg


class Unsubscribed(MessageBase):
    """`unsubscribed`: has no `msg`; top-level `sid` and `seq` are required by the spec.

    Also sent unprompted by the server: the subscription has ended (behaviour 8).
    """

    type: Literal["unsubscribed"]
    sid: int
    seq: int


class SubscriptionInfo(WireModel):
    """One active subscription in a `list_subscriptions` reply."""

    channel: str
    sid: int


class OkMarketsMsg(WireModel):
    """The full market set after an update (absent with `skip_ticker_ack`)."""

    market_tickers: tuple[str, ...] | None = None
    market_ids: tuple[str, ...] | None = None


class OkIndexIdsMsg(WireModel):
    """The cfbenchmarks filter after an update (`["all"]` in all-mode)."""

    index_ids: tuple[str, ...]


class OkUnderlyingsMsg(WireModel):
    """The pyth filter after an update (`["all"]` in all-mode)."""

    underlying_tickers: tuple[str, ...]


def _ok_shape(payload: Any) -> str:
    # Called with the raw payload when validating and with the model when serialising.
    if isinstance(payload, list | tuple):
        return "<subscriptions>"
    if isinstance(payload, OkIndexIdsMsg) or (isinstance(payload, dict) and "index_ids" in payload):
        return "<index_ids>"
    if isinstance(payload, OkUnderlyingsMsg) or (
        isinstance(payload, dict) and "underlying_tickers" in payload
    ):
        return "<underlying_tickers>"
    return "<markets>"


#: The payload of `ok`, by shape.
OkPayload = Annotated[
    Annotated[tuple[SubscriptionInfo, ...], Tag("<subscriptions>")]
    | Annotated[OkIndexIdsMsg, Tag("<index_ids>")]
    | Annotated[OkUnderlyingsMsg, Tag("<underlying_tickers>")]
    | Annotated[OkMarketsMsg, Tag("<markets>")],
    Discriminator(_ok_shape),
]


class Ok(MessageBase):
    """`ok`: the reply to `update_subscription` or `list_subscriptions`.

    `msg` is a tuple of `SubscriptionInfo` for `list_subscriptions`, an
    `OkIndexIdsMsg` / `OkUnderlyingsMsg` for cfb / pyth updates (which require sid
    and seq), else an `OkMarketsMsg`.
    """

    type: Literal["ok"]
    msg: OkPayload | None = None

    @model_validator(mode="after")
    def _filter_replies_carry_sid_and_seq(self) -> Self:
        if isinstance(self.msg, OkIndexIdsMsg | OkUnderlyingsMsg):
            missing = [
                InitErrorDetails(type="missing", loc=(name,), input=None)
                for name in ("sid", "seq")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValidationError.from_exception_data("ok", missing)
        return self


class ErrorMsg(WireModel):
    """An error code (docs/protocol.md section 5) and its name; the markets it concerns."""

    code: int
    msg: str
    market_ticker: str | None = None
    market_tickers: tuple[str, ...] | None = None


class Error(MessageBase):
    """`error`: `sid` when subscription-scoped, `seq` on scoped errors of sequenced channels.

    Codes 10 and 25 are terminal: the subscription has ended (behaviour 18).
    """

    type: Literal["error"]
    msg: ErrorMsg
