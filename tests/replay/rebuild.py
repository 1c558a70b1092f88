"""Books as a consumer of raw book frames rebuilds them, from the frames alone."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

__all__ = ["rebuilt"]


def rebuilt(bodies: list[dict[str, Any]]) -> list[dict[str, dict[str, dict[D, D]]]]:
    """The books a consumer of raw book frames (their JSON bodies) rebuilds from them
    alone, after each frame (a delta of a market it holds no snapshot of is ignored)."""
    books: dict[str, dict[str, dict[D, D]]] = {}
    after = []
    for body in bodies:
        msg = body["msg"]
        market = msg["market_ticker"]
        if body["type"] == "orderbook_snapshot":
            books[market] = {side: {D(p): D(q) for p, q in msg.get(f"{side}_dollars_fp", [])}
                             for side in ("yes", "no")}  # fmt: skip
        elif market in books:
            side = books[market][msg["side"]]
            price = D(msg["price_dollars"])
            side[price] = side.get(price, D(0)) + D(msg["delta_fp"])
            if not side[price]:
                del side[price]
        after.append({m: {s: dict(levels) for s, levels in b.items()} for m, b in books.items()})
    return after
