"""The scanner's primitives where they take shortcuts: strings read eight bytes at a
time (`scan_json.string`), texts compared eight bytes at a time (`starts_with`), plain
integers read in one pass (`int_at`), keys found by one lookup (`words_table`, `key`),
arrays passed without reference counting (`jit.borrow`), byte spans copied eight bytes
at a time (`kernel.gather`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from replay.datasets import kernel, scan, scan_json
from replay.datasets.jit import borrow
from replay.datasets.scan_json import (
    decimal_units,
    int_at,
    key,
    starts_with,
    string,
    texts_table,
    value_units,
    words_table,
)

TABLES = [(scan._TOP, scan.TOP_KEYS, scan.TOP_INDEX), (scan._MSG, scan.MSG_KEYS, scan.MSG_INDEX),
          (scan.TYPES, scan.TYPE_NAMES, scan.TYPE_INDEX)]  # fmt: skip


def look(word: bytes, keys: np.ndarray, index: np.ndarray) -> int:
    data = np.frombuffer(b"{" + word + b"}", np.uint8)
    return int(key(data, 1, 1 + len(word), keys, index))


@pytest.mark.parametrize(("words", "keys", "index"), TABLES, ids=["top", "msg", "types"])
def test_every_word_is_found_and_nothing_else(words, keys, index) -> None:  # type: ignore[no-untyped-def]
    for number, word in enumerate(words):
        raw = word.encode()
        assert look(raw, keys, index) == number
        # same length, same first and last byte, one byte changed in between
        for j in range(1, len(raw) - 1):
            changed = raw[:j] + bytes([raw[j] ^ 0x20]) + raw[j + 1 :]
            assert look(changed, keys, index) == (
                words.index(changed.decode()) if changed.decode() in words else -1
            )
        shorter = word[:-1]
        assert look(shorter.encode(), keys, index) == (
            words.index(shorter) if shorter in words else -1
        )
        assert look(raw + b"x", keys, index) == -1
    for other in (b"", b"market_id", b"clock", b"x" * 40, b"\xff\xfe"):
        assert look(other, keys, index) == -1


def test_a_table_whose_words_share_a_slot_is_refused() -> None:
    """Two words of one length whose first and last bytes hash alike: `key` would find
    only one of them, so the table is refused when built (the tables are constants)."""

    def slot(w: str) -> int:
        return (ord(w[0]) + 7 * ord(w[-1])) & 255

    letters = "abcdefghijklmnopqrstuvwxyz"
    clash = next(
        x + y for x in letters for y in letters if x + y != "ab" and slot(x + y) == slot("ab")
    )
    words_table(("ab", "cd"))  # no clash
    with pytest.raises(ValueError, match="share a slot"):
        words_table(("ab", clash))


@njit
def _fill(a, value):
    for i in range(a.shape[0]):
        a[i] = value


@njit
def _borrowed_fill(a, value):
    view = borrow(a)
    _fill(view, value)
    return view[1:3].sum()


def test_a_borrowed_array_is_the_same_memory() -> None:
    a = np.zeros(5, np.int64)
    assert _borrowed_fill(a, 7) == 14
    assert a.tolist() == [7] * 5  # written through the view


def string_byte_by_byte(d: bytes, i: int, e: int) -> tuple[int, bool]:
    """What `string` must return: JSON's string rules, one byte at a time."""
    i += 1
    esc = False
    while i < e:
        if d[i] == 34:
            return i + 1, esc
        if d[i] == 92:
            esc = True
            i += 2
            continue
        if d[i] < 32:
            return -1, esc
        i += 1
    return -1, esc


# bytes that matter (quote, backslash, control characters, DEL, UTF-8 bytes, the
# neighbours of each in the bit tricks) among ordinary ones
BYTES = st.sampled_from(
    [34, 92, 0, 1, 9, 10, 31, 32, 33, 35, 91, 93, 127, 128, 194, 255]
) | st.integers(97, 122)


@settings(max_examples=2000, deadline=None)
@given(body=st.lists(BYTES, max_size=40), before=st.integers(0, 9), cut=st.integers(0, 12))
def test_a_string_read_eight_bytes_at_a_time_ends_where_byte_by_byte_does(
    body: list[int], before: int, cut: int
) -> None:
    d = bytes([120] * before + [34] + body + [34] * 3)  # a quote at `before`; the end cut
    e = max(before + 1, len(d) - cut)
    got = string(np.frombuffer(d, np.uint8), before, e)
    assert (int(got[0]), bool(got[1])) == string_byte_by_byte(d, before, e)


