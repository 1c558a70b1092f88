"""Raw frame -> typed model: `parse_message` for server frames, `parse_command` for commands.

This module owns the dispatch on `type` (or `cmd`) and the translation of pydantic's
errors into the errors of `schemas.errors`, so no pydantic `ValidationError` leaves
it. One `TypeAdapter` over a discriminated union validates the JSON in pydantic-core
in one pass. The exact re-read for JSON floats in decimal fields (see
`schemas.messages.base`) happens here, only when such a float was met.

It knows nothing of channels, sequencing or books; for routing alone, the cheaper
`schemas.envelope.decode_envelope` is the tool.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, Final, TypeVar, get_args

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from schemas.errors import EnvelopeError, MessageValidationError, UnknownMessageType
from schemas.messages import (
    BatchQuoteAccepted,
    BatchQuoteCreated,
    BatchQuoteExecuted,
    CfbenchmarksValue,
    CfbenchmarksValue5hz,
    CfbenchmarksValue5hzIndexList,
    CfbenchmarksValueIndexList,
    Error,
    EventFeeUpdate,
    EventLifecycle,
    Fill,
    ListSubscriptions,
    MarketLifecycleV2,
    MarketPosition,
    MultivariateLookup,
    MultivariateMarketLifecycle,
    Ok,
    OrderbookDelta,
    OrderbookSnapshot,
    OrderGroupUpdates,
    PythValue,
    PythValueUnderlyingList,
    QuoteAccepted,
    QuoteCreated,
    QuoteExecuted,
    RfqBatchBestQuotes,
    RfqBatchCreated,
    RfqBatchDeleted,
    RfqBatchExecuted,
    RfqCreated,
    RfqDeleted,
    Subscribe,
    Subscribed,
    Ticker,
    Trade,
    Unsubscribe,
    Unsubscribed,
    UpdateSubscription,
    UserOrder,
)
from schemas.messages.base import (
    EXACT_DECIMAL_ERROR,
    UNION_TAGS,
)
from schemas.messages.legacy import (
    CURRENT_TAG,
    JSON_FLOAT_ERROR,
    LEGACY_TAG,
    LEGACY_VALUE_ERROR,
    NOT_LEGACY_ERROR,
)

__all__ = [
    "COMMAND_MODELS",
    "MESSAGE_MODELS",
    "Command",
    "Message",
    "parse_command",
    "parse_message",
]

#: Any server frame, discriminated on `type`.
Message = Annotated[
    OrderbookDelta
    | OrderbookSnapshot
    | Ticker
    | Trade
    | Fill
    | UserOrder
    | MarketPosition
    | OrderGroupUpdates
    | MarketLifecycleV2
    | MultivariateMarketLifecycle
    | EventLifecycle
    | EventFeeUpdate
    | MultivariateLookup
    | RfqCreated
    | RfqDeleted
    | QuoteCreated
    | QuoteAccepted
    | QuoteExecuted
    | RfqBatchCreated
    | RfqBatchDeleted
    | BatchQuoteCreated
    | RfqBatchBestQuotes
    | BatchQuoteAccepted
    | RfqBatchExecuted
    | BatchQuoteExecuted
    | CfbenchmarksValue
    | CfbenchmarksValueIndexList
    | CfbenchmarksValue5hz
    | CfbenchmarksValue5hzIndexList
    | PythValue
    | PythValueUnderlyingList
    | Subscribed
    | Unsubscribed
    | Ok
    | Error,
    Field(discriminator="type"),
]

#: Any client command, discriminated on `cmd`.
Command = Annotated[
    Subscribe | Unsubscribe | UpdateSubscription | ListSubscriptions,
    Field(discriminator="cmd"),
]

_M = TypeVar("_M")


def _models_by_tag(union: Any, key: str) -> dict[str, type[BaseModel]]:
    models: tuple[type[BaseModel], ...] = get_args(get_args(union)[0])
    return {get_args(m.model_fields[key].annotation)[0]: m for m in models}


#: Message type -> its model (every data type of `schemas.channels` plus the replies).
MESSAGE_MODELS: Final[dict[str, type[BaseModel]]] = _models_by_tag(Message, "type")
#: Command name -> its model.
COMMAND_MODELS: Final[dict[str, type[BaseModel]]] = _models_by_tag(Command, "cmd")

_MESSAGES: Final[TypeAdapter[Message]] = TypeAdapter(Message)
_COMMANDS: Final[TypeAdapter[Command]] = TypeAdapter(Command)


def parse_message(raw: bytes | bytearray | str) -> Message:
    """Parse one server frame into its typed model.

    Returns:
        The model of the frame's `type` (see `MESSAGE_MODELS`).

    Raises:
        EnvelopeError: not JSON, not an object, or no string `type`: store the frame
            under `_unknown`.
        UnknownMessageType: a `type` the protocol does not list: deliver it raw.
        MessageValidationError: a field is missing or bad; `.errors` lists
            (dotted path, reason), and the message names the type and the field.
    """
    try:
        return _MESSAGES.validate_json(raw)
    except ValidationError as exc:
        return _recover(_MESSAGES, raw, exc, "type")


def parse_command(raw: bytes | bytearray | str) -> Command:
    """Parse one client command (`{"id", "cmd", "params"}`) into its typed model.

    Raises:
        EnvelopeError: not JSON, not an object, or no string `cmd`.
        UnknownMessageType: a `cmd` that is not one of the four commands.
        MessageValidationError: a parameter is missing or bad (`params.sids: ...`).
    """
    try:
        return _COMMANDS.validate_json(raw)
    except ValidationError as exc:
        return _recover(_COMMANDS, raw, exc, "cmd")


def _recover(
    adapter: TypeAdapter[_M], raw: bytes | bytearray | str, exc: ValidationError, key: str
) -> _M:
    """Turn a failed validation into a result (exact re-read) or one of our errors."""
    errors = exc.errors(include_url=False)
    _raise_for_envelope(errors, key)
    if any(_is_json_float(error) for error in errors):
        # pydantic-core read a JSON float in a decimal field as a double; read the
        # numbers as their exact text instead and validate the Python objects.
        try:
            data = json.loads(raw, parse_float=Decimal)
        except ValueError as reread:
            raise EnvelopeError(f"not JSON: {reread}") from None
        try:
            return adapter.validate_python(data)
        except ValidationError as exc2:
            errors = exc2.errors(include_url=False)
            _raise_for_envelope(errors, key)
    type_ = str(errors[0]["loc"][0])
    raise MessageValidationError(type_, _field_errors(errors)) from None


def _is_json_float(error: ErrorDetails) -> bool:
    if error["type"] == JSON_FLOAT_ERROR:
        return True
    return error["type"] == EXACT_DECIMAL_ERROR and isinstance(error.get("input"), float)


def _raise_for_envelope(errors: list[ErrorDetails], key: str) -> None:
    """Raise EnvelopeError / UnknownMessageType for errors of the frame as a whole."""
    what = "command" if key == "cmd" else "envelope"
    for error in errors:
        kind = error["type"]
        if kind == "json_invalid":
            raise EnvelopeError(f"not JSON: {error['msg']}")
        if kind == "union_tag_not_found":
            raise EnvelopeError(f"invalid {what}: no `{key}` field")
        if kind == "union_tag_invalid":
            tag = error["input"].get(key) if isinstance(error["input"], dict) else None
            if not isinstance(tag, str):
                raise EnvelopeError(f"invalid {what}: `{key}` is not a string: {tag!r}")
            noun = "command" if key == "cmd" else "message type"
            raise UnknownMessageType(f"unknown {noun} {tag!r}", type_=tag)
        if not error["loc"]:
            raise EnvelopeError(f"invalid {what}: not a JSON object ({error['msg']})")


def _field_errors(errors: list[ErrorDetails]) -> list[tuple[str, str]]:
    """(dotted path, reason) pairs, without union labels, for the branch that applies.

    A payload with a legacy form fails on two branches. If the legacy branch said
    `not_legacy`, the current form's errors are the ones to report; otherwise the
    frame is legacy and the legacy branch's errors are.
    """
    legacy = not any(error["type"] == NOT_LEGACY_ERROR for error in errors)
    result: list[tuple[str, str]] = []
    for error in errors:
        loc = error["loc"][1:]  # the first item is the type (the union tag)
        if (CURRENT_TAG in loc and legacy) or (LEGACY_TAG in loc and not legacy):
            continue
        parts = [str(p) for p in loc if p not in UNION_TAGS and p not in (CURRENT_TAG, LEGACY_TAG)]
        if error["type"] == LEGACY_VALUE_ERROR:
            parts.append(str(error.get("ctx", {}).get("field", "")))
        item = (".".join(parts) or "<frame>", error["msg"])
        if item not in result:
            result.append(item)
    if not result:  # never report a failure without a reason
        result = [(".".join(str(p) for p in e["loc"][1:]), e["msg"]) for e in errors]
    return result
