"""`scan.deltas` and `scan.trades`, the scanner's paths for deltas and trades in the
exchange's shape, give every column the general walk gives, for every frame they read;
everything else (other envelopes, whitespace, legacy or other values, escapes, unknown
keys, broken JSON) they leave to the general walk. Frames built from the protocol's
keys in random orders and forms, and mutated bytes (Hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from replay.datasets import scan
from replay.datasets.arrays import binary_buffers
from replay.datasets.decode import Scratch
from replay.datasets.names import UNKNOWN, NameTable

COLUMNS = ("rtype", "sid", "seq", "seq_ok", "m0", "m1", "side", "price", "dsize", "num_ok",
           "ts_ms", "ts_ok", "ok")  # fmt: skip

CANONICAL = (
    b'{"type":"orderbook_delta","sid":1,"seq":501,"msg":{"market_ticker":"KXA-26NOV21-B85.5",'
    b'"market_id":"c0ffee00-0000-4000-8000-000000000001","clock":501,"price_dollars":"0.4600",'
    b'"delta_fp":"-211.00","side":"yes","ts_ms":1795244476327}}'
)

#: per key, values the deltas path reads (first) and others (the general walk's)
_GOOD = {
    "market_ticker": ['"KXA-26NOV21-B85.5"', '"KXB"'],
    "market_id": ['"c0ffee00-0000-4000-8000-000000000001"', '"a\\"b"'],
    "clock": ["501", "0", "-3"],
    "price_dollars": ['"0.4600"', '"0.46"', '"0.45250"', '"1"'],
    "delta_fp": ['"-211.00"', '"5"', '"10.50"'],
    "side": ['"yes"', '"no"'],
    "ts_ms": ["1795244476327"],
    "ts": ['"2026-11-21T10:00:00Z"'],
    "client_order_id": ['"abc"', '"a\\nb"'],
    "subaccount": ["3"],
}
_BAD = {
    "market_ticker": ['"K\\u0058B"', "null", "7", '"KX\\"B"'],
    "market_id": ["1", "null"],
    "clock": ["1.5", '"501"', "null"],
    "price_dollars": ['"0.45255"', "0.46", '"x"', '""', "null", '"0.4\\u0036"'],
    "delta_fp": ['"0.001"', "-2", '"--1"'],
    "side": ['"YES"', '"y\\u0065s"', "1", '"nope"', '"ye"'],
    "ts_ms": ["1.5e3", '"1795244476327"', "null"],
    "ts": ["1795244476"],
    "client_order_id": ["7"],
    "subaccount": ["3.0"],
}
_EXTRA = {"price": "46", "delta": "-2", "other": '"x"', "yes": "[1, 2]"}  # keys it leaves
_ENVELOPES = [
    '"type":"orderbook_delta","sid":{sid},"seq":{seq}',
    '"sid":{sid},"type":"orderbook_delta","seq":{seq}',
    '"type": "orderbook_delta","sid":{sid},"seq":{seq}',
    '"type":"trade","sid":{sid},"seq":{seq}',
]


TRADE = (
    b'{"type":"trade","sid":3,"seq":1,"msg":{"trade_id":"364258a8-0000-4000-8000-000000000000",'
    b'"market_ticker":"KXA-26NOV21-B85.5","yes_price_dollars":"0.4000","no_price_dollars":'
    b'"0.6000","count_fp":"48.00","taker_side":"yes","taker_outcome_side":"yes",'
    b'"taker_book_side":"bid","is_block_trade":false,"ts":1795244476,"ts_ms":1795244476007}}'
)
_TRADE_GOOD = {
    "trade_id": ['"364258a8-0000-4000-8000-000000000000"', '"t\\"1"'],
    "market_ticker": ['"KXA-26NOV21-B85.5"', '"KXB"'],
    "yes_price_dollars": ['"0.4000"', '"0.40"', '"1"', '"0.40005"'],
    "no_price_dollars": ['"0.6000"', "0.6", "null"],
    "count_fp": ['"48.00"', '"48"', '"0.5"', '"0.001"'],
    "taker_side": ['"yes"', '"no"', '"Yes"'],
    "taker_outcome_side": ['"yes"', '"no"'],
    "taker_book_side": ['"bid"', '"ask"', '"a\\u0062"'],
    "is_block_trade": ["false", "true"],
    "ts": ["1795244476", "null"],
    "ts_ms": ["1795244476007", "null"],
}
_TRADE_BAD = {
    "trade_id": ["7", "null", '"t\\u00311"'],
    "market_ticker": ['"K\\u0058B"', "null", "7"],
    "yes_price_dollars": ['"x"', "[1]", '""', '"0.4\\u0036"'],
    "no_price_dollars": ["{}", '"0.6.0"'],
    "count_fp": ['"--1"', "-2", "true"],
    "taker_side": ["7", "null", '"y\\u0065s"'],
    "taker_outcome_side": ["null", '"n\\"o"'],
    "taker_book_side": ["1", "null"],
    "is_block_trade": ["[]", '{"a":1}', '"no"', "nul"],
    "ts": ['"1795244476"', "1.5", "17952444760000000000000"],
    "ts_ms": ["1.5e3", '"1"'],
}
_TRADE_EXTRA = {"yes_price": "40", "count": "48", "side": '"yes"', "other": '"x"'}
_TRADE_ENVELOPES = [
    '"type":"trade","sid":{sid},"seq":{seq}',
    '"type":"trade","seq":{seq},"sid":{sid}',
    '"type" :"trade","sid":{sid},"seq":{seq}',
    '"type":"orderbook_delta","sid":{sid},"seq":{seq}',
]


@dataclass(frozen=True)
class Shape:
    """A message type's exchange shape and the ways a frame may leave it."""

    keys: list[str]  # always sent
    optional: list[str]
    good: dict[str, list[str]]  # values the fast path reads first (the first of each)
    bad: dict[str, list[str]]  # and values of other forms
    extra: dict[str, str]  # keys the fast path does not read
    envelopes: list[str]  # the exchange's first


