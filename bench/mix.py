"""A realistic, deterministic frame mix for benchmarks (docs/performance.md section 1).

70% orderbook deltas, 20% ticker, 8% trade, 2% snapshots over ~500 markets, in the
current Kalshi wire form (docs/protocol.md section 8), about 345 bytes a frame on average.
Deltas are consistent with a book the generator keeps, so an engine applying them
never sees a negative level. Three subscriptions: orderbook_delta (sid 1), ticker
(sid 2), trade (sid 3); seq counts per sid from 1.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

__all__ = ["ACKS", "SUBSCRIBES", "Mix", "markets", "realistic_frames"]

SUBSCRIBES = [
    {"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}},
    {"id": 2, "cmd": "subscribe", "params": {"channels": ["ticker"]}},
    {"id": 3, "cmd": "subscribe", "params": {"channels": ["trade"]}},
]
ACKS = [
    {"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}},
    {"id": 2, "type": "subscribed", "msg": {"channel": "ticker", "sid": 2}},
    {"id": 3, "type": "subscribed", "msg": {"channel": "trade", "sid": 3}},
]


def markets(n: int) -> list[str]:
    """n distinct tickers: six cities, a strike per six markets (B40.5, B41.5, ...).
    (Until 2026-12-06 the strike was 40 + i % 60, which with the city at i % 6 named only
    60 distinct markets however many were asked for.)"""
    cities = ("NY", "CHI", "MIA", "AUS", "DEN", "LAX")
    return [f"KXHIGH{cities[i % 6]}-26NOV21-B{40 + i // 6}.5" for i in range(n)]


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Mix:
    """The generated frames plus what a consumer needs to set up for them."""

    frames: list[bytes]
    markets: list[str]
    subscribes: list[bytes]
    acks: list[bytes]


def realistic_frames(n: int, n_markets: int = 500, seed: int = 1) -> Mix:
    rng = random.Random(seed)
    tickers = markets(n_markets)
    seqs = {1: 0, 2: 0, 3: 0}
    books: dict[str, dict[str, dict[int, int]]] = {}
    frames: list[bytes] = []
    ts = 1_795_244_476

    def next_seq(sid: int) -> int:
        seqs[sid] += 1
        return seqs[sid]

    def snapshot(ticker: str) -> bytes:
        mid = rng.randint(20, 80)
        book = {
            "yes": {p: rng.randint(1, 900) for p in range(max(1, mid - 25), mid)},
            "no": {p: rng.randint(1, 900) for p in range(max(1, 100 - mid - 25), 100 - mid)},
        }
        books[ticker] = book
        return _dumps(
            {
                "type": "orderbook_snapshot",
                "sid": 1,
                "seq": next_seq(1),
                "msg": {
                    "market_ticker": ticker,
                    "market_id": f"{abs(hash(ticker)) % 10**12:012d}-id",
                    "clock": seqs[1],
                    "yes_dollars_fp": [
                        [f"0.{p:02d}00", f"{q}.00"] for p, q in sorted(book["yes"].items())
                    ],
                    "no_dollars_fp": [
                        [f"0.{p:02d}00", f"{q}.00"] for p, q in sorted(book["no"].items())
                    ],
                },
            }
        )

    for ticker in tickers:  # every market starts with a snapshot
        frames.append(snapshot(ticker))
    while len(frames) < n:
        r = rng.random()
        ticker = tickers[rng.randrange(n_markets)]
        ts += rng.random() < 0.01
        if r < 0.70:
            side = "yes" if rng.random() < 0.5 else "no"
            levels = books[ticker][side]
            if levels and rng.random() < 0.5:
                price = rng.choice(list(levels))
                delta = -rng.randint(1, levels[price])
                levels[price] += delta
                if levels[price] == 0:
                    del levels[price]
            else:
                price = rng.randint(1, 99)
                delta = rng.randint(1, 300)
                levels[price] = levels.get(price, 0) + delta
            frames.append(
                _dumps(
                    {
                        "type": "orderbook_delta",
                        "sid": 1,
                        "seq": next_seq(1),
                        "msg": {
                            "market_ticker": ticker,
                            "market_id": "c0ffee00-0000-4000-8000-000000000001",
                            "clock": seqs[1],
                            "price_dollars": f"0.{price:02d}00",
                            "delta_fp": f"{delta}.00",
                            "side": side,
                            "ts_ms": ts * 1000 + rng.randint(0, 999),
                        },
                    }
                )
            )
        elif r < 0.90:
            p = rng.randint(2, 98)
            frames.append(
                _dumps(
                    {
                        "type": "ticker",
                        "sid": 2,
                        "msg": {
                            "market_ticker": ticker,
                            "market_id": "c0ffee00-0000-4000-8000-000000000001",
                            "price_dollars": f"0.{p:02d}00",
                            "yes_bid_dollars": f"0.{p - 1:02d}00",
                            "yes_ask_dollars": f"0.{p + 1:02d}00",
                            "volume_fp": f"{rng.randint(0, 99999)}.00",
                            "open_interest_fp": f"{rng.randint(0, 9999)}.00",
                            "dollar_volume": rng.randint(0, 99999),
                            "dollar_open_interest": rng.randint(0, 9999),
                            "yes_bid_size_fp": f"{rng.randint(1, 500)}.00",
                            "yes_ask_size_fp": f"{rng.randint(1, 500)}.00",
                            "last_trade_size_fp": "1.00",
                            "ts": ts,
                            "ts_ms": ts * 1000 + 5,
                        },
                    }
                )
            )
        elif r < 0.98:
            p = rng.randint(2, 98)
            frames.append(
                _dumps(
                    {
                        "type": "trade",
                        "sid": 3,
                        "seq": next_seq(3),
                        "msg": {
                            "trade_id": f"{rng.getrandbits(64):016x}-0000-4000-8000-000000000000",
                            "market_ticker": ticker,
                            "yes_price_dollars": f"0.{p:02d}00",
                            "no_price_dollars": f"0.{100 - p:02d}00",
                            "count_fp": f"{rng.randint(1, 200)}.00",
                            "taker_side": "yes",
                            "taker_outcome_side": "yes",
                            "taker_book_side": "bid",
                            "is_block_trade": False,
                            "ts": ts,
                            "ts_ms": ts * 1000 + 7,
                        },
                    }
                )
            )
        else:
            frames.append(snapshot(ticker))
    return Mix(frames[:n], tickers, [_dumps(c) for c in SUBSCRIBES], [_dumps(a) for a in ACKS])


if __name__ == "__main__":
    mix = realistic_frames(100_000)
    sizes = [len(f) for f in mix.frames]
    print(f"{len(sizes)} frames, {sum(sizes) / len(sizes):.0f} B average")
