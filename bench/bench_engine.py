"""Engine throughput: 1M realistic frames through the Session API, against a hand-written ceiling.

    python bench/bench_engine.py [--frames N]

Measured in one process, on the same frames:
  ceiling      msgspec tagged-union parse, seq check per sid, dict-per-side book apply
               with exact integers (prices in 1e-4 dollars, sizes in 1e-2 contracts), an
               async generator, `async for` consumers; no engine. The same with Decimal
               prices and sizes is kept as a second baseline.
  engine raw   the real path: a Source feeding `Engine`, three consumers (orderbook_delta,
               ticker, trade) reading `Frame`s with `async for`, books maintained
  engine model the same, consumers receiving pydantic models (`schemas.parse`), against
               the typed ceiling: the int-book ceiling composed with validate_json alone
  engine struct the same, consumers receiving the msgspec mirrors (`schemas.structs`)
Both runs use the same garbage-collector setting (frozen start-up heap, raised gen0
threshold: docs/performance.md section 4.2).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Metric, emit
from mix import realistic_frames

from stream import Session, Source
from stream.queues import Overflow


class ListSource(Source):
    """Feeds a list of frames as fast as the consumers read (what replay does)."""

    owns_wire = False

    def __init__(self, frames: list[bytes], mix: Any) -> None:
        self.frames, self.subscribes, self.acks = frames, mix.subscribes, mix.acks
        self.markets = mix.markets
        self.books_held = 0

    def now(self) -> tuple[int, int]:
        return 0, 0

    async def send(self, conn: int, raw: bytes) -> None:
        pass

    async def run(self, session: Session) -> None:
        engine = session.engine
        t = 1_795_244_476_000_000_000
        engine.connection_attempt(t, 0)
        engine.connection_opened(1, t, 0)
        for raw in self.subscribes:
            engine.command_sent(raw, t, 0, 1)
        for raw in self.acks:
            engine.frame_received(raw, t, 0, 1)
        await session.pump()
        frames = self.frames
        receive = engine.frame_received
        for start in range(0, len(frames), 64):
            for i in range(start, min(start + 64, len(frames))):
                receive(frames[i], t + i, i, 1)
            if session.needs_pump:
                await session.pump()
        self.books_held = sum(engine.book(m) is not None for m in self.markets)


async def run_engine(frames: list[bytes], mix: Any, raw: bool, struct: bool = False) -> float:
    source = ListSource(frames, mix)
    session = Session(source, default_overflow=Overflow.BLOCK, default_maxsize=4096)
    counts = {"orderbook_delta": 0, "ticker": 0, "trade": 0}

    async def consume(sub: Any, channel: str) -> None:
        n = 0
        async for _ in sub:
            n += 1
        counts[channel] = n

    subs = [
        await session.subscribe("orderbook_delta", raw=raw, struct=struct),
        await session.subscribe("ticker", raw=raw, struct=struct),
        await session.subscribe("trade", raw=raw, struct=struct),
    ]
    tasks = [asyncio.create_task(consume(s, s.channel)) for s in subs]
    t0 = time.perf_counter()
    await session.start()
    await session._task  # type: ignore[misc]  # the source ran dry
    await session.close()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    delivered = sum(counts.values())
    assert delivered == len(frames), (delivered, len(frames))
    assert source.books_held == len(mix.markets), source.books_held
    return len(frames) / elapsed


# ------------------------------------------------------------------ the hand-written ceiling


class _Delta(msgspec.Struct, gc=False):
    market_ticker: str
    side: str
    price_dollars: Decimal
    delta_fp: Decimal


class _Snap(msgspec.Struct, gc=False):
    market_ticker: str
    yes_dollars_fp: list[tuple[Decimal, Decimal]] = []
    no_dollars_fp: list[tuple[Decimal, Decimal]] = []


class _Head(msgspec.Struct, gc=False):
    market_ticker: str


class DeltaF(msgspec.Struct, tag="orderbook_delta", tag_field="type", gc=False):
    sid: int
    seq: int
    msg: _Delta


class SnapF(msgspec.Struct, tag="orderbook_snapshot", tag_field="type", gc=False):
    sid: int
    seq: int
    msg: _Snap


class TickerF(msgspec.Struct, tag="ticker", tag_field="type", gc=False):
    sid: int
    msg: _Head


class TradeF(msgspec.Struct, tag="trade", tag_field="type", gc=False):
    sid: int
    seq: int
    msg: _Head


class Ceiling:
    """The hand-written ceiling's per-frame work: msgspec parse, seq check per sid,
    dict-per-side Decimal book apply. Shared by the engine and replay benchmarks."""

    def __init__(self) -> None:
        self.decode = msgspec.json.Decoder(DeltaF | SnapF | TickerF | TradeF).decode
        self.books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
        self.last: dict[int, int] = {}

    def step(self, raw: bytes) -> Any:
        """The frame's struct, or None if its seq does not follow."""
        f = self.decode(raw)
        seq = getattr(f, "seq", None)
        if seq is not None:
            prev = self.last.get(f.sid)
            if prev is not None and seq != prev + 1:
                return None
            self.last[f.sid] = seq
        kind = type(f)
        if kind is DeltaF:
            m = f.msg
            yes, no = self.books[m.market_ticker]
            side = yes if m.side == "yes" else no
            q = side.get(m.price_dollars, 0) + m.delta_fp
            if q > 0:
                side[m.price_dollars] = q
            else:
                side.pop(m.price_dollars, None)
        elif kind is SnapF:
            m = f.msg
            self.books[m.market_ticker] = (dict(m.yes_dollars_fp), dict(m.no_dollars_fp))
        return f


