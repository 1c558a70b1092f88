"""The engine's memory of message copies across redundant feeds, in compiled code.

With redundant feeds the engine delivers each message once: `stream.arbitration.Copies`
counts the copies of each message (a trade by its `trade_id`) every connection brought,
remembers them for a window of receive time, and says which copy to deliver. The
derive's kernel takes each feed's trades in bulk; `CompiledCopies` keeps the same
memory in numpy arrays, so that those trades are counted in compiled code
(`count_trades`, from the frames' own bytes), and the engine counts the trades it
handles itself in the same memory (`count`, as its arbiter's `copies`). The rule is
`Copies`' to the letter (tests/replay/datasets/test_copies.py holds both to the same
answers on random streams).

Keys are bytes: a trade's is its `trade_id` value as the frame spells it (what
`stream.arbitration.message_key` takes), after a first byte 1; any other key's is its
tuple's `repr` after a first byte 0.

Layout: an entry for each key, in a ring in the order the keys were first seen (the
order they are forgotten in), numbered by a counter that never goes back (`q`); the
keys' bytes in an arena; a hash index of the live entries (open addressing, linear
probing, deletion by backward shift); each entry's count per connection in a chain of
nodes from a pool with a free list. A compiled call that would need more room than the
arrays have changes nothing and says so; the wrapper grows the arrays and calls again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from replay.datasets.jit import borrow, forget_if_changed, load_u64
from stream.arbitration import message_key

__all__ = ["CompiledCopies"]

_DELIVER, _DROP, _ROOM = 1, 0, -1
_TRADE_ID = np.frombuffer(b'"trade_id":', np.uint8)
_SKIP = np.full(256, len(_TRADE_ID), np.int64)  # Horspool's shifts for _TRADE_ID
for _j, _c in enumerate(_TRADE_ID[:-1].tolist()):
    _SKIP[_c] = len(_TRADE_ID) - 1 - _j
# state: first live q, next q, arena bytes used, free node list, nodes ever used
_HEAD, _TAIL, _USED, _FREE, _NODES = range(5)
# an entry's row: its key's hash, arena offset and length (with the first byte), when
# first seen, the most copies delivered, its first count node
_H, _OFF, _LEN, _RECV, _BEST, _FIRST = range(6)
# a node's row: connection, copies it brought, the entry's next node
_CONN, _CNT, _NEXT = range(3)
# an index slot: the entry's q (-1 empty) and its key's hash
_Q, _KH = range(2)
_FNV = np.uint64(0xCBF29CE484222325)
_PRIME = np.uint64(0x100000001B3)


@njit(cache=True)
def _hash(prefix, kb, k0, k1):
    """A key's hash (non-negative): eight bytes a step where the key has them (a
    multiply spreads a word's bits only upwards; the shifts bring them down to the
    index's low bits)."""
    h = (_FNV ^ np.uint64(prefix)) * _PRIME
    i = k0
    while i + 8 <= k1:
        h = (h ^ load_u64(kb, i)) * _PRIME
        h ^= h >> np.uint64(29)
        i += 8
    while i < k1:
        h = (h ^ np.uint64(kb[i])) * _PRIME
        i += 1
    h ^= h >> np.uint64(32)
    h *= _PRIME
    h ^= h >> np.uint64(29)
    return np.int64(h >> np.uint64(1))


@njit(cache=True, inline="always")
def _same(a, at, kb, k0, k1):
    """Whether a[at:] starts with kb[k0:k1] (eight bytes a step where both have them)."""
    j = k0
    while j + 8 <= k1 and at + 8 <= len(a):
        if load_u64(a, at) != load_u64(kb, j):
            return False
        at += 8
        j += 8
    while j < k1:
        if a[at] != kb[j]:
            return False
        at += 1
        j += 1
    return True


