"""Market names to codes, looked up in compiled code from the frames' own bytes.

The scanner leaves each frame's market as a span of its bytes. `NameTable` numbers the
names the driver's mirror registers (0, 1, ... in the order they come), and the scanner
looks each span up as it reads the frame (`name_hash`, `find`): a hash of the span
eight bytes at a time, an open-addressing table at most half full, a comparison with the
stored name. A span not in the table comes back as `UNKNOWN`; the mirror registers its
name and asks again (`NameTable.codes`). Building a string per frame and encoding the
window's strings (what this replaces) took 80 ms per million frames; the lookup adds
about 10 ns to a frame's scan. The lookup functions are inlined into their callers: as
calls they cost twice as much.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from replay.datasets.jit import borrow, forget_if_changed, load_u64

__all__ = ["NONE", "UNKNOWN", "NameTable", "find", "name_hash"]

NONE = -1  # the frame names no market
UNKNOWN = -2  # a name the table does not hold (yet)

_MULT = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0xCBF29CE484222325)
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)


@njit(cache=True, inline="always")
def name_hash(d, a, b):
    """A 64-bit hash of d[a:b], eight bytes at a time (the last eight overlapping)."""
    n = b - a
    h = _SEED ^ np.uint64(n)
    if n < 8:
        for j in range(a, b):
            h = (h ^ np.uint64(d[j])) * _MULT
    else:
        while a + 8 < b:
            h = (h ^ load_u64(d, a)) * _MULT
            h ^= h >> np.uint64(29)
            a += 8
        h = (h ^ load_u64(d, b - 8)) * _MULT
    # every bit of the input into the low bits the table uses (murmur3's finalizer)
    h ^= h >> np.uint64(33)
    h *= _FMIX1
    h ^= h >> np.uint64(33)
    h *= _FMIX2
    h ^= h >> np.uint64(33)
    return h


@njit(cache=True, inline="always")
def _same(d, a, names, s, n):
    """Whether d[a:a+n] equals names[s:s+n] (eight bytes at a time)."""
    if n < 8:
        for j in range(n):  # noqa: SIM110 - compiled by numba: a loop, not a generator
            if d[a + j] != names[s + j]:
                return False
        return True
    j = 0
    while j + 8 < n:
        if load_u64(d, a + j) != load_u64(names, s + j):
            return False
        j += 8
    return load_u64(d, a + n - 8) == load_u64(names, s + n - 8)


@njit(cache=True, inline="always")
def find(d, a, b, h, slots, names, starts):
    """The code of d[a:b] in the table, or UNKNOWN; also the slot where it is or would go."""
    mask = slots.shape[0] - 1
    i = np.int64(h & np.uint64(mask))
    n = b - a
    while True:
        code = slots[i]
        if code < 0:
            return UNKNOWN, i
        s = starts[code]
        if starts[code + 1] - s == n and _same(d, a, names, s, n):
            return code, i
        i = (i + 1) & mask


@njit(cache=True)
def _codes(data, m0, m1, slots, names, starts, out, hashes):
    """out[r] = the code of span r (NONE where m1 < m0, UNKNOWN where not in the table),
    hashes[r] its hash."""
    data, slots, names, starts = borrow(data), borrow(slots), borrow(names), borrow(starts)
    for r in range(m0.shape[0]):
        a, b = m0[r], m1[r]
        if b < a:
            out[r] = NONE
            continue
        h = name_hash(data, a, b)
        hashes[r] = h
        out[r], _ = find(data, a, b, h, slots, names, starts)


@njit(cache=True)
def _insert(word, code, slots, names, starts):
    """Put `word` (not in the table yet), stored at names[starts[code]:], in the table."""
    _, i = find(word, 0, word.shape[0], name_hash(word, 0, word.shape[0]), slots, names, starts)
    slots[i] = code


@njit(cache=True)
def _insert_all(count, slots, names, starts):
    """Put the first `count` names in a table of empty `slots` (a rehash: one call, not a
    call a name from Python)."""
    for code in range(count):
        word = names[starts[code] : starts[code + 1]]
        _, i = find(word, 0, word.shape[0], name_hash(word, 0, word.shape[0]), slots, names,
                    starts)  # fmt: skip
        slots[i] = code


class NameTable:
    """Names numbered in the order they are added; spans of frame bytes looked up."""

    def __init__(self) -> None:
        self.slots = np.full(64, -1, np.int32)
        self.names = np.zeros(256, np.uint8)
        self.starts = np.zeros(64, np.int64)  # name i is names[starts[i]:starts[i + 1]]
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, name: bytes) -> int:
        """Number `name` (which the table must not hold yet): its code."""
        code, start = self.count, int(self.starts[self.count])
        end = start + len(name)
        if end > len(self.names):
            self.names = np.concatenate([self.names, np.zeros(max(end, len(self.names)), np.uint8)])
        if code + 2 > len(self.starts):
            self.starts = np.concatenate([self.starts, np.zeros(len(self.starts), np.int64)])
        self.names[start:end] = np.frombuffer(name, np.uint8)
        self.starts[code + 1] = end
        self.count += 1
        if 2 * self.count > len(self.slots):  # at most half full: probes stay short
            self._rehash(4 * len(self.slots))
        else:
            _insert(self.names[start:end], code, self.slots, self.names, self.starts)
        return code

    def _rehash(self, size: int) -> None:
        self.slots = np.full(size, -1, np.int32)
        _insert_all(len(self), self.slots, self.names, self.starts)

    def codes(
        self, data: np.ndarray, m0: np.ndarray, m1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(each span's code, NONE or UNKNOWN; each span's hash, where it has one)."""
        out = np.empty(len(m0), np.int32)
        hashes = np.empty(len(m0), np.uint64)
        _codes(data, m0, m1, self.slots, self.names, self.starts, out, hashes)
        return out, hashes


forget_if_changed(__name__, _codes, ("replay.datasets.jit",))