class _DeltaInt(msgspec.Struct, gc=False):
    market_ticker: str
    side: str
    price_dollars: str
    delta_fp: str


class _SnapInt(msgspec.Struct, gc=False):
    market_ticker: str
    yes_dollars_fp: list[tuple[str, str]] = []
    no_dollars_fp: list[tuple[str, str]] = []


class DeltaI(msgspec.Struct, tag="orderbook_delta", tag_field="type", gc=False):
    sid: int
    seq: int
    msg: _DeltaInt


class SnapI(msgspec.Struct, tag="orderbook_snapshot", tag_field="type", gc=False):
    sid: int
    seq: int
    msg: _SnapInt


def _fixed(memo: dict[str, int], text: str) -> int:
    """Hand-written: the wire's fixed decimal places, digits read as one integer."""
    value = memo.get(text)
    if value is None:
        whole, _, frac = text.partition(".")
        value = memo[text] = int(whole + frac)
    return value


class FixedCeiling:
    """The same per-frame work as `Ceiling`, with exact integers instead of Decimals:
    prices in 1e-4 dollars and sizes in 1e-2 contracts, read from the wire's digits
    (memoised per distinct string), dict-per-side integer books."""

    def __init__(self) -> None:
        self.decode = msgspec.json.Decoder(DeltaI | SnapI | TickerF | TradeF).decode
        self.books: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
        self.last: dict[int, int] = {}
        self.prices: dict[str, int] = {}
        self.sizes: dict[str, int] = {}

    def step(self, raw: bytes) -> Any:
        """The frame's struct, or None if its seq does not follow."""
        f = self.decode(raw)
        seq = getattr(f, "seq", None)
        if seq is not None:
            prev = self.last.get(f.sid)
            if prev is not None and seq != prev + 1:
                return None
            self.last[f.sid] = seq
        kind = type(f)
        if kind is DeltaI:
            m = f.msg
            price = self.prices.get(m.price_dollars)
            if price is None:
                price = _fixed(self.prices, m.price_dollars)
            size = self.sizes.get(m.delta_fp)
            if size is None:
                size = _fixed(self.sizes, m.delta_fp)
            yes, no = self.books[m.market_ticker]
            side = yes if m.side == "yes" else no
            q = side.get(price, 0) + size
            if q > 0:
                side[price] = q
            else:
                side.pop(price, None)
        elif kind is SnapI:
            m = f.msg
            prices, sizes = self.prices, self.sizes
            self.books[m.market_ticker] = (
                {_fixed(prices, p): _fixed(sizes, q) for p, q in m.yes_dollars_fp},
                {_fixed(prices, p): _fixed(sizes, q) for p, q in m.no_dollars_fp},
            )
        return f


