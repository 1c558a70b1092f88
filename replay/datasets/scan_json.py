"""JSON primitives for the compiled frame scanner (`replay.datasets.scan`), in numba.

Each walks bytes of one frame and returns where the value it read ends (-1: not
valid JSON there): strings (and whether they had escapes), numbers (and whether
integral), literals, whole values of any depth (`skip`, on an explicit stack),
keys matched against a table, decimal text as exact integers of the wire's units
(`units`: digits only, never float; a nonzero digit finer than the unit is not
exact), and a snapshot's `[[price, size], ...]` ladder.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from replay.datasets.jit import load_u64

__all__ = [
    "decimal_units", "int_at", "key", "ladder", "scalar", "skip", "skip_ws", "starts_with",
    "string", "texts_table", "units", "value_units", "words_table", "ws",
]  # fmt: skip


def words_table(words: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(bytes of each word, index by (length, hash of first and last byte) -> word number
    or -1) for `key`.

    No two words may share a slot of the index: `key` then finds a word with one lookup
    and one comparison, not a walk over the table (a frame's seven keys, each compared
    with up to twenty-one entries, cost a third of its scan)."""
    width = max(len(w) for w in words)
    keys = np.zeros((len(words), width), np.uint8)
    index = np.full((width + 1, 256), -1, np.int16)
    for i, word in enumerate(words):
        raw = word.encode()
        keys[i, : len(raw)] = np.frombuffer(raw, np.uint8)
        slot = (raw[0] + 7 * raw[-1]) & 255
        if index[len(raw), slot] >= 0:
            clash = words[index[len(raw), slot]]
            raise ValueError(f"{word!r} and {clash!r} share a slot: change the hash")
        index[len(raw), slot] = i
    return keys, index


def texts_table(texts: tuple[bytes, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the texts as little-endian 64-bit words, each word's mask of the text's bytes,
    lengths) for `starts_with`: eight bytes compared at once."""
    width = max(-(-len(t) // 8) for t in texts)
    words = np.zeros((len(texts), width), np.uint64)
    masks = np.zeros((len(texts), width), np.uint64)
    for k, text in enumerate(texts):
        pad = b"\0" * (8 * width - len(text))
        words[k] = np.frombuffer(text + pad, "<u8")
        masks[k] = np.frombuffer(b"\xff" * len(text) + pad, "<u8")
    return words, masks, np.array([len(t) for t in texts], np.int64)


@njit(cache=True, inline="always")
def starts_with(d, i, e, words, masks, lengths, k):
    """Whether d[i:e] starts with text k of a `texts_table`: a word at a time (loads may
    read past e, never past the array), byte by byte near the array's end."""
    n = lengths[k]
    if i + n > e:
        return False
    w = (n + 7) >> 3
    if i + 8 * w <= d.shape[0]:
        for j in range(w):  # noqa: SIM110 (numba compiles no generator into all())
            if load_u64(d, i + 8 * j) & masks[k, j] != words[k, j]:
                return False
        return True
    for j in range(n):
        if d[i + j] != (words[k, j >> 3] >> np.uint64(8 * (j & 7))) & np.uint64(255):
            return False
    return True


@njit(cache=True)
def ws(d, i, e):
    while i < e and (d[i] == 32 or d[i] == 10 or d[i] == 13 or d[i] == 9):
        i += 1
    return i


_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)
_SPACES = np.uint64(0x2020202020202020)


@njit(cache=True)
def string(d, i, e):
    """d[i] is '"': (end after the closing quote or -1, whether it had escapes).

    Eight bytes at a time while none of them is a quote, a backslash or a control
    character (the bit tricks of "a zero byte in a word": the lowest byte flagged is
    exact), then byte by byte from the first that is."""
    i += 1
    esc = False
    while i + 8 <= e:
        w = load_u64(d, i)
        q = w ^ _QUOTES
        b = w ^ _BACKSLASHES
        found = (((q - _ONES) & ~q) | ((b - _ONES) & ~b) | ((w - _SPACES) & ~w)) & _HIGH
        if found:
            i += np.int64(trailing_zeros(found)) >> 3
            break
        i += 8
    while i < e:
        c = d[i]
        if c == 34:
            return i + 1, esc
        if c == 92:
            esc = True
            i += 2
            continue
        if c < 32:
            return -1, esc
        i += 1
    return -1, esc


