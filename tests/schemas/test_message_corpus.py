"""Every golden frame parses to its model with the exact values the wire meant.

The corpus (tests/fixtures/frames, see `corpus.py`) has at least one frame per
message type, current and legacy forms, and the edge cases of
docs/protocol.md sections 7, 9.16, 9.17 and 9.20.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.channels import CHANNEL_TYPES
from schemas.messages import OrderbookDelta, OrderbookSnapshot, Ticker, Trade
from schemas.parse import MESSAGE_MODELS, parse_message
from tests.schemas.corpus import Case, check_value, load_cases, resolve

CASES = load_cases()
BY_ID = {case.id: case for case in CASES}

#: Types with a legacy integer-cent form (docs/protocol.md section 8.14).
LEGACY_TYPES = ("orderbook_snapshot", "orderbook_delta", "ticker", "trade", "fill", "user_order")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_corpus_frame_parses_to_the_model_of_its_type_with_the_expected_values(case: Case) -> None:
    message = parse_message(case.raw)
    assert isinstance(message, MESSAGE_MODELS[case.file])
    assert message.type == case.file
    for path, expected in case.expect.items():
        check_value(resolve(message, path), expected, f"{case.id} {path}")
    if case.model is not None:
        assert type(message.msg).__name__ == case.model


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_corpus_frame_parses_the_same_from_bytes_and_from_str(case: Case) -> None:
    assert parse_message(case.raw.encode()) == parse_message(case.raw)


@pytest.mark.parametrize("case", [c for c in CASES if c.same_as], ids=lambda c: c.id)
def test_legacy_frame_normalises_to_the_same_model_as_its_current_form(case: Case) -> None:
    current = parse_message(BY_ID[f"{case.file}:{case.same_as}"].raw)
    legacy = parse_message(case.raw)
    assert legacy == current
    assert legacy.msg.model_extra == current.msg.model_extra  # legacy keys are not left behind


@pytest.mark.parametrize("case", [c for c in CASES if c.extras], ids=lambda c: c.id)
def test_unknown_fields_are_kept_as_extras(case: Case) -> None:
    message = parse_message(case.raw)
    assert case.extras is not None
    for path, extras in case.extras.items():
        model = resolve(message, path)
        assert model.model_extra is not None
        for key, value in extras.items():
            assert model.model_extra[key] == value


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, BaseModel):
        items = dict(value)
        return [p for key, item in items.items() for p in _walk(item, f"{path}.{key}")]
    if isinstance(value, tuple | list):
        return [p for i, item in enumerate(value) for p in _walk(item, f"{path}.{i}")]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _walk(item, f"{path}.{key}")]
    return [(path, value)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_parsed_frame_holds_no_float_and_no_naive_or_non_utc_datetime(case: Case) -> None:
    for path, value in _walk(parse_message(case.raw)):
        if isinstance(value, dt.datetime):
            assert value.utcoffset() == dt.timedelta(0), path
        # Extras are kept as JSON gave them; declared fields are never floats.
        assert not isinstance(value, float) or _is_extra(case, path), path


def _is_extra(case: Case, path: str) -> bool:
    return any(key in path for extras in (case.extras or {}).values() for key in extras)


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: c.id)
def test_parsed_messages_are_frozen(case: Case) -> None:
    message = parse_message(case.raw)
    with pytest.raises(ValidationError):
        message.sid = 99  # type: ignore[misc]
    with pytest.raises(ValidationError):
        message.msg.market_ticker = "X"


def test_every_message_type_has_a_corpus_file() -> None:
    assert {case.file for case in CASES} == set(MESSAGE_MODELS)


def test_every_type_with_a_legacy_form_has_a_legacy_frame_of_each_shape() -> None:
    for type_ in LEGACY_TYPES:
        names = {case.name for case in CASES if case.file == type_}
        assert any(name.startswith("legacy_") and "pre_migration" in name for name in names), type_
        assert any(case.same_as for case in CASES if case.file == type_), type_


def test_every_data_type_of_every_channel_has_a_frame_in_the_corpus() -> None:
    types = {t for types in CHANNEL_TYPES.values() for t in types}
    assert types <= {case.file for case in CASES}


def test_one_sided_snapshot_gives_an_empty_tuple_for_the_absent_side() -> None:
    frame = {
        "type": "orderbook_snapshot",
        "sid": 2,
        "seq": 1,
        "msg": {
            "market_ticker": "KXHIGHNY-26NOV21-B45.5",
            "market_id": "9b0f6b0a-3c1e-4f57-9a43-1d2f0e5c7a10",
            "clock": 5,
            "no_dollars_fp": [["0.5200", "10.00"]],
        },
    }
    message = parse_message(json.dumps(frame))
    assert isinstance(message, OrderbookSnapshot)
    assert message.msg.yes_dollars_fp == ()
    assert message.msg.no_dollars_fp == ((Decimal("0.5200"), Decimal("10.00")),)


def test_json_numbers_become_the_exact_decimal_of_their_text() -> None:
    raw = BY_ID["orderbook_delta:numbers_as_json_numbers_exact"].raw
    message = parse_message(raw)
    assert isinstance(message, OrderbookDelta)
    assert message.msg.price_dollars == Decimal("0.1")
    assert message.msg.price_dollars.as_tuple() == Decimal("0.1").as_tuple()
    assert message.msg.delta_fp.as_tuple() == Decimal("1.10").as_tuple()


def test_seconds_and_milliseconds_are_never_guessed_from_magnitude() -> None:
    frame = json.loads(BY_ID["trade:current"].raw)
    frame["msg"]["ts_ms"] = 1795266960  # a seconds value in a ms field stays ms: January 1970
    message = parse_message(json.dumps(frame))
    assert isinstance(message, Trade)
    assert message.msg.ts_ms == dt.datetime(1970, 1, 21, 18, 41, 6, 960000, tzinfo=dt.UTC)
    assert message.msg.ts == dt.datetime(2026, 11, 21, 13, 16, tzinfo=dt.UTC)


def test_ticker_dollar_amounts_are_ints_and_prices_decimals() -> None:
    message = parse_message(BY_ID["ticker:current"].raw)
    assert isinstance(message, Ticker)
    assert type(message.msg.dollar_volume) is int
    assert type(message.msg.dollar_open_interest) is int
    assert isinstance(message.msg.yes_bid_dollars, Decimal)


def test_a_frame_with_both_legacy_and_current_keys_keeps_the_current_value() -> None:
    frame = json.loads(BY_ID["orderbook_delta:current"].raw)
    frame["msg"]["price"] = 12  # stale legacy key next to the current one
    message = parse_message(json.dumps(frame))
    assert isinstance(message, OrderbookDelta)
    assert message.msg.price_dollars == Decimal("0.4800")
    assert message.msg.model_extra == {"price": 12}