DELTA = Shape(["market_ticker", "market_id", "clock", "price_dollars", "delta_fp", "side"],
              ["ts_ms", "ts", "client_order_id", "subaccount"], _GOOD, _BAD, _EXTRA,
              _ENVELOPES)  # fmt: skip
TRADES = Shape(["trade_id", "market_ticker", "yes_price_dollars", "no_price_dollars",
                "count_fp", "taker_side", "taker_outcome_side", "taker_book_side",
                "is_block_trade", "ts", "ts_ms"], [], _TRADE_GOOD, _TRADE_BAD, _TRADE_EXTRA,
               _TRADE_ENVELOPES)  # fmt: skip


@st.composite
def shaped_frames(draw: st.DrawFn, shape: Shape) -> bytes:
    """A frame in `shape` (keys in a random order, optional ones or not), then at most
    one change: a value of another form, a key it does not read, a missing key, another
    envelope, whitespace, something after the end, a byte replaced."""
    keys = shape.keys + draw(st.lists(st.sampled_from(shape.optional), unique=True)
                             if shape.optional else st.just([]))  # fmt: skip
    keys = draw(st.permutations(keys))
    values = {k: draw(st.sampled_from(shape.good[k])) for k in keys}
    envelope, sep, tail = shape.envelopes[0], ",", ""
    sid, seq = "1", draw(st.sampled_from(["501", "0", "9007199254740993"]))
    change = draw(st.sampled_from(["none", "none", "value", "extra", "missing", "envelope",
                                   "space", "tail", "sid", "byte"]))  # fmt: skip
    if change == "value":
        k = draw(st.sampled_from(keys))
        values[k] = draw(st.sampled_from(shape.bad[k]))
    elif change == "extra":
        k = draw(st.sampled_from(sorted(shape.extra)))
        values[k] = shape.extra[k]
        keys = draw(st.permutations([*keys, k]))
    elif change == "missing":
        keys = [k for k in keys if k != draw(st.sampled_from(keys))]
    elif change == "envelope":
        envelope = draw(st.sampled_from(shape.envelopes[1:]))
    elif change == "space":
        sep = ", "
    elif change == "tail":
        tail = draw(st.sampled_from([" ", "x", "}", ","]))
    elif change == "sid":
        sid = draw(st.sampled_from(["1.0", "null", '"1"', "-1"]))
    body = sep.join(f'"{k}":{values[k]}' for k in keys)
    raw = ("{" + envelope.format(sid=sid, seq=seq) + ',"msg":{' + body + "}}" + tail).encode()
    if change == "byte":
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    return raw


