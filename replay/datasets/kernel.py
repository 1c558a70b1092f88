"""The compiled book kernel: frames as typed columns in, level changes and trades out.

`replay.datasets.driver` hands this module a window of decoded frames as numpy
columns and the state it mirrors from the engine (which wire each `(conn, sid)`
is, each wire's last seq, which wire delivers each market's book). `run` walks
the rows in order and takes every row the engine's own hot path would take the
same way (docs/protocol.md sections 8.1, 9.1-9.5): an in-sequence delta or
snapshot on a book the active connection delivers, an in-sequence trade. It
stops at the first row that needs a decision (a gap, a duplicate, a new book, a
control frame, a make-before-break overlap, a value finer than the units...):
the driver gives that row to the engine itself, mirrors what it did, and calls
`run` again from the next row. So the rules live in one place, `stream`; this
kernel only repeats its arithmetic.

The books are `replay.datasets.ladders`' (one ladder of sizes a side per market, a
slot a cent until a finer price comes, with a bitmap of the prices held); every write
goes through its functions. Compiled with numba (`cache=True`: the first call in a
fresh environment compiles for a few seconds, later processes load the cache).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from replay.datasets.jit import borrow, forget_if_changed, load_u64, store_u64
from replay.datasets.ladders import PRICES, apply_delta, clear, fits, load_levels, size_at

__all__ = ["NONE", "PRICES", "gather", "quote", "run", "trade_fields"]

NONE = np.int64(-(2**62))  # "no value" for int64 state (a wire's last seq)

# row kinds (decode.py)
K_OTHER, K_DELTA, K_TRADE, K_SNAPSHOT = 0, 1, 2, 3
# wire roles (driver.py)
W_SLOW, W_BOOK, W_TRADE = 0, 1, 2
# book_changes kinds
C_CLEAR, C_SNAPSHOT, C_DELTA = 0, 1, 2


@njit(cache=True)
def gather(data, starts, lengths, offsets, out):
    """Copy byte spans data[starts[i]:starts[i]+lengths[i]] to out[offsets[i]:], in order of
    `offsets`, eight bytes at a time where both arrays have room for a whole last word
    (it may write up to 7 bytes past a span's end, which the next span overwrites: `out`
    needs 8 bytes of slack after the last). 7 against 29 ns for a 44-byte trade id."""
    d, o_ = borrow(data), borrow(out)
    for i in range(starts.shape[0]):
        o = offsets[i]
        s = starts[i]
        n = lengths[i]
        if s + n + 8 <= d.shape[0] and o + n + 8 <= o_.shape[0]:
            for k in range(0, n, 8):
                store_u64(o_, o + k, load_u64(d, s + k))
        else:
            for k in range(n):
                o_[o + k] = d[s + k]


@njit(cache=True, inline="always")
def _units(tr, r, current, legacy):
    """A trade's value in units and whether it is present and exact: its current form if
    the frame has one, else its legacy form (scan's `tr` columns)."""
    at = current if tr[r, current + 1] > 0 else legacy
    return tr[r, at], tr[r, at + 1] == 1


@njit(cache=True)
def trade_fields(tr, rows, ts, ts_ok, data, yes, yes_ok, no, no_ok, count, count_ok,
                 exchange, exchange_ok, side):  # fmt: skip
    """The typed fields of a window's trade rows `rows` (`tr`: the scan's trade fields;
    `ts`, `ts_ok`: its `ts_ms` column): YES and NO price and count in units, each with
    whether present and exact; the exchange time in ns (`ts_ms`, else `ts` in seconds);
    the taker side (`taker_side`, else `taker_outcome_side`): 0 "yes", 1 "no" (in any
    case), -1 absent, -2 another text."""
    d = borrow(data)
    for i in range(rows.shape[0]):
        r = rows[i]
        yes[i], yes_ok[i] = _units(tr, r, 6, 12)
        no[i], no_ok[i] = _units(tr, r, 8, 14)
        count[i], count_ok[i] = _units(tr, r, 10, 16)
        if ts_ok[r]:
            exchange[i], exchange_ok[i] = ts[r] * 1_000_000, True
        elif tr[r, 19] == 1:
            exchange[i], exchange_ok[i] = tr[r, 18] * 1_000_000_000, True
        else:
            exchange[i], exchange_ok[i] = 0, False
        t0, t1 = (tr[r, 2], tr[r, 3]) if tr[r, 3] >= tr[r, 2] else (tr[r, 4], tr[r, 5])
        n = t1 - t0
        if n < 0:
            side[i] = -1
        elif n == 3 and d[t0] | 32 == 121 and d[t0 + 1] | 32 == 101 and d[t0 + 2] | 32 == 115:
            side[i] = 0
        elif n == 2 and d[t0] | 32 == 110 and d[t0 + 1] | 32 == 111:
            side[i] = 1
        else:
            side[i] = -2


@njit(cache=True, inline="always")
def quote(sizes, best, lay, qstate, m, valid, row, q_row, q_mkt, q_val, q_n, emit):
    """After a frame changed market m: a quote row if its top of book (best YES bid and
    size, YES ask = 1 - best NO bid and size) or validity changed since the last one.
    With `emit` False, only remember the top (a restored book's)."""
    b = best[m, 0]
    a = best[m, 1]
    bsz = size_at(sizes, lay, m, 0, b) if b >= 0 else 0
    ask = PRICES - 1 - a if a >= 0 else -1
    asz = size_at(sizes, lay, m, 1, a) if a >= 0 else 0
    v = 1 if valid else 0
    if (qstate[m, 0] == 1 and qstate[m, 1] == b and qstate[m, 2] == bsz
            and qstate[m, 3] == ask and qstate[m, 4] == asz and qstate[m, 5] == v):  # fmt: skip
        return
    qstate[m, 0], qstate[m, 1], qstate[m, 2] = 1, b, bsz
    qstate[m, 3], qstate[m, 4], qstate[m, 5] = ask, asz, v
    if emit:
        i = q_n[0]
        q_row[i] = row
        q_mkt[i] = m
        q_val[i, 0], q_val[i, 1], q_val[i, 2], q_val[i, 3], q_val[i, 4] = b, bsz, ask, asz, v
        q_n[0] = i + 1


@njit(cache=True)
def _emit_levels(sizes, lay, m, s, prices, row, stamp, stamp_no, o_n,
                 o_row, o_mkt, o_kind, o_side, o_price, o_size, o_delta, o_valid):  # fmt: skip
    """Write one side's snapshot levels, in the frame's order (first occurrence)."""
    stamp_no[0] += 1
    sn = stamp_no[0]
    for j in range(prices.shape[0]):
        p = prices[j]
        q = size_at(sizes, lay, m, s, p)
        if q > 0 and stamp[s, p] != sn:
            stamp[s, p] = sn
            o_row[o_n] = row
            o_mkt[o_n] = m
            o_kind[o_n] = C_SNAPSHOT
            o_side[o_n] = s
            o_price[o_n] = p
            o_size[o_n] = q
            o_delta[o_n] = q
            o_valid[o_n] = True
            o_n += 1
    return o_n


@njit(cache=True)
def run(
    pos, n, rk, conn, sid, seq, mkt, side, price, dsize, exact,
    ys, ye, y_price, y_size, ns, ne, n_price, n_size,
    wire_of, wire_last, wire_role, wire_lastrow, first_last,
    market_wire, sizes, held, best, lay, stamp, stamp_no,
    o_row, o_mkt, o_kind, o_side, o_price, o_size, o_delta, o_valid, o_n, t_row, t_n,
    qstate, q_row, q_mkt, q_val, q_n,
):  # fmt: skip
    """Process rows from `pos` while the engine's hot path would; return (the first
    row not done, book_changes rows and trade rows written so far, whether it stopped
    because an output buffer is full rather than for the engine)."""
    # the arrays passed to the book and output functions, without reference counting
    sizes, held, best, lay = borrow(sizes), borrow(held), borrow(best), borrow(lay)
    y_price, y_size = borrow(y_price), borrow(y_size)
    n_price, n_size = borrow(n_price), borrow(n_size)
    stamp, stamp_no, qstate = borrow(stamp), borrow(stamp_no), borrow(qstate)
    o_row, o_mkt, o_kind, o_side = borrow(o_row), borrow(o_mkt), borrow(o_kind), borrow(o_side)
    o_price, o_size = borrow(o_price), borrow(o_size)
    o_delta, o_valid = borrow(o_delta), borrow(o_valid)
    q_row, q_mkt, q_val, q_n = borrow(q_row), borrow(q_mkt), borrow(q_val), borrow(q_n)
    cap = o_row.shape[0]
    tcap = t_row.shape[0]
    qcap = q_row.shape[0]
    while pos < n:
        k = rk[pos]
        if k == K_OTHER or not exact[pos]:
            return pos, o_n, t_n, False
        c = conn[pos]
        s_id = sid[pos]
        if c < 0 or s_id < 0 or s_id >= wire_of.shape[1]:
            return pos, o_n, t_n, False
        w = wire_of[c, s_id]
        if w < 0:
            return pos, o_n, t_n, False
        q = seq[pos]
        last = wire_last[w]
        if k == K_TRADE:
            if wire_role[w] != W_TRADE:
                return pos, o_n, t_n, False
            if last == NONE:
                last = first_last
            if t_n >= tcap:
                return pos, o_n, t_n, True
            if last == NONE or q != last + 1:
                return pos, o_n, t_n, False
            wire_last[w] = q
            wire_lastrow[w] = pos
            t_row[t_n] = pos
            t_n += 1
            pos += 1
            continue
        m = mkt[pos]
        if wire_role[w] != W_BOOK or m < 0 or market_wire[m] != w or last == NONE:
            return pos, o_n, t_n, False
        if q != last + 1:
            return pos, o_n, t_n, False
        if o_n >= cap or q_n[0] >= qcap:
            return pos, o_n, t_n, True
        if k == K_DELTA:
            s = side[pos]
            p = price[pos]
            if s < 0 or p < 0 or p >= PRICES or not fits(lay, m, p):
                return pos, o_n, t_n, False  # a price between the ladder's: the mirror fits it
            wire_last[w] = q
            changed, after = apply_delta(sizes, held, best, lay, m, s, p, dsize[pos])
            if changed:
                o_row[o_n] = pos
                o_mkt[o_n] = m
                o_kind[o_n] = C_DELTA
                o_side[o_n] = s
                o_price[o_n] = p
                o_size[o_n] = after
                o_delta[o_n] = dsize[pos]
                o_valid[o_n] = True
                o_n += 1
                quote(sizes, best, lay, qstate, m, True, pos, q_row, q_mkt, q_val, q_n, True)
            pos += 1
            continue
        # K_SNAPSHOT on a book already delivered: replace it
        a, b, c2, d2 = ys[pos], ye[pos], ns[pos], ne[pos]
        if o_n + 1 + (b - a) + (d2 - c2) > cap:
            return pos, o_n, t_n, True
        for j in range(a, b):
            if y_price[j] < 0 or y_price[j] >= PRICES or not fits(lay, m, y_price[j]):
                return pos, o_n, t_n, False
        for j in range(c2, d2):
            if n_price[j] < 0 or n_price[j] >= PRICES or not fits(lay, m, n_price[j]):
                return pos, o_n, t_n, False
        wire_last[w] = q
        clear(sizes, held, best, lay, m)
        o_row[o_n] = pos
        o_mkt[o_n] = m
        o_kind[o_n] = C_CLEAR
        o_side[o_n] = -1
        o_valid[o_n] = True
        o_n += 1
        load_levels(sizes, held, best, lay, m, 0, y_price[a:b], y_size[a:b])
        load_levels(sizes, held, best, lay, m, 1, n_price[c2:d2], n_size[c2:d2])
        o_n = _emit_levels(
            sizes,
            lay,
            m,
            0,
            y_price[a:b],
            pos,
            stamp,
            stamp_no,
            o_n,
            o_row,
            o_mkt,
            o_kind,
            o_side,
            o_price,
            o_size,
            o_delta,
            o_valid,
        )
        o_n = _emit_levels(
            sizes,
            lay,
            m,
            1,
            n_price[c2:d2],
            pos,
            stamp,
            stamp_no,
            o_n,
            o_row,
            o_mkt,
            o_kind,
            o_side,
            o_price,
            o_size,
            o_delta,
            o_valid,
        )
        quote(sizes, best, lay, qstate, m, True, pos, q_row, q_mkt, q_val, q_n, True)
        pos += 1
    return pos, o_n, t_n, False


forget_if_changed(__name__, run, ("replay.datasets.ladders", "replay.datasets.jit"))