@njit(cache=True)
def _find(index, entries, arena, h, prefix, kb, k0, k1):
    """The index slot of the live entry of this key and its q, or the empty slot it
    would take and -1."""
    mask = len(index) - 1
    ring_mask = len(entries) - 1
    i = h & mask
    n = k1 - k0 + 1
    while True:
        q = index[i, _Q]
        if q < 0:
            return i, -1
        if index[i, _KH] == h:
            e = q & ring_mask
            o = entries[e, _OFF]
            if entries[e, _LEN] == n and arena[o] == prefix and _same(arena, o + 1, kb, k0, k1):
                return i, q
        i = (i + 1) & mask


@njit(cache=True)
def _unindex(index, q, h):
    """Remove entry q (key hash h) from the index (backward shift: no tombstones)."""
    mask = len(index) - 1
    i = h & mask
    while index[i, _Q] != q:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if index[j, _Q] < 0:
            break
        k = index[j, _KH] & mask
        if (i < k <= j) if i <= j else (i < k or k <= j):
            continue  # its home is between the hole and it: it stays
        index[i, _Q], index[i, _KH] = index[j, _Q], index[j, _KH]
        i = j
    index[i, _Q] = -1


@njit(cache=True, inline="always")
def _node(state, nodes):
    m = state[_FREE]
    if m >= 0:
        state[_FREE] = nodes[m, _NEXT]
        return m
    m = state[_NODES]
    state[_NODES] = m + 1
    return m


@njit(cache=True)
def _count(prefix, kb, k0, k1, conn, recv, window, state, index, entries, arena, nodes):
    """`Copies.count` for the key `prefix` + kb[k0:k1]: 1 deliver, 0 drop, -1 no room."""
    ring_mask = len(entries) - 1
    h = _hash(prefix, kb, k0, k1)
    slot, q = _find(index, entries, arena, h, prefix, kb, k0, k1)
    node_free = state[_FREE] >= 0 or state[_NODES] < len(nodes)
    if q >= 0:
        e = q & ring_mask
        m = entries[e, _FIRST]
        while m >= 0 and nodes[m, _CONN] != conn:
            m = nodes[m, _NEXT]
        if m < 0:
            if not node_free:
                return _ROOM
            m = _node(state, nodes)
            nodes[m, _CONN], nodes[m, _CNT], nodes[m, _NEXT] = conn, 0, entries[e, _FIRST]
            entries[e, _FIRST] = m
        nodes[m, _CNT] += 1
        if nodes[m, _CNT] > entries[e, _BEST]:
            entries[e, _BEST] = nodes[m, _CNT]
            return _DELIVER
        return _DROP
    n = k1 - k0 + 1
    live = state[_TAIL] - state[_HEAD]
    if (live + 1 > ring_mask or 2 * (live + 1) > len(index) or not node_free
            or state[_USED] + n > len(arena)):  # fmt: skip
        return _ROOM
    q = state[_TAIL]
    state[_TAIL] = q + 1
    e = q & ring_mask
    o = state[_USED]
    arena[o] = prefix
    arena[o + 1 : o + n] = kb[k0:k1]
    state[_USED] = o + n
    m = _node(state, nodes)
    nodes[m, _CONN], nodes[m, _CNT], nodes[m, _NEXT] = conn, 1, -1
    entries[e, _H], entries[e, _OFF], entries[e, _LEN] = h, o, n
    entries[e, _RECV], entries[e, _BEST], entries[e, _FIRST] = recv, 1, m
    index[slot, _Q], index[slot, _KH] = q, h
    horizon = recv - window
    while state[_HEAD] < state[_TAIL] and entries[state[_HEAD] & ring_mask, _RECV] < horizon:
        old = state[_HEAD]
        e = old & ring_mask
        _unindex(index, old, entries[e, _H])
        m = entries[e, _FIRST]
        while m >= 0:  # its nodes back to the free list
            after = nodes[m, _NEXT]
            nodes[m, _NEXT] = state[_FREE]
            state[_FREE] = m
            m = after
        state[_HEAD] = old + 1
    return _DELIVER


