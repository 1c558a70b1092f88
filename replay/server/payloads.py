"""Wire forms of values and of the payloads the protocol layer builds itself.

This module owns how numbers are written on the wire (docs/protocol.md section 7:
4-decimal dollar strings, 2-decimal fixed-point counts, and the legacy integer
cents) and the per-subscription variants the protocol needs: snapshots (empty
side omitted or `[]`, `use_yes_price`, legacy arrays) and NO-side deltas on the
yes scale. It knows nothing of markets' dynamics or of connections.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from replay.server.tape import BookView, TapeEvent
from schemas.envelope import encode_json

__all__ = [
    "COUNT_FP",
    "PRICE_DOLLARS",
    "count_fp",
    "dollars6",
    "snapshot_payload",
    "yes_price_delta_msg",
]

#: Price in cents -> 4-decimal dollar string ("0.4500"), 0 to 100 cents.
PRICE_DOLLARS: Final[tuple[str, ...]] = tuple(f"{c // 100}.{c % 100:02d}00" for c in range(101))

_COUNT_CACHE = 1000
#: Small counts -> 2-decimal fixed-point strings ("12.00"), signed counts via `count_fp`.
COUNT_FP: Final[tuple[str, ...]] = tuple(f"{q}.00" for q in range(_COUNT_CACHE))

_ONE = Decimal(1)


def count_fp(q: int) -> str:
    """A whole count as a 2-decimal fixed-point string, sign kept ("-5.00")."""
    if 0 <= q < _COUNT_CACHE:
        return COUNT_FP[q]
    return f"{q}.00"


def dollars6(cents_x10000: int) -> str:
    """A money value given in 1e-6 dollars as a 6-decimal dollar string."""
    sign = "-" if cents_x10000 < 0 else ""
    v = abs(cents_x10000)
    return f"{sign}{v // 1_000_000}.{v % 1_000_000:06d}"


def _flip(price: str) -> str:
    """NO-leg price q -> yes scale 1 - q (docs/protocol.md section 8.1, `use_yes_price`)."""
    return f"{_ONE - Decimal(price):.4f}"


def _cents(price: str) -> int:
    return int(Decimal(price) * 100)


def _whole(count: str) -> int:
    return int(Decimal(count))


def snapshot_payload(
    view: BookView, *, use_yes_price: bool, empty_side: str, wire: str
) -> dict[str, Any]:
    """The `orderbook_snapshot` msg of `view` for one subscription.

    Args:
        use_yes_price: report NO bids on the yes scale (1 - q), ascending.
        empty_side: "omit" leaves an empty side's key out (spec); "empty_list" sends [].
        wire: "current" (`yes_dollars_fp`...) or "legacy" (`yes`/`no` in cents).
    """
    no = view.no
    if use_yes_price:
        no = tuple(sorted(((_flip(p), q) for p, q in no), key=lambda row: Decimal(row[0])))
    payload: dict[str, Any] = {
        "market_ticker": view.market_ticker,
        "market_id": view.market_id,
        "clock": view.clock,
    }
    if wire == "legacy":
        sides = {"yes": view.yes, "no": no}
        for key, levels in sides.items():
            if levels or empty_side == "empty_list":
                payload[key] = [[_cents(p), _whole(q)] for p, q in levels]
        return payload
    for key, levels in (("yes_dollars_fp", view.yes), ("no_dollars_fp", no)):
        if levels or empty_side == "empty_list":
            payload[key] = [[p, q] for p, q in levels]
    return payload


def yes_price_delta_msg(event: TapeEvent) -> bytes:
    """The msg of an `orderbook_delta` as a `use_yes_price` subscriber sees it.

    Only NO-side deltas change (their price becomes 1 - q); the result is cached
    on the event, so many such subscribers cost one conversion.
    """
    payload = event.payload
    if payload.get("side") != "no":
        return event.msg
    if event.yes_price_msg is None:
        alt = dict(payload)
        if "price_dollars" in alt:
            alt["price_dollars"] = _flip(alt["price_dollars"])
        elif "price" in alt:  # legacy cents
            alt["price"] = 100 - int(alt["price"])
        event.yes_price_msg = encode_json(alt)
    return event.yes_price_msg
