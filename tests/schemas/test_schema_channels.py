"""The channel vocabulary agrees with the message models and with docs/protocol.md section 8."""

from __future__ import annotations

from schemas.channels import (
    ALL_CHANNELS,
    CHANNEL_TYPES,
    COMMANDS,
    COMMUNICATIONS_TYPES,
    CONTROL_TYPES,
    SEQUENCED_CHANNELS,
    SEQUENCED_TYPES,
    TYPE_TO_CHANNEL,
    WIRE_CHANNELS,
    Channel,
    channel_of_type,
)
from schemas.parse import COMMAND_MODELS, MESSAGE_MODELS

DATA_TYPES = {t for types in CHANNEL_TYPES.values() for t in types}


def test_every_channel_type_has_a_model_and_every_model_a_channel_type() -> None:
    assert set(MESSAGE_MODELS) == DATA_TYPES | CONTROL_TYPES


def test_every_command_has_a_model() -> None:
    assert set(COMMAND_MODELS) == set(COMMANDS)


def test_private_channels_carry_singular_type_names() -> None:
    assert CHANNEL_TYPES["user_orders"] == ("user_order",)
    assert CHANNEL_TYPES["market_positions"] == ("market_position",)
    assert channel_of_type("user_order") == "user_orders"
    assert channel_of_type("market_position") == "market_positions"
    assert "user_orders" not in TYPE_TO_CHANNEL


def test_every_wire_channel_has_types_and_the_thirteen_plus_legacy_are_listed() -> None:
    assert set(CHANNEL_TYPES) == set(WIRE_CHANNELS)
    assert len(WIRE_CHANNELS) == 14
    assert WIRE_CHANNELS[-1] == "multivariate"
    assert set(WIRE_CHANNELS) <= ALL_CHANNELS
    assert len(COMMUNICATIONS_TYPES) == 12


def test_event_lifecycle_rides_both_lifecycle_channels_and_falls_back_to_the_first() -> None:
    carriers = {ch for ch, types in CHANNEL_TYPES.items() if "event_lifecycle" in types}
    assert carriers == {"market_lifecycle_v2", "multivariate_market_lifecycle"}
    assert channel_of_type("event_lifecycle") == "market_lifecycle_v2"


def test_replies_and_commands_belong_to_control_and_the_rest_to_unknown() -> None:
    for type_ in CONTROL_TYPES | COMMANDS:
        assert channel_of_type(type_) == Channel.CONTROL
    assert channel_of_type(None) == Channel.UNKNOWN
    assert channel_of_type("orderbook_delta_v3") == Channel.UNKNOWN


def test_sequenced_types_follow_the_seq_summary() -> None:
    required = {
        "orderbook_snapshot",
        "orderbook_delta",
        "trade",
        "market_lifecycle_v2",
        "event_lifecycle",
        "event_fee_update",
        "multivariate_market_lifecycle",
        "order_group_updates",
        "cfbenchmarks_value",
        "cfbenchmarks_value_indexlist",
        "cfbenchmarks_value_5hz",
        "cfbenchmarks_value_5hz_indexlist",
        "pyth_value",
        "pyth_value_underlying_list",
        "unsubscribed",
        *COMMUNICATIONS_TYPES,
    }
    assert required == SEQUENCED_TYPES
    for type_ in ("ticker", "fill", "market_position", "user_order", "subscribed", "ok", "error"):
        assert type_ not in SEQUENCED_TYPES
    assert "multivariate" not in SEQUENCED_CHANNELS