@njit(cache=True)
def number(d, i, e):
    """(end, is an integer) of a JSON number at i, end -1 if malformed."""
    start = i
    if i < e and d[i] == 45:
        i += 1
    if i >= e or not 48 <= d[i] <= 57:
        return -1, False
    if d[i] == 48 and i + 1 < e and 48 <= d[i + 1] <= 57:
        return -1, False
    while i < e and 48 <= d[i] <= 57:
        i += 1
    integer = True
    if i < e and d[i] == 46:
        integer = False
        i += 1
        if i >= e or not 48 <= d[i] <= 57:
            return -1, False
        while i < e and 48 <= d[i] <= 57:
            i += 1
    if i < e and (d[i] == 101 or d[i] == 69):
        integer = False
        i += 1
        if i < e and (d[i] == 43 or d[i] == 45):
            i += 1
        if i >= e or not 48 <= d[i] <= 57:
            return -1, False
        while i < e and 48 <= d[i] <= 57:
            i += 1
    return (i if i > start else -1), integer


@njit(cache=True)
def scalar(d, i, e):
    """End of a JSON string, number or literal at i, or -1."""
    c = d[i]
    if c == 34:
        j, _ = string(d, i, e)
        return j
    if c == 116 and i + 4 <= e and d[i + 1] == 114 and d[i + 2] == 117 and d[i + 3] == 101:
        return i + 4
    if (c == 102 and i + 5 <= e and d[i + 1] == 97 and d[i + 2] == 108 and d[i + 3] == 115
            and d[i + 4] == 101):  # fmt: skip
        return i + 5
    if c == 110 and i + 4 <= e and d[i + 1] == 117 and d[i + 2] == 108 and d[i + 3] == 108:
        return i + 4
    j, _ = number(d, i, e)
    return j


@njit(cache=True)
def skip(d, i, e, stack):
    """End of the JSON value at i, validated (containers walked on `stack`), or -1."""
    sp = 0
    state = 0  # 0: a value is expected, 1: after a value, 2: a key is expected
    while True:
        i = ws(d, i, e)
        if i >= e:
            return -1
        c = d[i]
        if state == 0:
            if c == 123 or c == 91:
                if sp >= stack.shape[0]:
                    return -1
                stack[sp] = 1 if c == 123 else 2
                sp += 1
                i = ws(d, i + 1, e)
                if i < e and d[i] == (125 if c == 123 else 93):
                    sp -= 1
                    i += 1
                    state = 1
                    if sp == 0:
                        return i
                else:
                    state = 2 if c == 123 else 0
                continue
            i = scalar(d, i, e)
            if i < 0:
                return -1
            if sp == 0:
                return i
            state = 1
        elif state == 1:
            if c == 44:
                i += 1
                state = 2 if stack[sp - 1] == 1 else 0
            elif (c == 125 and stack[sp - 1] == 1) or (c == 93 and stack[sp - 1] == 2):
                sp -= 1
                i += 1
                if sp == 0:
                    return i
            else:
                return -1
        else:
            if c != 34:
                return -1
            i, _ = string(d, i, e)
            if i < 0:
                return -1
            i = ws(d, i, e)
            if i >= e or d[i] != 58:
                return -1
            i += 1
            state = 0


@njit(cache=True)
def key(d, a, b, keys, index):
    """The number of the word d[a:b] in a table of `words_table`, or -1. The table is
    looked up by length and a hash of the first and last bytes (one candidate at
    most), then compared."""
    n = b - a
    if n <= 0 or n >= index.shape[0]:
        return -1
    k = index[n, (d[a] + 7 * d[b - 1]) & 255]
    if k < 0:
        return -1
    for j in range(n):
        if d[a + j] != keys[k, j]:
            return -1
    return k


@njit(cache=True)
def units(d, a, b, digits):
    """(value * 10**digits, exact) of the decimal text d[a:b] (see kernel.parse_units)."""
    if a >= b:
        return 0, False
    neg = False
    if d[a] == 45:
        neg = True
        a += 1
    value = 0
    frac = -1
    seen = 0
    for j in range(a, b):
        c = d[j]
        if c == 46:
            if frac >= 0:
                return 0, False
            frac = 0
        elif 48 <= c <= 57:
            seen += 1
            if frac >= 0:
                frac += 1
                if frac > digits:
                    if c != 48:
                        return 0, False
                    continue
            value = value * 10 + (c - 48)
            if value > 10**15:
                return 0, False
        else:
            return 0, False
    if seen == 0:
        return 0, False
    if frac < 0:
        frac = 0
    for _ in range(digits - min(frac, digits)):
        value *= 10
    return (-value if neg else value), True


