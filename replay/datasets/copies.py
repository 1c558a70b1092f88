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

__all__ = ["CompiledCopies"]

_DELIVER, _DROP, _ROOM = 1, 0, -1
_TRADE_ID = np.frombuffer(b'"trade_id":', np.uint8)
# state: first live q, next q, arena bytes used, free node list, nodes ever used
_HEAD, _TAIL, _USED, _FREE, _NODES = range(5)
_FNV = np.uint64(0xCBF29CE484222325)
_PRIME = np.uint64(0x100000001B3)


@njit(cache=True)
def _hash(prefix, kb, k0, k1):
    h = (_FNV ^ np.uint64(prefix)) * _PRIME
    for i in range(k0, k1):
        h = (h ^ np.uint64(kb[i])) * _PRIME
    return np.int64(h >> np.uint64(1))


@njit(cache=True)
def _find(index, e_hash, e_off, e_len, arena, ring_mask, h, prefix, kb, k0, k1):
    """The index slot of the live entry of this key, or of the empty slot it would take
    (and -1 as the entry)."""
    mask = len(index) - 1
    i = h & mask
    n = k1 - k0 + 1
    while True:
        q = index[i]
        if q < 0:
            return i, -1
        e = q & ring_mask
        if e_hash[e] == h and e_len[e] == n and arena[e_off[e]] == prefix:
            o = e_off[e] + 1
            same = True
            for j in range(n - 1):
                if arena[o + j] != kb[k0 + j]:
                    same = False
                    break
            if same:
                return i, q
        i = (i + 1) & mask


@njit(cache=True)
def _unindex(index, e_hash, ring_mask, q):
    """Remove entry q from the index (backward shift: no tombstones)."""
    mask = len(index) - 1
    i = e_hash[q & ring_mask] & mask
    while index[i] != q:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        r = index[j]
        if r < 0:
            break
        k = e_hash[r & ring_mask] & mask
        if (i < k <= j) if i <= j else (i < k or k <= j):
            continue  # its home is between the hole and it: it stays
        index[i] = r
        i = j
    index[i] = -1


@njit(cache=True)
def _count(prefix, kb, k0, k1, conn, recv, window, state, index, e_hash, e_off, e_len,
           e_recv, e_best, e_head, arena, n_conn, n_cnt, n_next):  # fmt: skip
    """`Copies.count` for the key `prefix` + kb[k0:k1]: 1 deliver, 0 drop, -1 no room."""
    ring_mask = len(e_hash) - 1
    h = _hash(prefix, kb, k0, k1)
    slot, q = _find(index, e_hash, e_off, e_len, arena, ring_mask, h, prefix, kb, k0, k1)
    node_free = state[_FREE] >= 0 or state[_NODES] < len(n_conn)
    if q >= 0:
        e = q & ring_mask
        m = e_head[e]
        while m >= 0 and n_conn[m] != conn:
            m = n_next[m]
        if m < 0:
            if not node_free:
                return _ROOM
            m = _node(state, n_next)
            n_conn[m], n_cnt[m], n_next[m] = conn, 0, e_head[e]
            e_head[e] = m
        n_cnt[m] += 1
        if n_cnt[m] > e_best[e]:
            e_best[e] = n_cnt[m]
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
    e_hash[e], e_off[e], e_len[e], e_recv[e], e_best[e] = h, o, n, recv, 1
    m = _node(state, n_next)
    n_conn[m], n_cnt[m], n_next[m] = conn, 1, -1
    e_head[e] = m
    index[slot] = q
    horizon = recv - window
    while state[_HEAD] < state[_TAIL] and e_recv[state[_HEAD] & ring_mask] < horizon:
        old = state[_HEAD]
        _unindex(index, e_hash, ring_mask, old)
        m = e_head[old & ring_mask]
        while m >= 0:  # its nodes back to the free list
            after = n_next[m]
            n_next[m] = state[_FREE]
            state[_FREE] = m
            m = after
        state[_HEAD] = old + 1
    return _DELIVER


@njit(cache=True, inline="always")
def _node(state, n_next):
    m = state[_FREE]
    if m >= 0:
        state[_FREE] = n_next[m]
        return m
    m = state[_NODES]
    state[_NODES] = m + 1
    return m


@njit(cache=True)
def _trade_key(data, s, e, pattern):
    """The span of a trade frame data[s:e]'s key, as `message_key` cuts it: from after
    the first `"trade_id":` to the next comma (or the end), whitespace stripped; (-1, -1)
    without one."""
    p = len(pattern)
    at = -1
    for i in range(s, e - p + 1):
        if data[i] == pattern[0]:
            j = 1
            while j < p and data[i + j] == pattern[j]:
                j += 1
            if j == p:
                at = i
                break
    if at < 0:
        return -1, -1
    k0 = at + p
    k1 = e
    for i in range(at, e):
        if data[i] == 44:  # ,
            k1 = i
            break
    while k0 < k1 and (data[k0] == 32 or 9 <= data[k0] <= 13):
        k0 += 1
    while k1 > k0 and (data[k1 - 1] == 32 or 9 <= data[k1 - 1] <= 13):
        k1 -= 1
    return k0, k1


