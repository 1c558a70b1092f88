"""Shared pieces of the message models: the base config, exact field types, the envelope.

This module owns how a wire value becomes a Python value (docs/protocol.md section 7):

* `Dollars` / `Contracts`: exact `Decimal`. A JSON string or integer is converted
  in pydantic-core. A JSON *float* is refused with the error `exact_decimal`:
  pydantic-core reads JSON numbers as binary doubles, so `1.10` would become
  `Decimal('1.1')` and 17+ digit values would be rounded. `schemas.parse` catches
  that error and re-reads the frame with every JSON number kept as its text, so the
  result is always the exact Decimal of the text, and the common path (strings)
  pays nothing for it. Python floats are refused for the same reason.
* `EpochS`, `EpochMs`, `Rfc3339`: timezone-aware UTC datetimes, each in its one
  documented unit. Models run with `val_temporal_unit="milliseconds"`, so `EpochMs`
  is converted in pydantic-core without magnitude guessing; `EpochS` converts
  explicitly in Python (it is on ticker, trade and fill only).
* `model_dump_json()` writes decimals as strings and timestamps in their wire unit,
  so a dumped message is a current-form frame that parses to an equal message.

The legacy integer-cent forms are `schemas.messages.legacy`'s. This module knows
nothing of message types, channels or how frames are routed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetPydanticSchema
from pydantic_core import CoreSchema, PydanticCustomError, SchemaValidator, core_schema

__all__ = [
    "EXACT_DECIMAL_ERROR",
    "UNION_TAGS",
    "BookSide",
    "Contracts",
    "Dollars",
    "EpochMs",
    "EpochS",
    "Level",
    "MessageBase",
    "Number",
    "Rfc3339",
    "Side",
    "WireModel",
]

#: Error type of a Decimal field given a float (or anything not a decimal string / int).
EXACT_DECIMAL_ERROR: Final = "exact_decimal"
#: Labels of nested tagged unions (lifecycle payloads, `ok` shapes). `schemas.parse`
#: strips them from error paths.
UNION_TAGS: Final[frozenset[str]] = frozenset(
    {
        "<lifecycle>",
        "<metadata_updated>",
        "<subscriptions>",
        "<index_ids>",
        "<underlying_tickers>",
        "<markets>",
    }
)


class WireModel(BaseModel):
    """Base of every message, payload and command model.

    Frozen (messages are facts), unknown fields kept (`model_extra`): Kalshi adds
    fields, and a recorder-side model must never drop what arrived.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        # Ints and digit strings in datetime fields are milliseconds: explicit, never guessed.
        val_temporal_unit="milliseconds",
        protected_namespaces=(),
    )


# --- exact decimals -----------------------------------------------------------------------

_DECIMAL_MESSAGE: Final = "Input should be a decimal number as a string or an integer"


def _decimal_from(*first: CoreSchema) -> CoreSchema:
    return core_schema.union_schema(
        [
            *first,
            core_schema.chain_schema(
                [core_schema.str_schema(strict=True), core_schema.decimal_schema()]
            ),
            core_schema.chain_schema(
                [core_schema.int_schema(strict=True), core_schema.decimal_schema()]
            ),
        ],
        mode="left_to_right",
        custom_error_type=EXACT_DECIMAL_ERROR,
        custom_error_message=_DECIMAL_MESSAGE,
    )


_EXACT_DECIMAL_SCHEMA: Final = core_schema.json_or_python_schema(
    json_schema=_decimal_from(),
    python_schema=_decimal_from(core_schema.decimal_schema(strict=True)),
    serialization=core_schema.to_string_ser_schema(when_used="json"),
)


def _exact_decimal(_source: Any, _handler: GetCoreSchemaHandler) -> CoreSchema:
    return _EXACT_DECIMAL_SCHEMA


#: A dollar amount (price, cost, fee, index value), exact.
Dollars = Annotated[Decimal, GetPydanticSchema(_exact_decimal)]
#: A contract count (`*_fp`, 2 dp today, fractional later), exact.
Contracts = Annotated[Decimal, GetPydanticSchema(_exact_decimal)]
#: Any other exact number (strikes, fee multipliers).
Number = Annotated[Decimal, GetPydanticSchema(_exact_decimal)]
#: One order book level: (price in dollars, resting count).
Level = tuple[Dollars, Contracts]

Side = Literal["yes", "no"]
BookSide = Literal["bid", "ask"]

# --- timestamps ---------------------------------------------------------------------------


