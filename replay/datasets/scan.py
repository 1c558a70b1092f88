"""A compiled scanner of frame JSON: the fields book and trade frames route by, in bulk.

`scan` walks every frame of a window once (numba, over the Arrow binary buffer
itself) and validates it as JSON while it picks out what the kernel needs: `type`,
`sid`, `seq`, and in `msg` the market, side, price, delta and `ts_ms` of a delta.
Numbers become exact integers in the wire's units (the rules of `stream.fixed`:
digits only, never float; a value finer than the unit is not exact). Anything it
is not sure of (a string with escapes, a repeated key, a non-integer sid, JSON it
cannot validate) marks the row not ok, and the row goes to the engine, which
decides it as it always does. It also reads a snapshot's ladders and a trade's
fields. The JSON primitives are in `replay.datasets.scan_json`.

Deltas, most of a book channel's frames, and trades come each in one shape from the
exchange: `deltas` and `trades` read those shapes first, comparing the key they expect
at each position (the previous frame's order) byte by byte, with none of the general
walk's bookkeeping, and leave every other row to the general walk
(tests/replay/datasets/test_scan_deltas.py: the same columns for every frame they read;
deltas' scan takes about a fifth of the general walk's time).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from replay.datasets.jit import borrow, forget_if_changed
from replay.datasets.names import NONE, find, name_hash
from replay.datasets.scan_json import (
    decimal_units,
    int_at,
    key,
    ladder,
    scalar,
    skip,
    starts_with,
    string,
    texts_table,
    value_units,
    words_table,
    ws,
)

__all__ = ["KEYS", "ORDER_SLOTS", "TYPES", "deltas", "orders", "scan", "trades"]

#: Types the kernel knows (index + 1 is the kernel's row kind): see kernel.K_*.
TYPES = ("orderbook_delta", "trade", "orderbook_snapshot")
_TOP = ("type", "sid", "seq", "msg")
_MSG = (
    "market_ticker",
    "side",
    "price_dollars",
    "delta_fp",
    "price",
    "delta",
    "ts_ms",
    "trade_id",
    "yes_price_dollars",
    "no_price_dollars",
    "yes_price",
    "no_price",
    "count_fp",
    "count",
    "taker_side",
    "taker_outcome_side",
    "ts",
    "yes_dollars_fp",
    "no_dollars_fp",
    "yes",
    "no",
)
KEYS = _TOP + _MSG


TOP_KEYS, TOP_INDEX = words_table(_TOP)
MSG_KEYS, MSG_INDEX = words_table(_MSG)
TYPE_NAMES, TYPE_INDEX = words_table(TYPES)

# The envelopes' fixed texts, compared eight bytes at a time (`texts_table`): a delta's
# and a trade's start, the seq's key, the msg's.
_ENVELOPE = texts_table((b'{"type":"orderbook_delta","sid":', b'{"type":"trade","sid":',
                         b',"seq":', b',"msg":{'))  # fmt: skip
_HEAD, _TRADE_HEAD, _SEQ, _BODY = range(4)

# A delta as the exchange sends it (docs/protocol.md section 8.1): the envelope's keys in
# this order, no whitespace, `msg`'s keys in the order the previous delta had them.
# `deltas` reads that shape alone, with none of the general walk's bookkeeping; anything
# else is the general walk's.
_DELTA = ("market_ticker", "side", "price_dollars", "delta_fp", "ts_ms", "market_id", "ts",
          "client_order_id", "clock", "subaccount")  # fmt: skip
DELTA_KEYS, DELTA_INDEX = words_table(_DELTA)
DELTA_PATTERNS = texts_table(tuple(b'"%s":' % k.encode() for k in _DELTA))
_NEEDED = 0b1111  # market_ticker, side, price_dollars, delta_fp

# A trade as the exchange sends it (docs/protocol.md section 8.3), read by `trades` alike.
_TRADE = ("trade_id", "market_ticker", "yes_price_dollars", "no_price_dollars", "count_fp",
          "taker_side", "taker_outcome_side", "ts", "ts_ms", "taker_book_side",
          "is_block_trade")  # fmt: skip
TRADE_KEYS, TRADE_INDEX = words_table(_TRADE)
TRADE_PATTERNS = texts_table(tuple(b'"%s":' % k.encode() for k in _TRADE))
#: where each of `_TRADE` goes in a row of `tr` (`scan`'s docstring); -1: not kept there
_TRADE_COLUMN = np.array([0, -1, 6, 8, 10, 2, 4, 18, -1, -1, -1], np.int64)

ORDER_SLOTS = 16  # the msg key order remembered, a key number per position (-1: none yet)


def orders() -> np.ndarray:
    """The fast paths' memory of the msg keys' order (`scan`'s `order`): deltas', then
    trades', none yet."""
    return np.full((2, ORDER_SLOTS), -1, np.int64)


@njit(cache=True, inline="always")
def _literal(d, i, e, k):
    """The end of `_ENVELOPE`'s text k when d[i:] starts with it, else -1."""
    words, masks, lengths = _ENVELOPE
    return i + lengths[k] if starts_with(d, i, e, words, masks, lengths, k) else -1


@njit(cache=True, inline="always")
def _side(d, i, j):
    """The side the string d[i:j] (quotes included) names: 0 "yes", 1 "no", 2 other."""
    if j - i == 5 and d[i + 1] == 121 and d[i + 2] == 101 and d[i + 3] == 115:
        return 0
    if j - i == 4 and d[i + 1] == 110 and d[i + 2] == 111:
        return 1
    return 2


@njit(cache=True, inline="always")
def _market(d, a, b, slots, names, starts):
    """The code of the market name d[a:b] in a `names.NameTable`, and its hash."""
    h = name_hash(d, a, b)
    code, _ = find(d, a, b, h, slots, names, starts)
    return code, h


@njit(cache=True, inline="always")
def _literal_int(d, i, e, k):
    """`_ENVELOPE`'s text k at i, then an integer: (the integer's end, its value), or (-1, 0)."""
    i = _literal(d, i, e, k)
    if i < 0:
        return -1, 0
    j, v, integer = int_at(d, i, e)
    return (j, v) if integer else (-1, 0)


@njit(cache=True, inline="always")
def _next_key(d, i, e, order, p, keys, index, patterns):
    """(the number in a fast path's key table of the key `"name":` at d[i:], the end of
    its colon), or (-1, -1) if there is no key of the table there. The key this position
    had in the last frame (`order[p]`) is compared first (`patterns`: the table's keys
    as `"name":` texts); another is read, and remembered for the next frame."""
    k = order[p]
    words, masks, lengths = patterns
    if k >= 0 and starts_with(d, i, e, words, masks, lengths, k):
        return k, i + lengths[k]
    if i >= e or d[i] != 34:
        return -1, -1
    j, esc = string(d, i, e)
    if j < 0 or esc or j >= e or d[j] != 58:
        return -1, -1
    k = key(d, i + 1, j - 1, keys, index)
    if k < 0:
        return -1, -1
    order[p] = k
    return k, j + 1


@njit(cache=True, inline="always")
def _key_at(d, i, e, order, p, seen, keys, index, patterns):
    """A fast path's next `msg` key, the p-th: (its number, where its value starts, `seen`
    with it), or (-1, i, seen) where the frame leaves the shape (no key of the table, a
    key seen before, the frame's end, more keys than `order` remembers)."""
    if p >= ORDER_SLOTS:
        return -1, i, seen
    k, j = _next_key(d, i, e, order, p, keys, index, patterns)
    if k < 0 or seen & (1 << k) or j >= e:
        return -1, i, seen
    return k, j, seen | (1 << k)


@njit(cache=True, inline="always")
def _then(d, j, e):
    """After a msg value ending at j: (the next key's start, False) after a comma; (-1,
    True) where the msg and the frame end (`}}`, nothing after); (-1, False) otherwise."""
    if j < e and d[j] == 44:
        return j + 1, False
    return -1, j + 2 == e and d[j] == 125 and d[j + 1] == 125


@njit(cache=True, inline="always")
def _envelope(d, a, e, head):
    """(where `msg`'s first key starts, sid, seq) of a frame starting `head` (`"sid":`
    included), then the sid, `"seq":`, the seq and `"msg":{`; (-1, 0, 0) if it does not."""
    i, s = _literal_int(d, a, e, head)
    if i < 0:
        return -1, 0, 0
    i, q = _literal_int(d, i, e, _SEQ)
    if i < 0:
        return -1, 0, 0
    return _literal(d, i, e, _BODY), s, q


@njit(cache=True)
def deltas(data, offsets, rtype, sid, seq, seq_ok, m0, m1, side, price, dsize, num_ok,
           ts_ms, ts_ok, ok, lv, mcode, mhash, order, slots, names, starts):  # fmt: skip
    """Every delta frame in the exchange's shape, read as the general walk reads it:
    `ok[r]` True for those (their columns set), False for every other row (another type,
    whitespace, another envelope order, a legacy or inexact value, an escape in a value
    it keeps, a key it does not know), which the general walk then reads. `order`
    remembers the msg keys' order (a guess checked byte by byte, never trusted)."""
    d, slots, names, starts = borrow(data), borrow(slots), borrow(names), borrow(starts)
    for r in range(rtype.shape[0]):
        ok[r] = False
        a, e = offsets[r], offsets[r + 1]
        i, s, q = _envelope(d, a, e, _HEAD)
        if i < 0:
            continue
        seen = 0
        p = 0
        a0 = a1 = code = sd = pv = dv = ts = 0
        h = np.uint64(0)
        t_ok = False
        good = False
        while True:
            k, i, seen = _key_at(d, i, e, order, p, seen, DELTA_KEYS, DELTA_INDEX,
                                 DELTA_PATTERNS)  # fmt: skip
            if k < 0:
                break
            p += 1
            if k <= 1 or 5 <= k <= 7:  # strings: the market, the side, those passed over
                if d[i] != 34:
                    break
                j, esc = string(d, i, e)
                if j < 0 or (esc and k <= 1):
                    break
                if k == 0:
                    a0, a1 = i + 1, j - 1
                    code, h = _market(d, a0, a1, slots, names, starts)
                elif k == 1:
                    sd = _side(d, i, j)
                    if sd == 2:
                        break
            elif k <= 3:  # price_dollars, delta_fp: decimal strings, exact in the units
                if d[i] != 34:
                    break
                j, v, _, exact = decimal_units(d, i, e, 4 if k == 2 else 2)
                if j < 0 or not exact:
                    break
                if k == 2:
                    pv = v
                else:
                    dv = v
            else:  # ts_ms, clock, subaccount: integers
                j, v, integer = int_at(d, i, e)
                if not integer:
                    break
                if k == 4:
                    ts, t_ok = v, True
            i, good = _then(d, j, e)
            if i < 0:
                break
        if not good or seen & _NEEDED != _NEEDED:
            continue
        ok[r] = True
        rtype[r] = 1  # TYPES[0] + 1
        sid[r], seq[r], seq_ok[r] = s, q, True
        m0[r], m1[r], mcode[r], mhash[r] = a0, a1, code, h
        side[r], price[r], dsize[r], num_ok[r] = sd, pv, dv, True
        ts_ms[r], ts_ok[r] = ts, t_ok
        lv[r, 0] = lv[r, 1] = lv[r, 2] = lv[r, 3] = 0  # no levels
        lv[r, 4] = 1  # (`tr`, a trade's fields, is not read for other rows)


@njit(cache=True)
def trades(data, offsets, rtype, sid, seq, seq_ok, m0, m1, side, price, dsize, num_ok,
           ts_ms, ts_ok, ok, tr, lv, mcode, mhash, order, slots, names, starts):  # fmt: skip
    """Every trade frame in the exchange's shape that `deltas` did not read (`ok[r]`
    False), read as the general walk reads it: `ok[r]` True for those, their columns and
    `tr` row set as the general walk sets them; every other row is left as it was, for
    the general walk (another envelope, whitespace, a legacy key, a key it does not know,
    an escape in a string it keeps, a time that is not an integer, a key twice)."""
    d, slots, names, starts = borrow(data), borrow(slots), borrow(names), borrow(starts)
    for r in range(rtype.shape[0]):
        if ok[r]:
            continue
        a, e = offsets[r], offsets[r + 1]
        i, s, q = _envelope(d, a, e, _TRADE_HEAD)
        if i < 0:
            continue
        for c in range(tr.shape[1]):  # as the general walk starts a row
            tr[r, c] = 0
        tr[r, 1] = tr[r, 3] = tr[r, 5] = -1
        seen = 0
        p = 0
        a0, a1, code, ts = 0, -1, NONE, 0
        h = np.uint64(0)
        t_ok = False
        good = False
        while True:
            k, i, seen = _key_at(d, i, e, order, p, seen, TRADE_KEYS, TRADE_INDEX,
                                 TRADE_PATTERNS)  # fmt: skip
            if k < 0:
                break
            p += 1
            col = _TRADE_COLUMN[k]
            if k <= 1 or k == 5 or k == 6 or k == 9:  # strings: ids, the market, sides
                if d[i] != 34:
                    break
                j, esc = string(d, i, e)
                if j < 0 or (esc and k != 9):
                    break
                if k == 1:
                    a0, a1 = i + 1, j - 1
                    code, h = _market(d, a0, a1, slots, names, starts)
                elif col >= 0:
                    tr[r, col], tr[r, col + 1] = i + 1, j - 1
            elif k <= 4:  # prices and the count, as the general walk flags them
                j, v, present, exact = decimal_units(d, i, e, 4 if k <= 3 else 2)
                if j < 0:
                    break
                tr[r, col] = v
                tr[r, col + 1] = 1 if present and exact else (2 if present else 0)
            elif k <= 8:  # ts (seconds), ts_ms: integers
                j, v, integer = int_at(d, i, e)
                if not integer:
                    break
                if k == 7:
                    tr[r, col], tr[r, col + 1] = v, 1
                else:
                    ts, t_ok = v, True
            else:  # is_block_trade: a literal
                if d[i] == 123 or d[i] == 91:
                    break
                j = scalar(d, i, e)
            if j < 0:
                break
            i, good = _then(d, j, e)
            if i < 0:
                break
        if not good:
            continue
        ok[r] = True
        rtype[r] = 2  # TYPES[1] + 1
        sid[r], seq[r], seq_ok[r] = s, q, True
        m0[r], m1[r], mcode[r], mhash[r] = a0, a1, code, h
        side[r], price[r], dsize[r], num_ok[r] = -1, 0, 0, False
        ts_ms[r], ts_ok[r] = ts, t_ok
        lv[r, 0] = lv[r, 1] = lv[r, 2] = lv[r, 3] = 0  # no levels
        lv[r, 4] = 1


@njit(cache=True)
def scan(data, offsets, rtype, sid, seq, seq_ok, m0, m1, side, price, dsize, num_ok,
         ts_ms, ts_ok, ok, stack, tr, lv, lv_p, lv_s,
         mcode, mhash, slots, names, starts, order, fast=True):  # fmt: skip
    """Scan every frame (see the module docstring); `ok[r]` False: give it to the engine.

    With `fast`, `deltas` and `trades` read the deltas and trades in the exchange's
    shape first (`order`: their memories of the key order, a row each, `orders()`) and
    the general walk the other rows; each gives the general walk's columns for the frames
    it reads.

    `tr[r]` gets a trade's fields: trade_id span (0, 1), taker side span (2, 3; the
    outcome side's at 4, 5), YES price, NO price, count in units and whether each is
    present and exact (6..11: value, flag pairs; current forms first, legacy at
    12..17), `ts` seconds and its flag (18, 19).

    `mcode[r]` gets the market's code in a `names.NameTable` (slots, names, starts),
    looked up while the frame's bytes are in cache: NONE where the frame names no
    market, UNKNOWN where the table does not hold it (`mhash[r]`: its hash)."""
    # the arrays the JSON primitives are called with, without reference counting
    data, stack, lv_p, lv_s = borrow(data), borrow(stack), borrow(lv_p), borrow(lv_s)
    slots, names, starts = borrow(slots), borrow(names), borrow(starts)
    n = rtype.shape[0]
    if fast:
        deltas(data, offsets, rtype, sid, seq, seq_ok, m0, m1, side, price, dsize, num_ok,
               ts_ms, ts_ok, ok, lv, mcode, mhash, order[0], slots, names, starts)  # fmt: skip
        trades(data, offsets, rtype, sid, seq, seq_ok, m0, m1, side, price, dsize, num_ok,
               ts_ms, ts_ok, ok, tr, lv, mcode, mhash, order[1], slots, names, starts)  # fmt: skip
    else:
        ok[:] = False
    cur = 0
    for r in range(n):
        if ok[r]:  # read by `deltas` or `trades`
            continue
        lv[r, 0] = lv[r, 1] = lv[r, 2] = lv[r, 3] = cur
        lv[r, 4] = 1  # the snapshot's levels are all exact, current-form, in range
        for c in range(tr.shape[1]):
            tr[r, c] = 0
        tr[r, 1] = tr[r, 3] = tr[r, 5] = -1
        a, e = offsets[r], offsets[r + 1]
        rtype[r] = 0
        sid[r] = -1
        seq[r] = 0
        seq_ok[r] = False
        m0[r] = 0
        m1[r] = -1
        side[r] = -1
        price[r] = 0
        dsize[r] = 0
        num_ok[r] = False
        ts_ms[r] = 0
        ts_ok[r] = False
        ok[r] = False
        mcode[r] = NONE
        i = ws(data, a, e)
        if i >= e or data[i] != 123:
            continue
        i = ws(data, i + 1, e)
        good = True
        seen = 0
        p_cur = p_leg = d_cur = d_leg = False
        pv = pl = dv = dl = 0
        p_ok = pl_ok = d_ok = dl_ok = True
        if i < e and data[i] == 125:
            i += 1
        else:
            while good:
                if i >= e or data[i] != 34:
                    good = False
                    break
                j, esc = string(data, i, e)
                if j < 0 or esc:
                    good = False
                    break
                k = key(data, i + 1, j - 1, TOP_KEYS, TOP_INDEX)
                i = ws(data, j, e)
                if i >= e or data[i] != 58:
                    good = False
                    break
                i = ws(data, i + 1, e)
                if i >= e:
                    good = False
                    break
                if k >= 0:
                    if seen & (1 << k):
                        good = False
                        break
                    seen |= 1 << k
                if k == 0:  # type
                    if data[i] != 34:
                        j = skip(data, i, e, stack)
                    else:
                        j, esc = string(data, i, e)
                        t = key(data, i + 1, j - 1, TYPE_NAMES, TYPE_INDEX) if j > 0 else -1
                        if esc:
                            good = False
                        rtype[r] = t + 1
                elif k == 1 or k == 2:  # sid, seq
                    if data[i] == 110:
                        j = scalar(data, i, e)
                    else:
                        j, v, integer = int_at(data, i, e)
                        if not integer:
                            good = False
                        elif k == 1:
                            sid[r] = v
                        else:
                            seq[r] = v
                            seq_ok[r] = True
                elif k == 3 and data[i] == 123:  # msg
                    i = ws(data, i + 1, e)
                    mseen = 0
                    if i < e and data[i] == 125:
                        j = i + 1
                    else:
                        while True:
                            if i >= e or data[i] != 34:
                                good = False
                                break
                            j, esc = string(data, i, e)
                            if j < 0 or esc:
                                good = False
                                break
                            q = key(data, i + 1, j - 1, MSG_KEYS, MSG_INDEX)
                            i = ws(data, j, e)
                            if i >= e or data[i] != 58:
                                good = False
                                break
                            i = ws(data, i + 1, e)
                            if i >= e:
                                good = False
                                break
                            if q >= 0:
                                if mseen & (1 << q):
                                    good = False
                                    break
                                mseen |= 1 << q
                            if q == 0 or q == 1:  # market_ticker, side
                                if data[i] == 34:
                                    j, esc = string(data, i, e)
                                    if esc:
                                        good = False
                                    elif q == 0:
                                        m0[r], m1[r] = i + 1, j - 1
                                        mcode[r], mhash[r] = _market(data, i + 1, j - 1, slots,
                                                                     names, starts)  # fmt: skip
                                    else:
                                        side[r] = _side(data, i, j)
                                else:
                                    j = skip(data, i, e, stack)
                                    if data[i] != 110:
                                        good = False
                            elif q == 2:
                                j, pv, p_cur, p_ok = value_units(data, i, e, 4)
                            elif q == 3:
                                j, dv, d_cur, d_ok = value_units(data, i, e, 2)
                            elif q == 4:
                                j, pl, p_leg, pl_ok = value_units(data, i, e, 2)
                            elif q == 5:
                                j, dl, d_leg, dl_ok = value_units(data, i, e, 2)
                            elif q == 6:
                                if data[i] == 110:
                                    j = scalar(data, i, e)
                                else:
                                    j, v, integer = int_at(data, i, e)
                                    if integer:
                                        ts_ms[r] = v
                                        ts_ok[r] = True
                            elif q == 7 or q == 14 or q == 15:  # trade_id, taker sides
                                if data[i] == 34:
                                    j, esc = string(data, i, e)
                                    if not esc and j > 0:
                                        col = 0 if q == 7 else (2 if q == 14 else 4)
                                        tr[r, col], tr[r, col + 1] = i + 1, j - 1
                                else:
                                    j = skip(data, i, e, stack)
                            elif 8 <= q <= 13:  # prices and counts, current then legacy
                                digits = 4 if q <= 9 else 2
                                col = (6, 8, 12, 14, 10, 16)[q - 8]
                                j, v, present, exact = value_units(data, i, e, digits)
                                tr[r, col] = v
                                tr[r, col + 1] = 1 if present and exact else (2 if present else 0)
                            elif q == 17 or q == 18:  # snapshot ladders
                                if data[i] == 110:
                                    j = scalar(data, i, e)
                                    lv[r, 2 * (q - 17)] = lv[r, 2 * (q - 17) + 1] = cur
                                else:
                                    lv[r, 2 * (q - 17)] = cur
                                    j, cur, exact = ladder(data, i, e, lv_p, lv_s, cur)
                                    lv[r, 2 * (q - 17) + 1] = cur
                                    if j < 0:
                                        j = skip(data, i, e, stack)
                                        lv[r, 4] = 0
                                    elif not exact:
                                        lv[r, 4] = 0
                            elif q == 19 or q == 20:  # legacy ladders: the engine's
                                j = skip(data, i, e, stack)
                                lv[r, 4] = 0
                            elif q == 16:  # ts, seconds
                                if data[i] == 110 or data[i] == 34:
                                    j = skip(data, i, e, stack)
                                else:
                                    j, v, integer = int_at(data, i, e)
                                    if integer:
                                        tr[r, 18], tr[r, 19] = v, 1
                            elif data[i] == 34:  # another key's string (market_id...)
                                j, _ = string(data, i, e)
                            else:  # what `skip` reads, a scalar without its loop
                                j = scalar(data, i, e) if data[i] != 123 and data[i] != 91 \
                                    else skip(data, i, e, stack)  # fmt: skip
                            if j < 0 or not good:
                                good = False
                                break
                            i = ws(data, j, e)
                            if i < e and data[i] == 44:
                                i = ws(data, i + 1, e)
                                continue
                            if i < e and data[i] == 125:
                                j = i + 1
                                break
                            good = False
                            break
                else:
                    j = skip(data, i, e, stack)
                if j < 0 or not good:
                    good = False
                    break
                i = ws(data, j, e)
                if i < e and data[i] == 44:
                    i = ws(data, i + 1, e)
                    continue
                if i < e and data[i] == 125:
                    i += 1
                    break
                good = False
        if not good or ws(data, i, e) != e:
            rtype[r] = 0
            continue
        ok[r] = True
        if p_cur:
            price[r] = pv
        elif p_leg:
            price[r] = pl
            p_ok = pl_ok
        if d_cur:
            dsize[r] = dv
        elif d_leg:
            dsize[r] = dl
            d_ok = dl_ok
        num_ok[r] = (p_cur or p_leg) and (d_cur or d_leg) and p_ok and d_ok


forget_if_changed(
    __name__, scan, ("replay.datasets.scan_json", "replay.datasets.jit", "replay.datasets.names")
)