@njit(cache=True)
def value_units(d, i, e, digits):
    """(end, value, present, exact) of a number sent as a string or a JSON number."""
    if d[i] == 34:
        j, esc = string(d, i, e)
        if j < 0:
            return -1, 0, False, False
        v, ok = units(d, i + 1, j - 1, digits)
        return j, v, True, ok and not esc
    if d[i] == 110:  # null: absent
        return scalar(d, i, e), 0, False, True
    j, _ = number(d, i, e)
    if j < 0:
        return -1, 0, False, False
    v, ok = units(d, i, j, digits)
    return j, v, True, ok


@njit(cache=True, inline="always")
def decimal_units(d, i, e, digits):
    """`value_units` (end, value, present, exact), in one pass where the value is the
    exchange's decimal string: a quote, 1-11 digits, optionally a point and 1 to
    `digits` digits, a quote. Anything else (a sign, more places, an exponent, a JSON
    number, null, an escape) goes through `value_units`."""
    if d[i] == 34:
        k = i + 1
        v = 0
        while k < e and k - i <= 11 and 48 <= d[k] <= 57:
            v = v * 10 + (d[k] - 48)
            k += 1
        places = 0
        if k > i + 1 and k < e and d[k] == 46:
            k += 1
            while k < e and places < digits and 48 <= d[k] <= 57:
                v = v * 10 + (d[k] - 48)
                k += 1
                places += 1
        if k > i + 1 and k < e and d[k] == 34:
            for _ in range(digits - places):
                v *= 10
            return k + 1, v, True, True
    return value_units(d, i, e, digits)


@njit(cache=True, inline="always")
def skip_ws(d, i, e):
    """`ws`, without a call where d[i] is no whitespace (every whitespace byte is <= 32)."""
    return i if i >= e or d[i] > 32 else ws(d, i, e)


@njit(cache=True)
def ladder(d, i, e, lv_p, lv_s, cur):
    """A ladder [[price, size], ...] at i into lv_p/lv_s from `cur`: (end or -1 when it is
    not that shape, the new cursor, whether every value was exact and fits)."""
    start = cur
    exact = True
    if d[i] != 91:
        return -1, start, False
    i = skip_ws(d, i + 1, e)
    if i < e and d[i] == 93:
        return i + 1, cur, True
    while True:
        if i >= e or d[i] != 91:
            return -1, start, False
        i = skip_ws(d, i + 1, e)
        if i >= e:
            return -1, start, False
        j, p, present, p_ok = decimal_units(d, i, e, 4)
        if j < 0 or not present:
            return -1, start, False
        i = skip_ws(d, j, e)
        if i >= e or d[i] != 44:
            return -1, start, False
        i = skip_ws(d, i + 1, e)
        if i >= e:
            return -1, start, False
        j, q, present, q_ok = decimal_units(d, i, e, 2)
        if j < 0 or not present:
            return -1, start, False
        i = skip_ws(d, j, e)
        if i >= e or d[i] != 93:
            return -1, start, False
        if cur >= lv_p.shape[0]:
            exact = False  # out of room: the engine reads this one
        else:
            lv_p[cur] = p
            lv_s[cur] = q
            cur += 1
        exact = exact and p_ok and q_ok and 0 <= p <= 10_000
        i = skip_ws(d, i + 1, e)
        if i < e and d[i] == 44:
            i = skip_ws(d, i + 1, e)
            continue
        if i < e and d[i] == 93:
            return i + 1, cur, exact
        return -1, start, False


@njit(cache=True, inline="always")
def int_at(d, i, e):
    """(end, value, is an integer literal) at i. Inlined into the scanner (numba's
    level): three or four a frame, each call cost more than its work.

    The digits are read once where the text is a plain integer (a sign, 1-18 characters
    in all, no leading zero, followed by no digit, `.`, `e` or `E`); anything else goes
    through `number`'s grammar."""
    k = i + 1 if i < e and d[i] == 45 else i
    first = k
    v = 0
    while k < e and k - i < 18 and 48 <= d[k] <= 57:
        v = v * 10 + (d[k] - 48)
        k += 1
    if k > first and (k == first + 1 or d[first] != 48):
        c = d[k] if k < e else 0
        if not (48 <= c <= 57 or c == 46 or c == 101 or c == 69):
            return k, (-v if first > i else v), True
    j, integer = number(d, i, e)
    if j < 0 or not integer or j - i > 18:
        return j, 0, False
    v = 0
    neg = d[i] == 45
    for k in range(i + (1 if neg else 0), j):
        v = v * 10 + (d[k] - 48)
    return j, (-v if neg else v), True
