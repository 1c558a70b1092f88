"""The fixed vocabulary of the wire: channels, message types and which carry `seq`.

This module owns the names (docs/protocol.md sections 4, 6 and 8). It knows nothing of
how frames are read, stored or interpreted. Everything that must agree on a name
(the models, the engine, the partition paths, the simulated exchange, the SQL views)
takes it from here.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALL_CHANNELS",
    "BOOK_CHANNELS",
    "CHANNEL_TYPES",
    "COMMANDS",
    "COMMUNICATIONS_TYPES",
    "CONTROL_TYPES",
    "MARKET_FILTER_CHANNELS",
    "MARKET_FILTER_REQUIRED",
    "PRIVATE_CHANNELS",
    "PSEUDO_CHANNELS",
    "SEQUENCED_CHANNELS",
    "SEQUENCED_TYPES",
    "TYPE_TO_CHANNEL",
    "WIRE_CHANNELS",
    "Channel",
    "channel_of_type",
]


class Channel:
    """Channel names as constants (the wire names, plus three pseudo channels)."""

    ORDERBOOK_DELTA: Final = "orderbook_delta"
    TICKER: Final = "ticker"
    TRADE: Final = "trade"
    FILL: Final = "fill"
    MARKET_POSITIONS: Final = "market_positions"
    MARKET_LIFECYCLE_V2: Final = "market_lifecycle_v2"
    MULTIVARIATE_MARKET_LIFECYCLE: Final = "multivariate_market_lifecycle"
    COMMUNICATIONS: Final = "communications"
    ORDER_GROUP_UPDATES: Final = "order_group_updates"
    USER_ORDERS: Final = "user_orders"
    CFBENCHMARKS_VALUE: Final = "cfbenchmarks_value"
    CFBENCHMARKS_VALUE_5HZ: Final = "cfbenchmarks_value_5hz"
    PYTH_VALUE: Final = "pyth_value"
    MULTIVARIATE: Final = "multivariate"  # legacy: removed from the spec, kept for old captures

    CONTROL: Final = "_control"  # subscribed / unsubscribed / ok / error, and every command we send
    SESSION: Final = "_session"  # connection lifecycle events written by the recorder
    UNKNOWN: Final = "_unknown"  # anything that does not parse or has no known channel
    CHECKPOINT: Final = "_checkpoint"  # derived book checkpoints, an index for replay seek


#: The 13 channels of the current spec, in the order of docs/protocol.md section 6, then the
#: legacy one.
WIRE_CHANNELS: Final[tuple[str, ...]] = (
    Channel.ORDERBOOK_DELTA,
    Channel.TICKER,
    Channel.TRADE,
    Channel.FILL,
    Channel.MARKET_POSITIONS,
    Channel.MARKET_LIFECYCLE_V2,
    Channel.MULTIVARIATE_MARKET_LIFECYCLE,
    Channel.COMMUNICATIONS,
    Channel.ORDER_GROUP_UPDATES,
    Channel.USER_ORDERS,
    Channel.CFBENCHMARKS_VALUE,
    Channel.CFBENCHMARKS_VALUE_5HZ,
    Channel.PYTH_VALUE,
    Channel.MULTIVARIATE,
)

PSEUDO_CHANNELS: Final[tuple[str, ...]] = (
    Channel.CONTROL,
    Channel.SESSION,
    Channel.UNKNOWN,
    Channel.CHECKPOINT,
)

#: Every value the `channel` column (and the `channel=` partition) may take.
ALL_CHANNELS: Final[frozenset[str]] = frozenset(WIRE_CHANNELS + PSEUDO_CHANNELS)

COMMUNICATIONS_TYPES: Final[tuple[str, ...]] = (
    "rfq_created",
    "rfq_deleted",
    "quote_created",
    "quote_accepted",
    "quote_executed",
    "rfq_batch_created",
    "rfq_batch_deleted",
    "batch_quote_created",
    "rfq_batch_best_quotes",
    "batch_quote_accepted",
    "rfq_batch_executed",
    "batch_quote_executed",
)

#: Server replies that are not data; they belong to the `_control` partition.
CONTROL_TYPES: Final[frozenset[str]] = frozenset({"subscribed", "unsubscribed", "ok", "error"})

#: Client commands (docs/protocol.md section 4); what we send is stored under `_control` too.
COMMANDS: Final[frozenset[str]] = frozenset(
    {"subscribe", "unsubscribe", "update_subscription", "list_subscriptions"}
)

#: Data message types each channel carries.
CHANNEL_TYPES: Final[dict[str, tuple[str, ...]]] = {
    Channel.ORDERBOOK_DELTA: ("orderbook_snapshot", "orderbook_delta"),
    Channel.TICKER: ("ticker",),
    Channel.TRADE: ("trade",),
    Channel.FILL: ("fill",),
    Channel.MARKET_POSITIONS: ("market_position",),  # singular on the wire
    Channel.MARKET_LIFECYCLE_V2: ("market_lifecycle_v2", "event_lifecycle", "event_fee_update"),
    Channel.MULTIVARIATE_MARKET_LIFECYCLE: ("multivariate_market_lifecycle", "event_lifecycle"),
    Channel.COMMUNICATIONS: COMMUNICATIONS_TYPES,
    Channel.ORDER_GROUP_UPDATES: ("order_group_updates",),
    Channel.USER_ORDERS: ("user_order",),  # singular on the wire
    Channel.CFBENCHMARKS_VALUE: ("cfbenchmarks_value", "cfbenchmarks_value_indexlist"),
    Channel.CFBENCHMARKS_VALUE_5HZ: (
        "cfbenchmarks_value_5hz",
        "cfbenchmarks_value_5hz_indexlist",
    ),
    Channel.PYTH_VALUE: ("pyth_value", "pyth_value_underlying_list"),
    Channel.MULTIVARIATE: ("multivariate_lookup",),
}


def _type_to_channel() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for channel, types in CHANNEL_TYPES.items():
        for type_ in types:
            # event_lifecycle rides two channels; the sid's `subscribed` ack decides which.
            # Without an ack the first listed (market_lifecycle_v2) is the fallback.
            mapping.setdefault(type_, channel)
    for type_ in CONTROL_TYPES | COMMANDS:
        mapping[type_] = Channel.CONTROL
    return mapping


#: Message type (or command name) -> channel. `event_lifecycle` maps to its first channel;
#: resolve by sid where an ack is known.
TYPE_TO_CHANNEL: Final[dict[str, str]] = _type_to_channel()

#: Channels whose data frames carry a required, per-subscription `seq`
#: (docs/protocol.md section 8.16).
SEQUENCED_CHANNELS: Final[frozenset[str]] = frozenset(
    {
        Channel.ORDERBOOK_DELTA,
        Channel.TRADE,
        Channel.MARKET_LIFECYCLE_V2,
        Channel.MULTIVARIATE_MARKET_LIFECYCLE,
        Channel.COMMUNICATIONS,
        Channel.ORDER_GROUP_UPDATES,
        Channel.CFBENCHMARKS_VALUE,
        Channel.CFBENCHMARKS_VALUE_5HZ,
        Channel.PYTH_VALUE,
    }
)

#: Message types that carry a required `seq`.
SEQUENCED_TYPES: Final[frozenset[str]] = frozenset(
    t for ch in SEQUENCED_CHANNELS for t in CHANNEL_TYPES[ch]
) | {"unsubscribed"}

#: Channels whose subscriptions maintain order books (a gap here must be resynced).
BOOK_CHANNELS: Final[frozenset[str]] = frozenset({Channel.ORDERBOOK_DELTA})

#: Channels that accept market filters, and the one that requires them (error 14).
MARKET_FILTER_CHANNELS: Final[frozenset[str]] = frozenset(
    {
        Channel.ORDERBOOK_DELTA,
        Channel.TICKER,
        Channel.TRADE,
        Channel.FILL,
        Channel.USER_ORDERS,
        Channel.MARKET_POSITIONS,
    }
)
MARKET_FILTER_REQUIRED: Final[frozenset[str]] = frozenset({Channel.ORDERBOOK_DELTA})

#: Channels that need an authenticated connection per the spec (docs/protocol.md section 6).
PRIVATE_CHANNELS: Final[frozenset[str]] = frozenset(
    {
        Channel.FILL,
        Channel.MARKET_POSITIONS,
        Channel.COMMUNICATIONS,
        Channel.ORDER_GROUP_UPDATES,
        Channel.USER_ORDERS,
    }
)


def channel_of_type(type_: str | None) -> str:
    """Return the channel a message type belongs to, or `_unknown`.

    `event_lifecycle` is ambiguous (two channels carry it); callers that know the
    sid's channel from its `subscribed` ack should prefer that.
    """
    if type_ is None:
        return Channel.UNKNOWN
    return TYPE_TO_CHANNEL.get(type_, Channel.UNKNOWN)
