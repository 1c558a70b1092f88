"""Wire subscriptions (what the server knows) and consumer subscriptions (what a user asked for).

A *wire subscription* is one server `sid` on one connection: its channel, the
params it was subscribed with, its sequence watermark, and the books it seeded.
It is created when a `subscribe` command is sent (so replay rebuilds it from the
recorded command) and bound to its sid by the `subscribed` ack.

A *consumer subscription* is a user's stream: channel, optional ticker filter,
delivery kind, queue. It either OWNS its wire subscriptions (a live client: the
engine subscribes for it, and re-subscribes after every reconnect under the same
durable client id `cid`), or ATTACHES to the wire subscriptions of its channel,
filtered by ticker (replay, and consumers that ride a recorder's subscriptions).
Both kinds go through the same delivery code, so live and replay agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from stream.book import OrderBook
from stream.queues import DeliveryQueue

__all__ = ["ConsumerSubscription", "Delivery", "WireSubscription", "market_set"]


class Delivery(StrEnum):
    """What a consumer receives per message."""

    FRAME = "frame"  # `stream.events.Frame`: raw bytes, clocks, envelope (fastest)
    MODEL = "model"  # the pydantic model of `schemas.parse`
    STRUCT = "struct"  # the msgspec mirror of that model (`schemas.structs`): fast, typed
    BOOK = "book"  # an immutable `BookSnapshot` per update of a subscribed market


def market_set(params: dict[str, Any]) -> frozenset[str] | None:
    """The market tickers a subscribe's params name, or None for all markets."""
    tickers = params.get("market_tickers")
    if tickers is None and params.get("market_ticker") is not None:
        tickers = [params["market_ticker"]]
    return None if tickers is None else frozenset(str(t) for t in tickers)


@dataclass(eq=False, slots=True)
class ConsumerSubscription:
    """One user stream. `cid` is durable across reconnects; sids are not."""

    cid: int
    channel: str
    params: dict[str, Any]
    tickers: frozenset[str] | None  # delivery filter (None: every market)
    owns_wire: bool
    delivery: Delivery
    queue: DeliveryQueue | None  # None: owned only to keep a wire subscription alive
    active: bool = True
    subscribed_once: bool = False  # re-issues after a reconnect ask for fresh snapshots
    held: list[Any] = field(default_factory=list)  # frames of a standby connection
    seen: set[int] | None = None  # payload digests during a make-before-break overlap


@dataclass(eq=False, slots=True)
class WireSubscription:
    """One server subscription (sid) on one connection."""

    conn: int
    channel: str
    cmd_id: int | None
    params: dict[str, Any]
    owner: ConsumerSubscription | None
    sequenced: bool
    is_book: bool
    sid: int | None = None
    last_seq: int | None = None
    last_raw: bytes | None = None  # the last frame of a sequenced data channel
    high_seq: int | None = None  # the highest seq seen there (gaps after a reset count from it)
    markets: frozenset[str] | None = None
    books: dict[str, OrderBook] = field(default_factory=dict)
    awaiting_snapshot: set[str] = field(default_factory=set)
    warned_no_book: set[str] = field(default_factory=set)
    resync_since_ns: int | None = None  # mono_ns of the pending get_snapshot, if any
    resync_cmd_id: int | None = None
    targets: list[ConsumerSubscription] = field(default_factory=list)
    use_yes_price: bool = False
    pending_since_ns: int = 0
    frames: int = 0  # frames received on this subscription (any verdict)
    last_mono_ns: int | None = None  # when the last one arrived: the staleness watchdog's input

    def key(self) -> tuple[str, frozenset[str] | None]:
        """What makes two wire subscriptions equivalent across connections."""
        return self.channel, self.markets