def _from_epoch_s(value: int) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise PydanticCustomError(
            "epoch_seconds", "Unix time in seconds out of range: {value}", {"value": value}
        ) from None


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# JSON serialisers write each timestamp back in its wire unit, so that
# `model_dump_json()` of a message is a frame that parses to an equal message.
def _to_epoch_s(value: dt.datetime) -> int:
    return (value - _EPOCH) // dt.timedelta(seconds=1)


def _to_epoch_ms(value: dt.datetime) -> int:
    return (value - _EPOCH) // dt.timedelta(milliseconds=1)


def _to_rfc3339(value: dt.datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _json_ser(function: Callable[[dt.datetime], Any]) -> core_schema.SerSchema:
    return core_schema.plain_serializer_function_ser_schema(function, when_used="json")


_AWARE_DT: Final = core_schema.datetime_schema(strict=True, tz_constraint="aware")
_EPOCH_S_INT: Final = core_schema.chain_schema(
    [core_schema.int_schema(), core_schema.no_info_plain_validator_function(_from_epoch_s)]
)
_EPOCH_S_SCHEMA: Final = core_schema.json_or_python_schema(
    json_schema=_EPOCH_S_INT,
    python_schema=core_schema.union_schema([_AWARE_DT, _EPOCH_S_INT], mode="left_to_right"),
    serialization=_json_ser(_to_epoch_s),
)
_EPOCH_MS_SCHEMA: Final = core_schema.datetime_schema(
    tz_constraint="aware", serialization=_json_ser(_to_epoch_ms)
)

# RFC3339 with `Z` (what Kalshi sends) is parsed in pydantic-core; anything else that
# parses (another offset, or no offset, taken as UTC) goes through Python and is
# normalised to UTC. A JSON number is refused: these fields are strings on the wire.
# A string of digits is read as Unix ms, the models' unit (never a guessed unit).
_UTC_DT: Final = core_schema.datetime_schema(strict=True, tz_constraint=0)
_LAX_DT: Final = SchemaValidator(core_schema.datetime_schema())


def _rfc3339_to_utc(value: Any) -> dt.datetime:
    parsed: dt.datetime
    if isinstance(value, str):
        parsed = _LAX_DT.validate_python(value)
    elif isinstance(value, dt.datetime):
        parsed = value
    else:
        raise PydanticCustomError("rfc3339", "Input should be an RFC3339 string")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


_RFC3339_MESSAGE: Final = "Input should be an RFC3339 timestamp string"
_RFC3339_SCHEMA: Final = core_schema.json_or_python_schema(
    json_schema=core_schema.union_schema(
        [
            _UTC_DT,
            core_schema.chain_schema(
                [
                    core_schema.str_schema(strict=True),
                    core_schema.no_info_plain_validator_function(_rfc3339_to_utc),
                ]
            ),
        ],
        mode="left_to_right",
        custom_error_type="rfc3339",
        custom_error_message=_RFC3339_MESSAGE,
    ),
    python_schema=core_schema.union_schema(
        [
            core_schema.chain_schema(
                [core_schema.str_schema(strict=True), core_schema.datetime_schema(tz_constraint=0)]
            ),
            _UTC_DT,
            core_schema.no_info_plain_validator_function(_rfc3339_to_utc),
        ],
        mode="left_to_right",
        custom_error_type="rfc3339",
        custom_error_message=_RFC3339_MESSAGE,
    ),
    serialization=_json_ser(_to_rfc3339),
)

#: Unix time in whole seconds (`ts` on ticker, trade, fill; lifecycle `*_ts`).
EpochS = Annotated[dt.datetime, GetPydanticSchema(lambda _s, _h: _EPOCH_S_SCHEMA)]
#: Unix time in milliseconds (`*_ts_ms`, `received_at`, `sending_ts_ms`).
EpochMs = Annotated[dt.datetime, GetPydanticSchema(lambda _s, _h: _EPOCH_MS_SCHEMA)]
#: An RFC3339 string (`*_time`, delta `ts`, communications `*_ts`).
Rfc3339 = Annotated[dt.datetime, GetPydanticSchema(lambda _s, _h: _RFC3339_SCHEMA)]

# --- envelopes ----------------------------------------------------------------------------


class MessageBase(WireModel):
    """Fields every server frame may carry (docs/protocol.md section 4).

    `sid` and `seq` are optional here even on sequenced types: a missing or wrong
    seq is the engine's to detect and record as a gap (behaviour 3), which it can
    only do if the frame still parses. Subclasses add `type` (a Literal) and `msg`.
    """

    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    sending_ts_ms: EpochMs | None = None