@njit(cache=True)
def _count_trades(start, data, offsets, rows, conns, recvs, keep, pattern, window, state,
                  index, e_hash, e_off, e_len, e_recv, e_best, e_head, arena, n_conn, n_cnt,
                  n_next):  # fmt: skip
    """Count the trade frames `rows` from `start` on; return (the first row not counted,
    why: 1 done, -1 no room, 0 a frame without a trade_id)."""
    for i in range(start, len(rows)):
        r = rows[i]
        k0, k1 = _trade_key(data, offsets[r], offsets[r + 1], pattern)
        if k0 < 0:
            return i, 0
        got = _count(1, data, k0, k1, conns[i], recvs[i], window, state, index, e_hash, e_off,
                     e_len, e_recv, e_best, e_head, arena, n_conn, n_cnt, n_next)  # fmt: skip
        if got == _ROOM:
            return i, -1
        keep[i] = got == _DELIVER
    return len(rows), 1


class CompiledCopies:
    """`stream.arbitration.Copies` in arrays (see the module docstring)."""

    def __init__(self, window_ns: int, room: int = 1 << 12) -> None:
        self.window_ns = window_ns
        self.state = np.array([0, 0, 0, -1, 0], np.int64)
        self.index = np.full(2 * room, -1, np.int64)
        ring = room
        self.e_hash, self.e_off, self.e_len, self.e_recv, self.e_best, self.e_head = (
            np.zeros(ring, np.int64) for _ in range(6))  # fmt: skip
        self.arena = np.zeros(48 * room, np.uint8)
        self.n_conn, self.n_cnt, self.n_next = (np.zeros(2 * room, np.int64) for _ in range(3))

    def _arrays(self) -> tuple[Any, ...]:
        return (self.state, self.index, self.e_hash, self.e_off, self.e_len, self.e_recv,
                self.e_best, self.e_head, self.arena, self.n_conn, self.n_cnt,
                self.n_next)  # fmt: skip

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
        from stream.arbitration import message_key

        keep = np.zeros(len(rows), np.bool_)
        i = 0
        while i < len(rows):
            i, why = _count_trades(i, data, offsets, rows, conns, recvs, keep, _TRADE_ID,
                                   self.window_ns, *self._arrays())  # fmt: skip
            if why == -1:
                self._grow(int(offsets[rows[i] + 1] - offsets[rows[i]]) + 1)
            elif why == 0:  # no trade_id: the engine's key for it, counted here
                raw = data[offsets[rows[i]] : offsets[rows[i] + 1]].tobytes()
                keep[i] = self.count(message_key("trade", raw), int(conns[i]), int(recvs[i]))
                i += 1
        return keep

    def _grow(self, key_bytes: int) -> None:
        """Room for one more key of `key_bytes` bytes and its node: each array that is
        full doubles (the arena is compacted to its live keys first)."""
        state = self.state
        head, tail = int(state[_HEAD]), int(state[_TAIL])
        live = tail - head
        ring = len(self.e_hash)
        if live + 1 > ring - 1:
            old = [self.e_hash, self.e_off, self.e_len, self.e_recv, self.e_best, self.e_head]
            grown = [np.zeros(2 * ring, np.int64) for _ in old]
            q = np.arange(head, tail)
            for new, a in zip(grown, old, strict=True):
                new[q & (2 * ring - 1)] = a[q & (ring - 1)]
            (self.e_hash, self.e_off, self.e_len, self.e_recv, self.e_best,
             self.e_head) = grown  # fmt: skip
        if 2 * (live + 1) > len(self.index):
            self.index = np.full(2 * len(self.index), -1, np.int64)
            _reindex(self.index, self.e_hash, head, tail)
        if state[_USED] + key_bytes > len(self.arena):
            self._compact(key_bytes)
        if state[_FREE] < 0 and state[_NODES] >= len(self.n_conn):
            n = len(self.n_conn)
            self.n_conn, self.n_cnt, self.n_next = (np.concatenate([a, np.zeros(n, np.int64)])
                                                    for a in (self.n_conn, self.n_cnt,
                                                              self.n_next))  # fmt: skip

    def _compact(self, key_bytes: int) -> None:
        """Room in the arena: the live keys packed to its start if forgotten ones hold at
        least half of it, else an arena twice as large."""
        head, tail = int(self.state[_HEAD]), int(self.state[_TAIL])
        e = np.arange(head, tail) & (len(self.e_hash) - 1)
        need = int(self.e_len[e].sum()) + key_bytes
        if 2 * need <= len(self.arena):
            self.state[_USED] = _pack(self.arena, self.arena, self.e_off, self.e_len, e)
            return
        used = int(self.state[_USED])
        arena = np.zeros(2 * max(used + key_bytes, len(self.arena)), np.uint8)
        arena[:used] = self.arena[:used]
        self.arena = arena


@njit(cache=True)
def _reindex(index, e_hash, head, tail):
    ring_mask = len(e_hash) - 1
    mask = len(index) - 1
    for q in range(head, tail):
        i = e_hash[q & ring_mask] & mask
        while index[i] >= 0:
            i = (i + 1) & mask
        index[i] = q


@njit(cache=True)
def _pack(old, new, e_off, e_len, entries):
    """Copy the keys of `entries` (in the order they were stored, so never forward) from
    `old` to the start of `new`, which may be `old`; return the bytes used."""
    at = 0
    for e in entries:
        n = e_len[e]
        o = e_off[e]
        for j in range(n):
            new[at + j] = old[o + j]
        e_off[e] = at
        at += n
    return at
