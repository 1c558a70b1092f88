"""Message model parse rate: `schemas.parse.parse_message` against two ceilings.

    python bench/bench_schemas.py [--frames N] [--json]

One process, the same frames for every parser: a realistic mix built from the golden
corpus templates (70% orderbook deltas, 20% ticker, 8% trade, 2% snapshots over 576
markets, current wire form, the workload of docs/performance.md section 1).

  msgspec      a `msgspec.json.Decoder` over a tagged union of Structs with the same
               fields typed as Decimal / datetime / int: the hand-written ceiling
  pydantic     a `TypeAdapter` over a discriminated union of plain pydantic models
               (stock Decimal and datetime fields, no legacy support, no exactness
               for JSON floats, no unit control): what pydantic alone costs
  parse        `parse_message`: the real models (exact decimals, explicit units,
               legacy forms accepted, errors translated)
  parse legacy `parse_message` over the same mix rewritten in the legacy integer-cent form
               (the slow path: the current form fails, then the legacy conversion runs)
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Metric, emit, rate

from schemas.parse import parse_message

FRAMES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "frames"
T_S = 1_795_266_960


# --- the frame mix ------------------------------------------------------------------------


def _template(type_: str, name: str) -> dict[str, Any]:
    cases = json.loads((FRAMES / f"{type_}.json").read_text(encoding="utf-8"))
    frame: dict[str, Any] = json.loads(next(c["raw"] for c in cases if c["name"] == name))
    return frame


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def build_mix(n: int, n_markets: int = 576, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    """The current-form frames and the same frames in the legacy form."""
    rng = random.Random(seed)
    delta_t = _template("orderbook_delta", "current")
    ticker_t = _template("ticker", "current")
    trade_t = _template("trade", "current")
    snap_t = _template("orderbook_snapshot", "current_both_sides")
    cities = ("NY", "CHI", "MIA", "AUS", "DEN", "LAX")
    tickers = [f"KXHIGH{cities[i % 6]}-26NOV21-B{40 + i % 96}.5" for i in range(n_markets)]
    current: list[bytes] = []
    legacy: list[bytes] = []
    seq = {2: 0, 3: 0}
    for i in range(n):
        r = rng.random()
        ticker = tickers[rng.randrange(n_markets)]
        ms = (T_S + i // 1000) * 1000 + rng.randint(0, 999)
        iso = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
        p = rng.randint(2, 98)
        if r < 0.70:
            seq[2] += 1
            frame = json.loads(json.dumps(delta_t))
            msg = frame["msg"]
            count = rng.randint(1, 300) * rng.choice((1, -1))
            msg.update(market_ticker=ticker, clock=seq[2], price_dollars=f"0.{p:02d}00")
            msg.update(delta_fp=f"{count}.00", side=rng.choice(("yes", "no")))
            msg.update(ts=iso.replace("+00:00", "Z"), ts_ms=ms)
            frame["seq"] = seq[2]
            old = {**msg, "price": p, "delta": count}
            del old["price_dollars"], old["delta_fp"]
        elif r < 0.90:
            frame = json.loads(json.dumps(ticker_t))
            msg = frame["msg"]
            volume, oi = rng.randint(0, 99999), rng.randint(0, 9999)
            msg.update(market_ticker=ticker, price_dollars=f"0.{p:02d}00")
            msg.update(yes_bid_dollars=f"0.{p - 1:02d}00", yes_ask_dollars=f"0.{p + 1:02d}00")
            msg.update(volume_fp=f"{volume}.00", open_interest_fp=f"{oi}.00")
            msg.update(ts=ms // 1000, ts_ms=ms, time=iso.replace("+00:00", "Z"))
            old = {**msg, "price": p, "yes_bid": p - 1, "yes_ask": p + 1}
            old.update(volume=volume, open_interest=oi)
            for key in ("price", "yes_bid", "yes_ask"):
                del old[f"{key}_dollars"]
            del old["volume_fp"], old["open_interest_fp"]
        elif r < 0.98:
            seq[3] += 1
            frame = json.loads(json.dumps(trade_t))
            msg = frame["msg"]
            count = rng.randint(1, 200)
            msg.update(market_ticker=ticker, yes_price_dollars=f"0.{p:02d}00")
            msg.update(no_price_dollars=f"0.{100 - p:02d}00", count_fp=f"{count}.00")
            msg.update(trade_id=f"{rng.getrandbits(32):08x}-ee49-470d-82d8-11418bda6fed")
            msg.update(ts=ms // 1000, ts_ms=ms)
            frame["seq"] = seq[3]
            old = {**msg, "yes_price": p, "no_price": 100 - p, "count": count}
            del old["yes_price_dollars"], old["no_price_dollars"], old["count_fp"]
        else:
            seq[2] += 1
            frame = json.loads(json.dumps(snap_t))
            msg = frame["msg"]
            mid = rng.randint(20, 80)
            yes = [(q, rng.randint(1, 900)) for q in range(max(1, mid - 20), mid)]
            no = [(q, rng.randint(1, 900)) for q in range(max(1, 80 - mid), 100 - mid)]
            msg.update(market_ticker=ticker, clock=seq[2])
            msg["yes_dollars_fp"] = [[f"0.{q:02d}00", f"{c}.00"] for q, c in yes]
            msg["no_dollars_fp"] = [[f"0.{q:02d}00", f"{c}.00"] for q, c in no]
            frame["seq"] = seq[2]
            old = {**msg, "yes": [list(x) for x in yes], "no": [list(x) for x in no]}
            del old["yes_dollars_fp"], old["no_dollars_fp"]
        current.append(_dumps(frame))
        legacy.append(_dumps({**frame, "msg": old}))
    return current, legacy


# --- ceiling 1: msgspec Structs -----------------------------------------------------------


class _DeltaMsg(msgspec.Struct, gc=False):
    market_ticker: str
    market_id: str
    clock: int
    price_dollars: Decimal
    delta_fp: Decimal
    side: str
    client_order_id: str | None = None
    subaccount: int | None = None
    ts: dt.datetime | None = None
    ts_ms: int | None = None


class _TickerMsg(msgspec.Struct, gc=False):
    market_ticker: str
    market_id: str
    price_dollars: Decimal
    yes_bid_dollars: Decimal
    yes_ask_dollars: Decimal
    volume_fp: Decimal
    open_interest_fp: Decimal
    dollar_volume: int
    dollar_open_interest: int
    yes_bid_size_fp: Decimal
    yes_ask_size_fp: Decimal
    last_trade_size_fp: Decimal
    ts_ms: int
    ts: int | None = None
    time: dt.datetime | None = None


class _TradeMsg(msgspec.Struct, gc=False):
    trade_id: str
    market_ticker: str
    yes_price_dollars: Decimal
    no_price_dollars: Decimal
    count_fp: Decimal
    taker_outcome_side: str
    taker_book_side: str
    is_block_trade: bool
    ts: int
    ts_ms: int
    taker_side: str | None = None


class _SnapshotMsg(msgspec.Struct, gc=False):
    market_ticker: str
    market_id: str
    clock: int
    yes_dollars_fp: list[tuple[Decimal, Decimal]] = []
    no_dollars_fp: list[tuple[Decimal, Decimal]] = []


class _SDelta(msgspec.Struct, tag="orderbook_delta", tag_field="type", gc=False):
    msg: _DeltaMsg
    sid: int | None = None
    seq: int | None = None


class _STicker(msgspec.Struct, tag="ticker", tag_field="type", gc=False):
    msg: _TickerMsg
    sid: int | None = None
    seq: int | None = None


class _STrade(msgspec.Struct, tag="trade", tag_field="type", gc=False):
    msg: _TradeMsg
    sid: int | None = None
    seq: int | None = None


class _SSnapshot(msgspec.Struct, tag="orderbook_snapshot", tag_field="type", gc=False):
    msg: _SnapshotMsg
    sid: int | None = None
    seq: int | None = None


_MSGSPEC = msgspec.json.Decoder(_SDelta | _STicker | _STrade | _SSnapshot)

# --- ceiling 2: plain pydantic ------------------------------------------------------------


class _P(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class _PDeltaMsg(_P):
    market_ticker: str
    market_id: str
    clock: int
    price_dollars: Decimal
    delta_fp: Decimal
    side: Literal["yes", "no"]
    client_order_id: str | None = None
    subaccount: int | None = None
    ts: dt.datetime | None = None
    ts_ms: dt.datetime | None = None


class _PTickerMsg(_P):
    market_ticker: str
    market_id: str
    price_dollars: Decimal
    yes_bid_dollars: Decimal
    yes_ask_dollars: Decimal
    volume_fp: Decimal
    open_interest_fp: Decimal
    dollar_volume: int
    dollar_open_interest: int
    yes_bid_size_fp: Decimal
    yes_ask_size_fp: Decimal
    last_trade_size_fp: Decimal
    ts_ms: dt.datetime
    ts: dt.datetime | None = None
    time: dt.datetime | None = None


class _PTradeMsg(_P):
    trade_id: str
    market_ticker: str
    yes_price_dollars: Decimal
    no_price_dollars: Decimal
    count_fp: Decimal
    taker_outcome_side: Literal["yes", "no"]
    taker_book_side: Literal["bid", "ask"]
    is_block_trade: bool
    ts: dt.datetime
    ts_ms: dt.datetime
    taker_side: Literal["yes", "no"] | None = None


class _PSnapshotMsg(_P):
    market_ticker: str
    market_id: str
    clock: int
    yes_dollars_fp: tuple[tuple[Decimal, Decimal], ...] = ()
    no_dollars_fp: tuple[tuple[Decimal, Decimal], ...] = ()


class _PEnvelope(_P):
    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    sending_ts_ms: dt.datetime | None = None


class _PDelta(_PEnvelope):
    type: Literal["orderbook_delta"]
    msg: _PDeltaMsg


class _PTicker(_PEnvelope):
    type: Literal["ticker"]
    msg: _PTickerMsg


class _PTrade(_PEnvelope):
    type: Literal["trade"]
    msg: _PTradeMsg


class _PSnapshot(_PEnvelope):
    type: Literal["orderbook_snapshot"]
    msg: _PSnapshotMsg


_PYDANTIC: TypeAdapter[Any] = TypeAdapter(
    Annotated[_PDelta | _PTicker | _PTrade | _PSnapshot, Field(discriminator="type")]
)

# --- run ----------------------------------------------------------------------------------


def _loop(parse: Any, frames: list[bytes]) -> None:
    # results are dropped: never retain parsed messages (docs/performance.md section 4.5)
    for raw in frames:
        parse(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    current, legacy = build_mix(args.frames)
    # Sanity: every parser accepts every frame, and the two forms give equal models.
    for raw, old in zip(current[:2000], legacy[:2000], strict=True):
        _MSGSPEC.decode(raw)
        _PYDANTIC.validate_json(raw)
        assert parse_message(raw) == parse_message(old)
    gc.collect()
    gc.freeze()  # the same GC setting for every parser (docs/performance.md section 4.2)
    n = len(current)
    ceiling = rate(n, lambda: _loop(_MSGSPEC.decode, current))
    plain = rate(n, lambda: _loop(_PYDANTIC.validate_json, current))
    ours = rate(n, lambda: _loop(parse_message, current))
    ours_legacy = rate(n, lambda: _loop(parse_message, legacy))
    size = sum(map(len, current)) / n
    emit(
        [
            Metric("msgspec Struct union (ceiling)", ceiling, "frames/s"),
            Metric(
                "pydantic TypeAdapter, plain models",
                plain,
                "frames/s",
                baseline="msgspec Struct union (ceiling)",
            ),
            Metric(
                "parse_message",
                ours,
                "frames/s",
                baseline="pydantic TypeAdapter, plain models",
            ),
            Metric(
                "parse_message (vs msgspec)",
                ours,
                "frames/s",
                baseline="msgspec Struct union (ceiling)",
            ),
            Metric(
                "parse_message, legacy-form mix", ours_legacy, "frames/s", baseline="parse_message"
            ),
        ],
        notes=f"{n} frames, {size:.0f} B average; 70% deltas, 20% ticker, 8% trade, 2% snapshots",
    )


if __name__ == "__main__":
    main()