_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_COMMAS = np.uint64(0x2C2C2C2C2C2C2C2C)


@njit(cache=True, inline="always")
def _comma(data, i, e):
    """The first comma of data[i:e], or e: eight bytes a test (a word holds one where
    its XOR with commas has a zero byte), then byte by byte."""
    while i + 8 <= e:
        x = load_u64(data, i) ^ _COMMAS
        if (x - _ONES) & ~x & _HIGHS:
            break
        i += 8
    while i < e:
        if data[i] == 44:
            return i
        i += 1
    return e


@njit(cache=True)
def _trade_key(data, s, e, pattern, skip):
    """The span of a trade frame data[s:e]'s key, as `message_key` cuts it: from after
    the first `"trade_id":` to the next comma (or the end), whitespace stripped; (-1, -1)
    without one. The search is Horspool's (`skip`: how far the byte under the pattern's
    last may move it), which never steps over an occurrence."""
    p = len(pattern)
    last = pattern[p - 1]
    at = -1
    i = s
    while i + p <= e:
        c = data[i + p - 1]
        if c == last:
            j = 0
            while j < p - 1 and data[i + j] == pattern[j]:
                j += 1
            if j == p - 1:
                at = i
                break
        i += skip[c]
    if at < 0:
        return -1, -1
    k0 = at + p
    k1 = _comma(data, k0, e)
    while k0 < k1 and (data[k0] == 32 or 9 <= data[k0] <= 13):
        k0 += 1
    while k1 > k0 and (data[k1 - 1] == 32 or 9 <= data[k1 - 1] <= 13):
        k1 -= 1
    return k0, k1


@njit(cache=True)
def _count_trades(start, data, offsets, rows, conns, recvs, keep, pattern, skip, window,
                  state, index, entries, arena, nodes):  # fmt: skip
    """Count the trade frames `rows` from `start` on; return (the first row not counted,
    why: 1 done, -1 no room, 0 a frame without a trade_id). The arrays are borrowed:
    each call below passes six of them (`replay.datasets.jit`)."""
    data, pattern, skip = borrow(data), borrow(pattern), borrow(skip)
    state, index, entries = borrow(state), borrow(index), borrow(entries)
    arena, nodes = borrow(arena), borrow(nodes)
    for i in range(start, len(rows)):
        r = rows[i]
        k0, k1 = _trade_key(data, offsets[r], offsets[r + 1], pattern, skip)
        if k0 < 0:
            return i, 0
        got = _count(1, data, k0, k1, conns[i], recvs[i], window, state, index, entries,
                     arena, nodes)  # fmt: skip
        if got == _ROOM:
            return i, -1
        keep[i] = got == _DELIVER
    return len(rows), 1


