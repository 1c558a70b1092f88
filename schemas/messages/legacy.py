"""The legacy integer-cent forms: accept them and normalise into the current models.

Captures made before the 2026 move to dollar and fixed-point strings carry integer
cents and integer counts (docs/protocol.md section 8.14). This module owns the
`LegacyForm` annotation that adds a legacy branch to a payload model, and the exact
conversions (cents / 100, counts to 2 dp) its per-type converters use. Current-form
frames never reach any of this (see `LegacyForm`). It knows nothing of message types:
each model module declares its own legacy keys and converter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

__all__ = [
    "CURRENT_TAG",
    "JSON_FLOAT_ERROR",
    "LEGACY_TAG",
    "LEGACY_VALUE_ERROR",
    "NOT_LEGACY_ERROR",
    "LegacyForm",
    "fill_missing",
    "legacy_count",
    "legacy_dollars",
    "legacy_levels",
    "outcome_of",
    "rename_legacy",
]

#: Error type raised by a legacy converter that met a JSON float: re-read the frame exactly.
JSON_FLOAT_ERROR: Final = "json_float"
#: Error type of the legacy branch when the payload has no legacy key (the current
#: branch's errors are then the ones to report).
NOT_LEGACY_ERROR: Final = "not_legacy"
#: Error type of a bad legacy value; `ctx["field"]` names the legacy field.
LEGACY_VALUE_ERROR: Final = "legacy_value"
#: Labels of the two branches `LegacyForm` builds; they appear in pydantic error paths.
CURRENT_TAG: Final = "<current form>"
LEGACY_TAG: Final = "<legacy form>"

_CENT: Final = Decimal("0.01")
_PRICE_QUANTUM: Final = Decimal("0.0001")  # current prices have 4 dp
_COUNT_QUANTUM: Final = Decimal("0.01")  # current counts have 2 dp


def _legacy_decimal(value: Any, field: str, what: str) -> Decimal:
    if isinstance(value, float) and math.isfinite(value):
        # A JSON float here was already rounded by the JSON reader: ask for an exact re-read.
        raise PydanticCustomError(JSON_FLOAT_ERROR, "JSON number to re-read exactly")
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise PydanticCustomError(LEGACY_VALUE_ERROR, "Input should be " + what, {"field": field})
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise PydanticCustomError(LEGACY_VALUE_ERROR, "Input should be " + what, {"field": field})
    return number


def legacy_dollars(value: Any, field: str, quantum: Decimal = _PRICE_QUANTUM) -> str:
    """Integer cents -> the current form's dollar string, exact (48 -> "0.4800").

    Converters return wire strings, not Decimals: the payload is then validated by
    the same field validators as a current-form frame.
    """
    cents = _legacy_decimal(value, field, "a number of cents")
    try:
        return str((cents * _CENT).quantize(quantum))
    except InvalidOperation:
        raise PydanticCustomError(
            LEGACY_VALUE_ERROR, "Input should be a number of cents", {"field": field}
        ) from None


def legacy_count(value: Any, field: str) -> str:
    """Integer count -> the current form's fixed-point string (300 -> "300.00")."""
    count = _legacy_decimal(value, field, "a contract count")
    try:
        return str(count.quantize(_COUNT_QUANTUM))
    except InvalidOperation:
        raise PydanticCustomError(
            LEGACY_VALUE_ERROR, "Input should be a contract count", {"field": field}
        ) from None


def legacy_levels(value: Any, field: str) -> list[list[str]]:
    """Legacy `[[cents, count], ...]` -> current `[[dollars, count], ...]` strings."""
    if not isinstance(value, list | tuple):
        raise PydanticCustomError(
            LEGACY_VALUE_ERROR, "Input should be a list of [cents, count]", {"field": field}
        )
    levels = []
    for i, level in enumerate(value):
        if not isinstance(level, list | tuple) or len(level) != 2:
            raise PydanticCustomError(
                LEGACY_VALUE_ERROR, "Input should be [cents, count]", {"field": f"{field}.{i}"}
            )
        levels.append(
            [legacy_dollars(level[0], f"{field}.{i}.0"), legacy_count(level[1], f"{field}.{i}.1")]
        )
    return levels


_SELL_ACTIONS: Final = frozenset({"sell", "sell_partial", "sell_to_close"})


def outcome_of(side: Any, action: Any = "buy") -> tuple[str, str] | None:
    """(outcome_side, book_side) from a legacy side and action, or None if unknown.

    docs/protocol.md section 7: buy-yes or sell-no gives yes, buy-no or sell-yes gives
    no; bid is yes and ask is no.
    """
    if side not in ("yes", "no") or not isinstance(action, str):  # malformed: no sides
        return None
    if action == "buy":
        outcome = side
    elif action in _SELL_ACTIONS:
        outcome = "no" if side == "yes" else "yes"
    else:
        return None
    return outcome, ("bid" if outcome == "yes" else "ask")


def rename_legacy(
    payload: dict[str, Any],
    legacy: str,
    current: str,
    convert: Callable[[Any, str], Any],
) -> None:
    """Replace `legacy` by `current` (converted), unless the payload already has `current`.

    A payload carrying both keeps the legacy one as an extra field: the current
    value is the one that counts, and nothing that arrived is dropped.
    """
    if legacy in payload and current not in payload:
        payload[current] = convert(payload.pop(legacy), legacy)


def fill_missing(payload: dict[str, Any], fields: Iterable[str]) -> None:
    """Set to None the fields that post-date the legacy form, when absent.

    The models declare these fields required but nullable: a current-form frame
    must carry them, a legacy one cannot.
    """
    for field in fields:
        payload.setdefault(field, None)


class LegacyForm:
    """Annotation that lets a payload model also accept its legacy integer-cent form.

    It builds a left-to-right union of two branches: the model as it is (current
    form), then `convert` followed by the same model. A current-form payload
    validates on the first branch, entirely in pydantic-core, so the legacy support
    costs it nothing. Only when that fails does `convert` run: it raises
    `not_legacy` unless one of `keys` is present, else renames and converts the
    legacy fields (cents / 100, exact) and returns a current-form dict.

    Args:
        keys: the legacy field names that mark the legacy form.
        convert: maps a legacy payload dict (a copy) to a current-form dict.
    """

    __slots__ = ("convert", "keys")

    def __init__(
        self, keys: Iterable[str], convert: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> None:
        self.keys = frozenset(keys)
        self.convert = convert

    def _run(self, value: Any) -> Any:
        if not isinstance(value, dict) or self.keys.isdisjoint(value):
            raise PydanticCustomError(NOT_LEGACY_ERROR, "not the legacy form")
        return self.convert(dict(value))

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        current = handler(source)
        legacy = core_schema.no_info_before_validator_function(self._run, current)
        return core_schema.union_schema(
            [(current, CURRENT_TAG), (legacy, LEGACY_TAG)], mode="left_to_right"
        )
