"""Exact fixed-point: the wire's decimal numbers as integers in the wire's own units.

Books and the engine's hot path never do Decimal arithmetic per delta. A price is
an integer number of 1e-4 dollars (`PRICE_SCALE`: "0.5600" -> 5600, the wire's
4 decimal places), a size an integer number of 1e-2 contracts (`SIZE_SCALE`:
"-25.00" -> -2500, the `_fp` fields' 2 places). Legacy integer cents and counts
(docs/protocol.md section 8.14) scale exactly into the same units: 48
cents -> 4800, 25 contracts -> 2500.

Parsing goes from the digits, never through float. The common wire strings are
memoised (a dict lookup per value); anything else takes `units()`, which accepts
exactly what the public pydantic models accept (any finite decimal string or
integer) and refuses the rest with ValueError (the engine then reports the frame
as malformed; the recorder has already stored its bytes).

A value finer than its unit ("0.56005": the exchange may add digits one day) is
never rounded and never dropped: it stays an exact `Decimal` *in the same units*
(Decimal('5600.5')). Ints and Decimals hash, compare and add exactly with each
other, so a ladder holding one stays exact and merely takes the slower path;
the engine counts such values (`EngineStats.subunit_values`).

The public surface converts back to dollars and contracts on access
(`price_decimal`, `size_decimal`).
"""

from __future__ import annotations

from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import Final

__all__ = [
    "MEMO_LIMIT",
    "PRICE_DIGITS",
    "PRICE_SCALE",
    "SIZE_DIGITS",
    "SIZE_SCALE",
    "Units",
    "format_price",
    "format_size",
    "price_decimal",
    "price_memo",
    "price_units",
    "size_decimal",
    "size_memo",
    "size_units",
    "units",
]

PRICE_DIGITS: Final = 4
SIZE_DIGITS: Final = 2
#: Price units per dollar: prices are integers in 1e-4 dollars.
PRICE_SCALE: Final = 10**PRICE_DIGITS
#: Size units per contract: sizes are integers in 1e-2 contracts.
SIZE_SCALE: Final = 10**SIZE_DIGITS
#: The most distinct strings each memo keeps (about 100 bytes an entry).
MEMO_LIMIT: Final = 1 << 16

#: A value in units: an int, or an exact Decimal for a value finer than the unit.
Units = int | Decimal

_EXACT: Final = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)  # scaling never rounds
_INT_DIGITS: Final = 18  # values up to 10**18 units become ints; larger stay Decimal

#: Wire text -> units, for values that are whole units (the hot path's dict lookup).
price_memo: dict[str, int] = {}
size_memo: dict[str, int] = {}


def units(value: str | int, digits: int) -> Units:
    """The exact value of `value` times 10**digits.

    Args:
        value: a decimal string (sign, digits, point, exponent: what `Decimal`
            reads) or an integer.
        digits: the unit's decimal places (4 for prices, 2 for sizes and for
            legacy cents and counts).

    Returns:
        An int when the value is a whole number of units, else an exact Decimal.

    Raises:
        ValueError: not a finite decimal number.
    """
    if type(value) is int:
        return int(value * 10**digits)
    if not isinstance(value, str):
        raise ValueError(f"expected a decimal string or an integer, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    scaled = number.scaleb(digits, _EXACT)
    if scaled.adjusted() > _INT_DIGITS:
        return scaled  # absurdly large, but exact: never expanded into a huge int
    whole = scaled.to_integral_value()
    return int(whole) if scaled == whole else scaled


def _memoised(memo: dict[str, int], value: str | int, digits: int) -> Units:
    found = memo.get(value) if isinstance(value, str) else None
    if found is not None:
        return found
    result = units(value, digits)
    if type(result) is int and type(value) is str and len(memo) < MEMO_LIMIT:
        memo[value] = result
    return result


def price_units(value: str | int) -> Units:
    """A dollar price ("0.5600", or an integer number of dollars) in 1e-4 dollars."""
    return _memoised(price_memo, value, PRICE_DIGITS)


def size_units(value: str | int) -> Units:
    """A contract count ("25.00", or an integer) in 1e-2 contracts."""
    return _memoised(size_memo, value, SIZE_DIGITS)


# ---------------------------------------------------------------------- to the public surface

_PRICE_DECIMALS: Final = tuple(Decimal(p).scaleb(-PRICE_DIGITS) for p in range(PRICE_SCALE + 1))


def price_decimal(value: Units) -> Decimal:
    """Units of 1e-4 dollars as exact dollars (Decimal('0.5600'))."""
    if type(value) is int and 0 <= value <= PRICE_SCALE:
        return _PRICE_DECIMALS[value]
    return Decimal(value).scaleb(-PRICE_DIGITS, _EXACT)


def size_decimal(value: Units) -> Decimal:
    """Units of 1e-2 contracts as exact contracts (Decimal('25.00'))."""
    return Decimal(value).scaleb(-SIZE_DIGITS, _EXACT)


def format_price(value: Units) -> str:
    """The wire text of a price in units ("0.5600"; finer values keep their digits)."""
    return str(price_decimal(value))


def format_size(value: Units) -> str:
    """The wire text of a size in units ("25.00")."""
    return str(size_decimal(value))