async def run_ceiling(frames: list[bytes], fixed: bool = True) -> float:
    step = (FixedCeiling() if fixed else Ceiling()).step

    async def stream() -> Any:
        for i, raw in enumerate(frames):
            f = step(raw)
            if f is not None:
                yield i, f

    t0 = time.perf_counter()
    n = 0
    async for _ in stream():
        n += 1
    elapsed = time.perf_counter() - t0
    assert n == len(frames)
    return n / elapsed


FIXED = "ceiling: msgspec+seq+int book+async gen"
DECIMAL = "ceiling: msgspec+seq+Decimal book+async gen"
VALIDATION = "pydantic validate_json alone (union)"
COMPOSED = "typed ceiling: int-book ceiling + validate_json"


def validate_rate(frames: list[bytes]) -> float:
    """Frames/s of pydantic's own validation of the frames (the models' bound)."""
    from schemas.parse import parse_message

    t0 = time.perf_counter()
    for raw in frames:
        parse_message(raw)
    return len(frames) / (time.perf_counter() - t0)


def main() -> None:
    n = 1_000_000
    if "--frames" in sys.argv:
        n = int(sys.argv[sys.argv.index("--frames") + 1])
    mix = realistic_frames(n)
    frames = mix.frames
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    ceiling = asyncio.run(run_ceiling(frames, fixed=True))
    decimal_ceiling = asyncio.run(run_ceiling(frames, fixed=False))
    raw_rate = asyncio.run(run_engine(frames, mix, raw=True))
    metrics = [
        Metric(FIXED, ceiling, "frames/s"),
        Metric(DECIMAL, decimal_ceiling, "frames/s", baseline=FIXED),
        Metric(
            "engine, raw Frames, books maintained",
            raw_rate,
            "frames/s",
            baseline=FIXED,
            target=">= 400k, ratio >= 0.8",
        ),
        Metric(
            "engine, raw Frames (vs the Decimal ceiling)",
            raw_rate,
            "frames/s",
            baseline=DECIMAL,
        ),
    ]
    # Typed messages are bounded by pydantic's validation (docs/performance.md section 4.12).
    # Their ceiling composes the fixed-point ceiling with validate_json of
    # the same frames: 1 / (1/ceiling + 1/validation).
    typed_n = min(n, 300_000)
    validation = validate_rate(frames[:typed_n])
    composed = 1 / (1 / ceiling + 1 / validation)
    model_rate = asyncio.run(run_engine(frames[:typed_n], mix, raw=False))
    struct_rate = asyncio.run(run_engine(frames[:typed_n], mix, raw=False, struct=True))
    metrics += [
        Metric(VALIDATION, validation, "frames/s"),
        Metric(COMPOSED, composed, "frames/s"),
        Metric(
            "engine, pydantic models", model_rate, "frames/s", baseline=COMPOSED,
            target="ratio >= 0.8",
        ),
        Metric(
            "engine, struct mirrors (typed fast path)", struct_rate, "frames/s",
            baseline=COMPOSED, target=">= 150k",
        ),
    ]  # fmt: skip
    emit(
        metrics,
        notes=f"{n:,} frames, {sum(map(len, frames)) / n:.0f} B average, "
        f"{len(mix.markets)} markets.",
    )


if __name__ == "__main__":
    main()
