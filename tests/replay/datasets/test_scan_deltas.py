"""`scan.deltas`, the scanner's path for deltas in the exchange's shape, gives every
column the general walk gives, for every frame it reads; everything else (other key
orders, whitespace, legacy or inexact values, escapes, unknown keys, broken JSON) it
leaves to the general walk. Frames built from the protocol's keys in random orders and
forms, and mutated bytes (Hypothesis)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from replay.datasets import scan
from replay.datasets.decode import Scratch, _binary
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


@st.composite
def delta_frames(draw: st.DrawFn) -> bytes:
    """A delta in the exchange's shape (keys in a random order, optional ones or not),
    then at most one change: a value of another form, a key it does not read, a missing
    key, another envelope, whitespace, something after the end, a byte replaced."""
    keys = ["market_ticker", "market_id", "clock", "price_dollars", "delta_fp", "side"]
    keys += draw(st.lists(st.sampled_from(["ts_ms", "ts", "client_order_id", "subaccount"]),
                          unique=True))  # fmt: skip
    keys = draw(st.permutations(keys))
    values = {k: draw(st.sampled_from(_GOOD[k])) for k in keys}
    envelope, sep, tail = _ENVELOPES[0], ",", ""
    sid, seq = "1", draw(st.sampled_from(["501", "0", "9007199254740993"]))
    change = draw(st.sampled_from(["none", "none", "value", "extra", "missing", "envelope",
                                   "space", "tail", "sid", "byte"]))  # fmt: skip
    if change == "value":
        k = draw(st.sampled_from(keys))
        values[k] = draw(st.sampled_from(_BAD[k]))
    elif change == "extra":
        k = draw(st.sampled_from(sorted(_EXTRA)))
        values[k] = _EXTRA[k]
        keys = draw(st.permutations([*keys, k]))
    elif change == "missing":
        keys = [k for k in keys if k != draw(st.sampled_from(keys))]
    elif change == "envelope":
        envelope = draw(st.sampled_from(_ENVELOPES[1:]))
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
    offsets, data = _binary(raw)
    scratch, table = Scratch(), NameTable()
    table.add(b"KXB")  # one market the table knows, the others unknown
    out, trade, lv, lv_p, lv_s = scratch.arrays(len(raw), len(data))
    mcode, mhash = scratch.codes(len(raw))
    scan.scan(data, offsets, *out, scratch.stack, trade, lv, lv_p, lv_s, mcode, mhash,
              table.slots, table.names, table.starts, order, fast)  # fmt: skip
    got = dict(zip(COLUMNS, (c.copy() for c in out), strict=True))
    got |= {"mcode": mcode.copy(), "mhash": mhash.copy(), "lv": lv.copy(), "tr": trade.copy()}
    return got


def _read_by_deltas(frames: list[bytes]) -> np.ndarray:
    raw = pa.array(frames, pa.binary())
    offsets, data = _binary(raw)
    scratch, table = Scratch(), NameTable()
    out, _, lv, _, _ = scratch.arrays(len(raw), len(data))
    mcode, mhash = scratch.codes(len(raw))
    ok = out[12]
    scan.deltas(data, offsets, *out, lv, mcode, mhash, np.full(scan.ORDER_SLOTS, -1, np.int64),
                table.slots, table.names, table.starts)  # fmt: skip
    return ok.copy()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(delta_frames(), min_size=1, max_size=12))
@example(frames=[CANONICAL, CANONICAL.replace(b'"side":"yes"', b'"side":"no"')])
def test_the_deltas_path_gives_the_general_walks_columns(frames: list[bytes]) -> None:
    frames = [CANONICAL, *frames, CANONICAL]  # the key order learned, changed, learned again
    fast = _scan(frames, True, np.full(scan.ORDER_SLOTS, -1, np.int64))
    slow = _scan(frames, False, np.full(scan.ORDER_SLOTS, -1, np.int64))
    read = _read_by_deltas(frames)
    assert read[0] and read[-1]
    for name in (*COLUMNS, "mcode"):
        assert fast[name].tolist() == slow[name].tolist(), name
    unknown = fast["mcode"] == UNKNOWN  # the hash is kept for names the table lacks
    assert fast["mhash"][unknown].tolist() == slow["mhash"][unknown].tolist()
    for r, by_deltas in enumerate(read.tolist()):
        if by_deltas:  # a delta: no levels; its trade fields are never read
            assert slow["lv"][r, 0] == slow["lv"][r, 1] and slow["lv"][r, 2] == slow["lv"][r, 3]
            assert fast["lv"][r, 4] == slow["lv"][r, 4] == 1
            assert frames[r].startswith(b'{"type":"orderbook_delta",')
        else:
            assert fast["lv"][r].tolist() == slow["lv"][r].tolist(), r
            assert fast["tr"][r].tolist() == slow["tr"][r].tolist(), r
