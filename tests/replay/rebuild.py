"""Books as a consumer of raw book frames rebuilds them, from the frames alone."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

__all__ = ["apply_book_frame", "apply_delta", "rebuilt", "snapshot_levels"]

Levels = dict[D, D]


def snapshot_levels(msg: dict[str, Any]) -> tuple[Levels, Levels]:
    """A snapshot message's YES and NO levels (an absent side: none)."""
    yes, no = ({D(p): D(q) for p, q in msg.get(f"{side}_dollars_fp", [])} for side in ("yes", "no"))
    return yes, no


def apply_delta(yes: Levels, no: Levels, msg: dict[str, Any]) -> None:
    """A delta message applied to one side's level (never below zero; none at zero)."""
    side = yes if msg["side"] == "yes" else no
    price = D(msg["price_dollars"])
    left = side.get(price, D(0)) + D(msg["delta_fp"])
    assert left >= 0, f"{msg} drove a level negative"
    if left:
        side[price] = left
    else:
        side.pop(price, None)


def apply_book_frame(books: dict[str, tuple[Levels, Levels]], body: dict[str, Any]) -> bool:
    """Apply one frame's JSON body to `books` (market -> YES and NO levels): a snapshot
    replaces the market's book, a delta changes one level. False for any other frame and
    for a delta of a market `books` holds no snapshot of."""
    msg = body.get("msg") or {}
    if body.get("type") == "orderbook_snapshot":
        books[msg["market_ticker"]] = snapshot_levels(msg)
        return True
    if body.get("type") != "orderbook_delta" or msg["market_ticker"] not in books:
        return False
    apply_delta(*books[msg["market_ticker"]], msg)
    return True


def rebuilt(bodies: list[dict[str, Any]]) -> list[dict[str, dict[str, Levels]]]:
    """The books rebuilt from raw book frames (their JSON bodies) alone, after each frame
    (a delta of a market with no snapshot yet is left out)."""
    books: dict[str, tuple[Levels, Levels]] = {}
    after = []
    for body in bodies:
        apply_book_frame(books, body)
        after.append({m: {"yes": dict(yes), "no": dict(no)} for m, (yes, no) in books.items()})
    return after
