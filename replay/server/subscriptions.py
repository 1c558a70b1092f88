"""Subscriptions and the router that fans each exchange event out to them.

This module owns a subscription's server-side state (sid, channel, market and key
filters, its own seq counter: docs/protocol.md section 4, "seq counts messages on one
subscription only") and the routing table shared by every connection, so that all
connections see the same events and each subscription numbers its own frames. A
payload is encoded once per event; per subscription only the envelope is written.
It knows nothing of sockets; a subscription hands its frames to its session's sink,
each with whether its event goes as a binary message (`TapeEvent.binary`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from replay.server.payloads import yes_price_delta_msg
from replay.server.tape import TapeEvent
from schemas.channels import SEQUENCED_CHANNELS, Channel

__all__ = ["KEYED_CHANNELS", "FrameSink", "Router", "Subscription"]

#: Where a connection's frames go: the frame, and True to send it as a binary message.
FrameSink = Callable[[bytes, bool], None]

#: Channels whose events are filtered by an id list (index ids, underlyings) or a shard.
KEYED_CHANNELS = frozenset(
    {
        Channel.CFBENCHMARKS_VALUE,
        Channel.CFBENCHMARKS_VALUE_5HZ,
        Channel.PYTH_VALUE,
        Channel.COMMUNICATIONS,
    }
)


class Subscription:
    """One subscription of one connection.

    Attributes:
        sid: server-assigned id, from 1 per connection.
        channel: the wire channel.
        seq: the seq the next sequenced frame takes.
        markets: the market filter, in the order added; None means all markets.
        keys: the index-id / underlying filter (None: all-mode); empty: nothing flows.
        shard: (factor, key) for communications sharding, or None.
    """

    __slots__ = (
        "channel",
        "emit",
        "keyed",
        "keys",
        "markets",
        "options",
        "seq",
        "sequenced",
        "shard",
        "sid",
        "use_yes_price",
    )

    def __init__(
        self,
        sid: int,
        channel: str,
        emit: FrameSink,
        *,
        first_seq: int,
        markets: list[str] | None,
        keys: set[str] | None = None,
        shard: tuple[int, int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.sid = sid
        self.channel = channel
        self.emit = emit
        self.seq = first_seq
        self.sequenced = channel in SEQUENCED_CHANNELS
        self.markets: dict[str, None] | None = None if markets is None else dict.fromkeys(markets)
        self.keys = keys
        self.shard = shard
        self.keyed = channel in KEYED_CHANNELS and (keys is not None or shard is not None)
        self.options = options or {}
        self.use_yes_price = bool(self.options.get("use_yes_price"))

    def take_seq(self) -> int:
        """The seq of the next sequenced frame; advances the counter."""
        seq = self.seq
        self.seq += 1
        return seq

    def last_seq(self) -> int:
        """The seq of the last frame sent (first_seq - 1 before any)."""
        return self.seq - 1

    def accepts_key(self, key: str | None) -> bool:
        if self.shard is not None:
            factor, shard_key = self.shard
            return key is not None and _stable_hash(key) % factor == shard_key
        return self.keys is None or key in self.keys

    def deliver(self, event: TapeEvent) -> None:
        """Write the envelope for this subscription and hand the frame to its session."""
        if self.keyed and not self.accepts_key(event.key):
            return
        msg = event.msg
        if self.use_yes_price and event.type == "orderbook_delta":
            msg = yes_price_delta_msg(event)
        if self.sequenced:
            seq = self.seq
            self.seq = seq + 1
            frame = b'{"type":"%b","sid":%d,"seq":%d,"msg":%b}' % (event.type_b, self.sid, seq, msg)
        else:
            frame = b'{"type":"%b","sid":%d,"msg":%b}' % (event.type_b, self.sid, msg)
        self.emit(frame, event.binary)


def _stable_hash(text: str) -> int:
    # Python's str hash is salted per process; shards must be stable across runs.
    value = 2166136261
    for ch in text.encode():
        value = ((value ^ ch) * 16777619) & 0xFFFFFFFF
    return value


class Router:
    """Which subscriptions of which connections get which events (shared by all)."""

    def __init__(self) -> None:
        self._all: dict[str, list[Subscription]] = {}
        self._by_market: dict[str, dict[str, list[Subscription]]] = {}

    def add(self, sub: Subscription) -> None:
        """Start routing to `sub` (its market filter as it is now)."""
        if sub.markets is None:
            self._all.setdefault(sub.channel, []).append(sub)
        else:
            self.add_markets(sub, list(sub.markets), already_listed=True)

    def remove(self, sub: Subscription) -> None:
        """Stop routing to `sub`; frames already handed over are not recalled."""
        subs = self._all.get(sub.channel)
        if subs is not None and sub in subs:
            subs.remove(sub)
        if sub.markets is not None:
            self.remove_markets(sub, list(sub.markets), already_unlisted=True)

    def add_markets(
        self, sub: Subscription, tickers: Iterable[str], *, already_listed: bool = False
    ) -> None:
        table = self._by_market.setdefault(sub.channel, {})
        for ticker in tickers:
            if not already_listed:
                assert sub.markets is not None
                if ticker in sub.markets:
                    continue
                sub.markets[ticker] = None
            subs = table.setdefault(ticker, [])
            if sub not in subs:
                subs.append(sub)

    def remove_markets(
        self, sub: Subscription, tickers: Iterable[str], *, already_unlisted: bool = False
    ) -> None:
        table = self._by_market.get(sub.channel, {})
        for ticker in tickers:
            if not already_unlisted and sub.markets is not None:
                sub.markets.pop(ticker, None)
            subs = table.get(ticker)
            if subs is not None and sub in subs:
                subs.remove(sub)
                if not subs:
                    del table[ticker]

    def publish(self, events: Iterable[TapeEvent]) -> None:
        """Fan each event out to every subscription that wants it, in order."""
        every = self._all
        by_market = self._by_market
        for event in events:
            channel = event.channel
            subs = every.get(channel)
            if subs:
                for sub in subs:
                    sub.deliver(event)
            if event.market is not None:
                table = by_market.get(channel)
                if table:
                    subs = table.get(event.market)
                    if subs:
                        for sub in subs:
                            sub.deliver(event)