def int_by_grammar(d: bytes, i: int, e: int) -> tuple[int, int, bool]:
    """`int_at` as JSON's number grammar (`number`) and the digits read after it."""
    j, integer = scan_json.number(np.frombuffer(d, np.uint8), i, e)
    if j < 0 or not integer or j - i > 18:
        return int(j), 0, False
    return int(j), int(d[i:j]), True


@settings(max_examples=3000, deadline=None)
@given(text=st.text("0123456789-+.eE,}", max_size=24), before=st.integers(0, 3),
       cut=st.integers(0, 4))  # fmt: skip
def test_an_integer_read_in_one_pass_is_what_the_grammar_reads(
    text: str, before: int, cut: int
) -> None:
    d = b" " * before + text.encode() + b"}"
    e = max(before, len(d) - cut)
    got = int_at(np.frombuffer(d, np.uint8), before, e)
    want = int_by_grammar(d, before, e)
    assert (int(got[0]), bool(got[2])) == (want[0], want[2])
    if want[2]:
        assert int(got[1]) == want[1]


TEXTS = (b'{"type":"trade","sid":', b',"seq":', b'"market_ticker":', b"a")


@settings(max_examples=2000, deadline=None)
@given(k=st.integers(0, len(TEXTS) - 1), flip=st.integers(-1, 30), before=st.integers(0, 9),
       after=st.integers(0, 10), cut=st.integers(0, 3))  # fmt: skip
def test_a_text_compared_eight_bytes_at_a_time_matches_byte_by_byte(
    k: int, flip: int, before: int, after: int, cut: int
) -> None:
    """Anywhere in the array (near its end, loads past `e` fall back to bytes), a byte
    changed or not, the end cut short or not."""
    text = bytearray(TEXTS[k])
    if 0 <= flip < len(text):
        text[flip] ^= 0x20
    d = b"x" * before + bytes(text) + b"y" * after
    e = max(before, len(d) - cut)
    words, masks, lengths = texts_table(TEXTS)
    got = starts_with(np.frombuffer(d, np.uint8), before, e, words, masks, lengths, k)
    assert bool(got) == (d[:e][before:].startswith(TEXTS[k]))


@settings(max_examples=3000, deadline=None)
@given(text=st.text('0123456789.-e"\\n', max_size=22), quoted=st.booleans(),
       digits=st.sampled_from([2, 4]), cut=st.integers(0, 3))  # fmt: skip
def test_a_decimal_string_read_in_one_pass_is_what_value_units_reads(
    text: str, quoted: bool, digits: int, cut: int
) -> None:
    raw = (f'"{text}"' if quoted else text).encode() + b",}"
    d = np.frombuffer(raw, np.uint8)
    e = max(1, len(raw) - cut)
    got = decimal_units(d, 0, e, digits)
    want = value_units(d, 0, e, digits)
    assert (int(got[0]), bool(got[2]), bool(got[3])) == (int(want[0]), bool(want[2]),
                                                         bool(want[3]))  # fmt: skip
    if want[3] and want[0] >= 0:
        assert int(got[1]) == int(want[1])


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(min_size=1, max_size=80),
       spans=st.lists(st.tuples(st.integers(0, 79), st.integers(0, 30)), max_size=12))  # fmt: skip
def test_spans_copied_eight_bytes_at_a_time_are_the_bytes(
    data: bytes, spans: list[tuple[int, int]]
) -> None:
    """Spans anywhere (near either array's end the copy goes byte by byte); what one span
    writes past its end, the next overwrites; the slack after the last is never read."""
    spans = [(min(a, len(data)), min(n, len(data) - min(a, len(data)))) for a, n in spans]
    starts = np.array([a for a, _ in spans], np.int64)
    lengths = np.array([n for _, n in spans], np.int64)
    offsets = np.zeros(len(spans) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.zeros(int(offsets[-1]) + 8, np.uint8)
    kernel.gather(np.frombuffer(data, np.uint8), starts, lengths, offsets, out)
    assert out[: offsets[-1]].tobytes() == b"".join(data[a : a + n] for a, n in spans)