def _scan(frames: list[bytes], fast: bool, order: np.ndarray) -> dict[str, np.ndarray]:
    raw = pa.array(frames, pa.binary())
    offsets, data = binary_buffers(raw)
    scratch, table = Scratch(), NameTable()
    table.add(b"KXB")  # one market the table knows, the others unknown
    out, trade, lv, lv_p, lv_s = scratch.arrays(len(raw), len(data))
    mcode, mhash = scratch.codes(len(raw))
    scan.scan(data, offsets, *out, scratch.stack, trade, lv, lv_p, lv_s, mcode, mhash,
              table.slots, table.names, table.starts, order, fast)  # fmt: skip
    got = dict(zip(COLUMNS, (c.copy() for c in out), strict=True))
    got |= {"mcode": mcode.copy(), "mhash": mhash.copy(), "lv": lv.copy(), "tr": trade.copy()}
    return got


def _read_by_fast_paths(frames: list[bytes]) -> np.ndarray:
    raw = pa.array(frames, pa.binary())
    offsets, data = binary_buffers(raw)
    scratch, table = Scratch(), NameTable()
    out, tr, lv, _, _ = scratch.arrays(len(raw), len(data))
    mcode, mhash = scratch.codes(len(raw))
    ok, order = out[12], scan.orders()
    scan.deltas(data, offsets, *out, lv, mcode, mhash, order[0], table.slots, table.names,
                table.starts)  # fmt: skip
    scan.trades(data, offsets, *out, tr, lv, mcode, mhash, order[1], table.slots, table.names,
                table.starts)  # fmt: skip
    return ok.copy()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.one_of(shaped_frames(DELTA), shaped_frames(TRADES)), min_size=1,
                       max_size=12))  # fmt: skip
@example(frames=[CANONICAL, CANONICAL.replace(b'"side":"yes"', b'"side":"no"')])
@example(frames=[TRADE, TRADE.replace(b'"is_block_trade":false', b'"is_block_trade":true')])
def test_the_fast_paths_give_the_general_walks_columns(frames: list[bytes]) -> None:
    # each key order learned, changed, learned again
    frames = [CANONICAL, TRADE, *frames, CANONICAL, TRADE]
    fast = _scan(frames, True, scan.orders())
    slow = _scan(frames, False, scan.orders())
    read = _read_by_fast_paths(frames)
    assert read[:2].all() and read[-2:].all()
    for name in (*COLUMNS, "mcode"):
        assert fast[name].tolist() == slow[name].tolist(), name
    unknown = fast["mcode"] == UNKNOWN  # the hash is kept for names the table lacks
    assert fast["mhash"][unknown].tolist() == slow["mhash"][unknown].tolist()
    for r, by_fast_path in enumerate(read.tolist()):
        is_trade = slow["rtype"][r] == 2
        if by_fast_path:  # no levels; a delta's trade fields are never read
            assert slow["lv"][r, 0] == slow["lv"][r, 1] and slow["lv"][r, 2] == slow["lv"][r, 3]
            assert fast["lv"][r, 4] == slow["lv"][r, 4] == 1
            start = b'{"type":"trade",' if is_trade else b'{"type":"orderbook_delta",'
            assert frames[r].startswith(start)
        else:
            assert fast["lv"][r].tolist() == slow["lv"][r].tolist(), r
        if is_trade or not by_fast_path:
            assert fast["tr"][r].tolist() == slow["tr"][r].tolist(), r
