"""Where the derive's books live: every market's two price ladders, in pools that grow.

A ladder is an array of sizes (int64, 1e-2 contracts) indexed by price (1e-4 dollars,
0..1 dollar). Most Kalshi markets trade in whole cents, so a market's ladder starts
with one slot a cent (101 slots a side, `CENT`); the first price between cents (a
sub-penny market) moves it to one slot a price unit (10,001 a side), its levels
copied over (`Books.fit`). A dense ladder per market for every price unit cost 160 KB
a market, resident (numpy asks for huge pages on arrays that large): 80 MB for 500
markets, most of a derive's cache misses, and 800 MB for the 5,000 markets of a
whole-exchange capture; cent ladders are 1.6 KB.

Beside the sizes, each ladder has a bitmap of the prices it holds (`held`, 32 slots a
word), so a clear, the next best after the best level empties, and a depth row's top
levels cost what the book holds, not the ladder's length. `best[m, s]` is the best
(highest) price held on side s of market m, -1 when none. Where a market's ladders
are is `lay[m]`: (first slot in `sizes`, price units a slot (`CENT` or 1), first word
in `held`, slots a side, words a side). The functions on a ladder are inlined into
their callers (`inline="always"`): as calls, each cost about 100 ns, most of a delta's
time (docs/performance.md section 6.3).

The numba functions take the four arrays (`Books.arrays()`); every write goes through
`set_level` (or `apply_delta`, `load_levels`, `clear`), which keep sizes, bitmap and
best together. A price must fit its market's ladder (`fits`; the kernel leaves a row
whose price does not to the engine, and the driver's mirror fits the ladder before it
writes, docs/performance.md section 6, "The books").
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = [
    "CENT", "PRICES", "Books", "apply_delta", "below", "clear", "fits", "grown",
    "load_levels", "set_level", "size_at",
]  # fmt: skip

PRICES = 10_001  # prices 0..10000 in 1e-4 dollars
CENT = 100  # a new market's ladder: one slot a cent
_TOP = PRICES - 1


@njit(cache=True, inline="always")
def _high_bit(w):
    """The index of the highest set bit of 0 < w < 2**32."""
    b = 0
    if w >= 1 << 16:
        w >>= 16
        b += 16
    if w >= 1 << 8:
        w >>= 8
        b += 8
    if w >= 1 << 4:
        w >>= 4
        b += 4
    if w >= 1 << 2:
        w >>= 2
        b += 2
    if w >= 2:
        b += 1
    return b


@njit(cache=True, inline="always")
def fits(lay, m, p):
    """Whether market m's ladder has a slot for price p."""
    return lay[m, 1] == 1 or p % CENT == 0


@njit(cache=True, inline="always")
def _slot(lay, m, p):
    """The slot of price p (which fits) in market m's ladders (by a constant: fast)."""
    return p if lay[m, 1] == 1 else p // CENT


@njit(cache=True, inline="always")
def size_at(sizes, lay, m, s, p):
    """The size at price p (which fits) on side s of market m."""
    return sizes[lay[m, 0] + s * lay[m, 3] + _slot(lay, m, p)]


@njit(cache=True, inline="always")
def below(held, lay, m, s, p):
    """The highest price under p that side s of market m holds, or -1."""
    if p <= 0:
        return -1
    step = lay[m, 1]
    first = lay[m, 2] + s * lay[m, 4]
    k = p - 1 if step == 1 else (p - 1) // CENT  # the highest slot under p
    i = k >> 5
    w = held[first + i] & ((2 << (k & 31)) - 1)  # the bits at or under k
    while w == 0:
        i -= 1
        if i < 0:
            return -1
        w = held[first + i]
    return ((i << 5) + _high_bit(w)) * step


@njit(cache=True, inline="always")
def set_level(sizes, held, best, lay, m, s, p, size):
    """Level p (which fits) of side s of market m to `size` (0 or less: empty)."""
    k = _slot(lay, m, p)
    at = lay[m, 0] + s * lay[m, 3] + k
    word = lay[m, 2] + s * lay[m, 4] + (k >> 5)
    bit = np.int64(1) << (k & 31)
    if size > 0:
        sizes[at] = size
        held[word] |= bit
        if p > best[m, s]:
            best[m, s] = p
        return
    if sizes[at] != 0:
        sizes[at] = 0
    if held[word] & bit:
        held[word] &= ~bit
        if best[m, s] == p:
            best[m, s] = below(held, lay, m, s, p)