class CompiledCopies:
    """`stream.arbitration.Copies` in arrays (see the module docstring)."""

    def __init__(self, window_ns: int, room: int = 1 << 12) -> None:
        """Room for `room` live keys to start with (a power of two at least as large):
        the arrays grow as they fill, but each growth copies and re-indexes them."""
        self.window_ns = window_ns
        room = 1 << max(room - 1, 1).bit_length()
        self.state = np.array([0, 0, 0, -1, 0], np.int64)
        self.index = np.full((2 * room, 2), -1, np.int64)
        self.entries = np.zeros((room, 6), np.int64)
        self.arena = np.zeros(64 * room, np.uint8)
        self.nodes = np.zeros((2 * room, 3), np.int64)

    def _arrays(self) -> tuple[Any, ...]:
        return self.state, self.index, self.entries, self.arena, self.nodes

    def count(self, key: Any, conn: int, recv_ns: int) -> bool:
        """`Copies.count` (the engine's calls, with `message_key`'s keys)."""
        if isinstance(key, tuple) and key[0] == "trade" and isinstance(key[1], bytes):
            prefix, body = 1, key[1]
        else:
            prefix, body = 0, repr(key).encode()
        kb = np.frombuffer(body, np.uint8) if body else np.zeros(0, np.uint8)
        while True:
            got = _count(prefix, kb, 0, len(kb), conn, recv_ns, self.window_ns,
                         *self._arrays())  # fmt: skip
            if got != _ROOM:
                return bool(got == _DELIVER)
            self._grow(len(kb) + 1)

    def count_trades(self, data: np.ndarray, offsets: np.ndarray, rows: np.ndarray,
                     conns: np.ndarray, recvs: np.ndarray) -> np.ndarray:  # fmt: skip
        """Count the trade frames `rows` of a window (its raw bytes `data`, `offsets`) that
        connections `conns` brought at `recvs` (one each); which to deliver."""
        keep = np.zeros(len(rows), np.bool_)
        i = 0
        while i < len(rows):
            i, why = _count_trades(i, data, offsets, rows, conns, recvs, keep, _TRADE_ID,
                                   _SKIP, self.window_ns, *self._arrays())  # fmt: skip
            if why == -1:
                self._grow(int(offsets[rows[i] + 1] - offsets[rows[i]]) + 1)
            elif why == 0:  # no trade_id: the engine's key for it, counted here
                raw = data[offsets[rows[i]] : offsets[rows[i] + 1]].tobytes()
                keep[i] = self.count(message_key("trade", raw), int(conns[i]), int(recvs[i]))
                i += 1
        return keep

    def _grow(self, key_bytes: int) -> None:
        """Room for one more key of `key_bytes` bytes and its node: each array that is
        full doubles (the arena is packed to its live keys instead when they hold at most
        half of it)."""
        state = self.state
        head, tail = int(state[_HEAD]), int(state[_TAIL])
        live = tail - head
        ring = len(self.entries)
        if live + 1 > ring - 1:
            q = np.arange(head, tail)
            entries = np.zeros((2 * ring, 6), np.int64)
            entries[q & (2 * ring - 1)] = self.entries[q & (ring - 1)]
            self.entries = entries
        if 2 * (live + 1) > len(self.index):
            self.index = np.full((2 * len(self.index), 2), -1, np.int64)
            _reindex(self.index, self.entries, head, tail)
        if state[_USED] + key_bytes > len(self.arena):
            self._compact(key_bytes)
        if state[_FREE] < 0 and state[_NODES] >= len(self.nodes):
            self.nodes = np.concatenate([self.nodes, np.zeros_like(self.nodes)])

    def _compact(self, key_bytes: int) -> None:
        """Room in the arena: the live keys packed to its start if forgotten ones hold at
        least half of it, else an arena twice as large."""
        head, tail = int(self.state[_HEAD]), int(self.state[_TAIL])
        e = np.arange(head, tail) & (len(self.entries) - 1)
        need = int(self.entries[e, _LEN].sum()) + key_bytes
        if 2 * need <= len(self.arena):
            self.state[_USED] = _pack(self.arena, self.entries, e)
            return
        used = int(self.state[_USED])
        arena = np.zeros(2 * max(used + key_bytes, len(self.arena)), np.uint8)
        arena[:used] = self.arena[:used]
        self.arena = arena


@njit(cache=True)
def _reindex(index, entries, head, tail):
    ring_mask = len(entries) - 1
    mask = len(index) - 1
    for q in range(head, tail):
        h = entries[q & ring_mask, _H]
        i = h & mask
        while index[i, _Q] >= 0:
            i = (i + 1) & mask
        index[i, _Q], index[i, _KH] = q, h


@njit(cache=True)
def _pack(arena, entries, rows):
    """Move the keys of entry rows `rows` (in the order they were stored, so never
    forward) to the arena's start; return the bytes used."""
    at = 0
    for e in rows:
        n = entries[e, _LEN]
        o = entries[e, _OFF]
        for j in range(n):
            arena[at + j] = arena[o + j]
        entries[e, _OFF] = at
        at += n
    return at


forget_if_changed(__name__, _count_trades, ("replay.datasets.jit",))
