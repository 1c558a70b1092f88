"""The typed fast path: msgspec mirrors generated from the models hold the models' values.

Held against the pydantic models on every golden frame (current and legacy forms,
JSON numbers, odd timestamps) and on random frames, so the fast path can never
drift from the one definition it is generated from.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas.errors import MessageValidationError, UnknownMessageType
from schemas.parse import MESSAGE_MODELS, parse_message
from schemas.structs import STRUCTS, mirror, parse_struct
from tests.schemas.corpus import Case, load_cases

CASES = load_cases()


def assert_mirrors(struct: Any, model: Any, where: str = "") -> None:
    """Every declared field of the model has the same value (and kind) in the mirror."""
    if isinstance(model, BaseModel):
        assert type(struct).__name__ == type(model).__name__, where
        assert isinstance(struct, msgspec.Struct), where
        for name in type(model).model_fields:
            assert_mirrors(getattr(struct, name), getattr(model, name), f"{where}.{name}")
    elif isinstance(model, tuple):
        assert isinstance(struct, tuple) and len(struct) == len(model), where
        for i, (s, m) in enumerate(zip(struct, model, strict=True)):
            assert_mirrors(s, m, f"{where}.{i}")
    elif isinstance(model, dt.datetime):
        assert isinstance(struct, dt.datetime), where
        assert struct == model and struct.utcoffset() == model.utcoffset(), where
    elif isinstance(model, Decimal):
        assert isinstance(struct, Decimal) and str(struct) == str(model), where
    else:
        assert type(struct) is type(model) and struct == model, where


def test_every_message_type_has_a_mirror_generated_from_its_model() -> None:
    assert set(STRUCTS) == set(MESSAGE_MODELS)
    for type_, model in MESSAGE_MODELS.items():
        struct = STRUCTS[type_]
        assert struct is mirror(model) and struct.__name__ == model.__name__
        assert set(struct.__struct_fields__) == set(model.model_fields) - {"type"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_golden_frame_gives_the_same_values_on_the_fast_path(case: Case) -> None:
    model = parse_message(case.raw)
    struct = parse_struct(case.raw.encode())
    assert_mirrors(struct, model, case.id)


def test_timestamps_are_plain_utc_datetimes_like_the_models() -> None:
    (case,) = [c for c in CASES if c.file == "trade" and c.name == "current"]
    trade = parse_struct(case.raw.encode())
    for value in (trade.msg.ts_ms, trade.msg.ts):
        assert type(value) is dt.datetime and value.utcoffset() == dt.timedelta(0)


def test_a_frame_the_model_refuses_is_refused_with_the_models_error() -> None:
    bad_price = b'{"type":"trade","sid":1,"seq":1,"msg":{"trade_id":"t","market_ticker":"A"}}'
    with pytest.raises(MessageValidationError):
        parse_struct(bad_price)
    with pytest.raises(UnknownMessageType):
        parse_struct(b'{"type":"no_such_type","msg":{}}')


_NUM = "@@num:"


def render(obj: Any) -> bytes:
    text = json.dumps(obj, separators=(",", ":"))
    while _NUM in text:
        start = text.index('"' + _NUM)
        end = text.index('"', start + 1)
        text = text[:start] + text[start + 1 + len(_NUM) : end] + text[end + 1 :]
    return text.encode()


decimals = st.decimals(min_value=-(10**6), max_value=10**6, places=6, allow_nan=False)
number = decimals.flatmap(
    lambda d: st.sampled_from([format(d, "f"), _NUM + format(d, "f")])  # string or JSON number
)
epoch_ms = st.integers(0, 4_102_444_800_000)
epoch_s = st.integers(0, 4_102_444_800)
rfc3339 = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2099, 1, 1),
    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5))]),
).map(lambda t: t.isoformat().replace("+00:00", "Z"))  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(number, number, number, epoch_ms, epoch_s, rfc3339, st.integers(1, 10**9))
def test_random_market_frames_agree_with_their_models(
    price, size, volume, ts_ms, ts, time, seq
) -> None:
    frames = [
        {"type": "orderbook_delta", "sid": 1, "seq": seq, "msg": {
            "market_ticker": "KX-A", "market_id": "m", "clock": seq, "price_dollars": price,
            "delta_fp": size, "side": "no", "ts_ms": ts_ms, "ts": time}},
        {"type": "trade", "sid": 2, "seq": seq, "msg": {
            "trade_id": "t", "market_ticker": "KX-A", "yes_price_dollars": price,
            "no_price_dollars": price, "count_fp": size, "taker_outcome_side": "yes",
            "taker_book_side": "bid", "is_block_trade": False, "ts": ts, "ts_ms": ts_ms}},
        {"type": "ticker", "sid": 3, "msg": {
            "market_ticker": "KX-A", "market_id": "m", "price_dollars": price,
            "yes_bid_dollars": price, "yes_ask_dollars": price, "volume_fp": volume,
            "open_interest_fp": size, "dollar_volume": 5, "dollar_open_interest": 6,
            "yes_bid_size_fp": None, "yes_ask_size_fp": size, "last_trade_size_fp": size,
            "ts_ms": ts_ms, "ts": ts, "time": time}},
    ]  # fmt: skip
    for frame in frames:
        raw = render(frame)
        assert_mirrors(parse_struct(raw), parse_message(raw), frame["type"])