@njit(cache=True, inline="always")
def apply_delta(sizes, held, best, lay, m, s, p, d):
    """Add d to level p (which fits) of side s of market m: (changed, size after)."""
    old = size_at(sizes, lay, m, s, p)
    if old == 0:
        if d <= 0:
            return False, np.int64(0)
        set_level(sizes, held, best, lay, m, s, p, d)
        return True, d
    new = old + d
    if new > 0:
        set_level(sizes, held, best, lay, m, s, p, new)
        return new != old, new
    set_level(sizes, held, best, lay, m, s, p, 0)
    return True, np.int64(0)


@njit(cache=True)
def load_levels(sizes, held, best, lay, m, s, prices, quantities):
    """Set levels (which fit) on a side already cleared; a repeated price keeps its
    last size."""
    for k in range(prices.shape[0]):
        set_level(sizes, held, best, lay, m, s, prices[k], quantities[k])


@njit(cache=True)
def clear(sizes, held, best, lay, m):
    """Empty market m's book, writing only the levels `held` marks."""
    for s in range(2):
        top = best[m, s]
        if top >= 0:
            first = lay[m, 0] + s * lay[m, 3]
            hfirst = lay[m, 2] + s * lay[m, 4]
            for i in range(_slot(lay, m, top) >> 5, -1, -1):
                w = held[hfirst + i]
                if w != 0:
                    while w != 0:
                        low = w & -w
                        sizes[first + (i << 5) + _high_bit(low)] = 0
                        w ^= low
                    held[hfirst + i] = 0
        best[m, s] = -1


class Books:
    """Every market's book (see the module docstring); markets are numbered from 0 in
    the order they are added."""

    def __init__(self) -> None:
        self.sizes = np.zeros(0, np.int64)
        self.held = np.zeros(0, np.int64)
        self.best = np.full((0, 2), -1, np.int64)
        self.lay = np.zeros((0, 5), np.int64)
        self.markets = 0
        self._used = self._hused = 0

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sizes, held, best, lay) for the numba functions (valid until the next `add`
        or `fit`, which may grow them)."""
        return self.sizes, self.held, self.best, self.lay

    def add(self, markets: int) -> None:
        """Room for `markets` markets: the new ones empty, on cent ladders."""
        if markets <= self.markets:
            return
        if markets > len(self.lay):
            size = max(markets, 2 * len(self.lay), 8)
            self.best = grown(self.best, size, -1)
            self.lay = grown(self.lay, size, 0)
        for m in range(self.markets, markets):
            self.lay[m] = self._region(CENT)
        self.markets = markets

    def fit(self, m: int, prices: Any) -> None:
        """Give market m a ladder with a slot for each of `prices` (units: an array, or a
        sequence of ints; levels kept)."""
        step = int(self.lay[m, 1])
        if step == 1 or not (np.asarray(prices, np.int64) % step).any():
            return
        base, _, hbase, slots, words = (int(v) for v in self.lay[m])
        held = [np.flatnonzero(self.sizes[base + s * slots : base + (s + 1) * slots])
                for s in range(2)]  # fmt: skip
        kept = [self.sizes[base + s * slots + held[s]].copy() for s in range(2)]
        self.sizes[base : base + 2 * slots] = 0
        self.held[hbase : hbase + 2 * words] = 0
        self.lay[m] = self._region(1)
        for s in range(2):
            load_levels(self.sizes, self.held, self.best, self.lay, m, s, held[s] * step,
                        kept[s])  # fmt: skip

    def _region(self, step: int) -> tuple[int, int, int, int, int]:
        """Room for a market's two ladders of one slot a `step`: its `lay` row."""
        slots = _TOP // step + 1
        words = (slots + 31) >> 5
        base, hbase = self._used, self._hused
        self._used += 2 * slots
        self._hused += 2 * words
        if self._used > len(self.sizes):
            self.sizes = grown(self.sizes, max(self._used, 2 * len(self.sizes)), 0)
        if self._hused > len(self.held):
            self.held = grown(self.held, max(self._hused, 2 * len(self.held)), 0)
        return base, step, hbase, slots, words


def grown(a: np.ndarray, size: int, fill: int, axis: int = 0) -> np.ndarray:
    """`a` in an array `size` long along `axis`, the new room holding `fill`."""
    shape = list(a.shape)
    shape[axis] = size
    out = np.full(shape, fill, a.dtype)
    out[tuple(slice(0, n) for n in a.shape)] = a
    return out
