"""The public parse API: inputs, round trips, lazy exports and the legacy hook's contract."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from typing import Annotated, Any

import pytest
from pydantic import TypeAdapter, ValidationError

import schemas
from schemas.errors import MessageValidationError
from schemas.messages import LegacyForm, OrderbookSnapshot, TradeMsg, WireModel
from schemas.messages.base import Contracts
from schemas.messages.legacy import legacy_count
from schemas.parse import MESSAGE_MODELS, parse_message
from tests.schemas.corpus import Case, load_cases

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_dumped_message_is_a_frame_that_parses_to_an_equal_message(case: Case) -> None:
    message = parse_message(case.raw)
    assert parse_message(message.model_dump_json()) == message


def test_dump_writes_timestamps_in_their_wire_units_and_decimals_as_text() -> None:
    case = next(c for c in CASES if c.id == "ticker:current")
    dumped = json.loads(parse_message(case.raw).model_dump_json())["msg"]
    original = json.loads(case.raw)["msg"]
    for key in ("ts", "ts_ms", "price_dollars", "volume_fp", "dollar_volume"):
        assert dumped[key] == original[key], key
    assert dumped["time"] == original["time"].replace(".123Z", ".123000Z")


def test_snapshot_legacy_guards_do_not_show_in_dumps() -> None:
    case = next(c for c in CASES if c.id == "orderbook_snapshot:legacy_cents_with_ids")
    message = parse_message(case.raw)
    assert isinstance(message, OrderbookSnapshot)
    assert "yes" not in json.loads(message.model_dump_json())["msg"]
    assert "yes=" not in repr(message.msg)


def test_parse_message_accepts_bytes_bytearray_and_str() -> None:
    raw = next(c.raw for c in CASES if c.id == "trade:current")
    assert (
        parse_message(raw) == parse_message(raw.encode()) == parse_message(bytearray(raw, "utf-8"))
    )


def test_validation_errors_do_not_chain_the_pydantic_error() -> None:
    with pytest.raises(MessageValidationError) as info:
        parse_message(b'{"type":"trade","sid":3,"seq":1,"msg":{}}')
    assert info.value.__cause__ is None
    assert not isinstance(info.value, ValidationError)
    assert ("msg.trade_id", "Field required") in info.value.errors


def test_python_floats_are_refused_in_decimal_fields() -> None:
    frame = json.loads(next(c.raw for c in CASES if c.id == "trade:current"))["msg"]
    frame["count_fp"] = 0.1
    with pytest.raises(ValidationError, match="count_fp"):
        TradeMsg.model_validate(frame)
    frame["count_fp"] = Decimal("0.10")
    assert TradeMsg.model_validate(frame).count_fp.as_tuple() == Decimal("0.10").as_tuple()


def test_message_models_are_keyed_by_their_type_literal() -> None:
    for type_, model in MESSAGE_MODELS.items():
        assert model.model_fields["type"].annotation.__args__ == (type_,)  # type: ignore[union-attr]


def test_importing_schemas_does_not_load_the_models_until_a_parse_name_is_used() -> None:
    code = (
        "import sys, schemas\n"
        "assert 'schemas.parse' not in sys.modules\n"
        "from schemas import parse_message\n"
        "assert 'schemas.parse' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert schemas.parse_message is parse_message
    with pytest.raises(AttributeError):
        schemas.no_such_name  # noqa: B018


# --- the legacy hook: runs only when the current form fails and a legacy key is present ---


class _Payload(WireModel):
    size_fp: Contracts


def _adapter(calls: list[dict[str, Any]]) -> TypeAdapter[_Payload]:
    def convert(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(dict(payload))
        payload["size_fp"] = legacy_count(payload.pop("size"), "size")
        return payload

    return TypeAdapter(Annotated[_Payload, LegacyForm(("size",), convert)])


def test_legacy_conversion_never_runs_for_a_current_form_payload() -> None:
    calls: list[dict[str, Any]] = []
    adapter = _adapter(calls)
    assert adapter.validate_json('{"size_fp":"3.00"}').size_fp == Decimal("3.00")
    with pytest.raises(ValidationError):
        adapter.validate_json('{"other":1}')  # no legacy key: the converter is not called
    assert calls == []


def test_legacy_conversion_runs_once_for_a_legacy_payload() -> None:
    calls: list[dict[str, Any]] = []
    result = _adapter(calls).validate_json('{"size":3}')
    assert result.size_fp.as_tuple() == Decimal("3.00").as_tuple()
    assert result.model_extra == {}
    assert calls == [{"size": 3}]
