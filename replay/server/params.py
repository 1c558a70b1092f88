"""The vocabulary and the parameter rules of client commands (docs/protocol.md sections 4 to 6).

This module owns the error codes and their exact names, which channels exist and
which need auth or take market filters, and how `params` values are validated:
market selectors (ticker and id forms, mutually exclusive), boolean flags, id
lists, communications sharding. A rule that fails raises `Reject` with the spec's
code; `replay.server.protocol` turns it into an `error` frame. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, Final

from replay.server.tape import Tape
from schemas.channels import WIRE_CHANNELS, Channel

__all__ = [
    "AUTH_CHANNELS",
    "CFB_CHANNELS",
    "ERROR_NAMES",
    "FILTERED_CHANNELS",
    "KNOWN_PARAMS",
    "SUBSCRIBABLE",
    "Reject",
    "flag",
    "is_int",
    "market_selectors",
    "shard_params",
    "str_list",
]

#: Error code -> the spec's name, used verbatim as `msg.msg` (docs/protocol.md section 5).
ERROR_NAMES: Final[dict[int, str]] = {
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Subscription IDs required",
    5: "Unknown command",
    7: "Unknown subscription ID",
    8: "Unknown channel name",
    9: "Authentication required",
    10: "Channel error",
    11: "Invalid parameter",
    12: "Exactly one subscription ID is required",
    13: "Unsupported action",
    14: "Market Ticker required",
    15: "Action required",
    19: "shard_factor must be > 0",
    20: "shard_factor is required when shard_key is set",
    21: "shard_key must be >= 0 and < shard_factor",
    22: "shard_factor must be <= 100",
    24: "Index IDs required",
    25: "Subscription buffer overflow",
    26: "Subscription market limit exceeded",
    28: "Underlying tickers required",
}

#: The 13 channels of the current spec; the legacy `multivariate` is gone (error 8).
SUBSCRIBABLE: Final = frozenset(WIRE_CHANNELS) - {Channel.MULTIVARIATE}

#: Channels that need an authenticated connection (docs/protocol.md section 6).
AUTH_CHANNELS: Final = frozenset(
    {
        Channel.ORDERBOOK_DELTA,
        Channel.FILL,
        Channel.MARKET_POSITIONS,
        Channel.COMMUNICATIONS,
        Channel.ORDER_GROUP_UPDATES,
        Channel.USER_ORDERS,
        Channel.CFBENCHMARKS_VALUE,
        Channel.CFBENCHMARKS_VALUE_5HZ,
        Channel.PYTH_VALUE,
    }
)
FILTERED_CHANNELS: Final = frozenset(
    {
        Channel.ORDERBOOK_DELTA,
        Channel.TICKER,
        Channel.TRADE,
        Channel.FILL,
        Channel.USER_ORDERS,
        Channel.MARKET_POSITIONS,
    }
)
CFB_CHANNELS: Final = frozenset({Channel.CFBENCHMARKS_VALUE, Channel.CFBENCHMARKS_VALUE_5HZ})
KNOWN_PARAMS: Final = frozenset(
    {
        "channels",
        "market_ticker",
        "market_tickers",
        "market_id",
        "market_ids",
        "send_initial_snapshot",
        "skip_ticker_ack",
        "use_yes_price",
        "user_filter",
        "shard_factor",
        "shard_key",
        "index_ids",
        "underlying_tickers",
        # update_subscription
        "sid",
        "sids",
        "action",
    }
)


class Reject(Exception):
    """A command (or one channel of it) is refused with an error code."""

    def __init__(self, code: int, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise Reject(11)
    return value


def market_selectors(
    params: dict[str, Any], tape: Tape, *, ids_allowed: bool, unknown_markets: str
) -> list[str] | None:
    """The market selectors of `params` as tickers (None: none given)."""
    has_one, has_many = "market_ticker" in params, "market_tickers" in params
    has_id, has_ids = "market_id" in params, "market_ids" in params
    if (
        (has_one and has_many)
        or (has_id and has_ids)
        or ((has_one or has_many) and (has_id or has_ids))
    ):
        raise Reject(11)
    tickers: list[str] | None = None
    if has_one:
        if not isinstance(params["market_ticker"], str) or not params["market_ticker"]:
            raise Reject(11)
        tickers = [params["market_ticker"]]
    elif has_many:
        tickers = list(dict.fromkeys(str_list(params["market_tickers"])))
    elif has_id or has_ids:
        if not ids_allowed:
            raise Reject(11)
        ids = [params["market_id"]] if has_id else str_list(params["market_ids"])
        if not all(isinstance(i, str) for i in ids):
            raise Reject(11)
        tickers = []
        for market_id in ids:
            ticker = tape.ticker_of_id(market_id)
            if ticker is None:
                raise Reject(11, market_id=market_id)
            tickers.append(ticker)
    if tickers is not None and unknown_markets == "error":
        unknown = [t for t in tickers if not tape.has_market(t)]
        if unknown:
            raise Reject(11, market_tickers=unknown)
    return tickers


def flag(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise Reject(11)
    return value


def shard_params(params: dict[str, Any]) -> tuple[int, int] | None:
    """`shard_factor` / `shard_key` of a communications subscribe (errors 19 to 22)."""
    factor, key = params.get("shard_factor"), params.get("shard_key")
    if factor is None:
        if key is not None:
            raise Reject(20)
        return None
    if not is_int(factor) or (key is not None and not is_int(key)):
        raise Reject(11)
    if factor <= 0:
        raise Reject(19)
    if factor > 100:
        raise Reject(22)
    key = 0 if key is None else key
    if not 0 <= key < factor:
        raise Reject(21)
    return factor, key
