"""The compiled copy memory answers as the engine's own (`stream.arbitration.Copies`).

Random streams of copies (keys repeating on several connections, receive times that
jump past the window or step back), through the engine's calls and through the
kernel's bulk count over trade frames, in arrays far too small to start with (so
every growth, the arena's compaction and the index's rebuild happen): every answer
the same as `Copies`' with `message_key`'s keys.
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.datasets.copies import CompiledCopies
from stream.arbitration import Copies, message_key

WINDOW = 1_000

# (key number, connection, receive-time step)
_STEPS = st.lists(st.tuples(st.integers(0, 12), st.integers(1, 4), st.integers(-300, 700)),
                  min_size=1, max_size=300)  # fmt: skip


def _key(k: int) -> object:
    """Trade keys mostly, some of other messages (a type and a hash, as `message_key`)."""
    if k >= 10:
        return ("ticker", 1_000 + k) if k < 12 else (None, -k)
    return ("trade", b'"t-%d"' % k)


@settings(max_examples=200, deadline=None)
@given(_STEPS)
def test_the_engine_calls_answer_as_the_engine(steps: list[tuple[int, int, int]]) -> None:
    mine, theirs = CompiledCopies(WINDOW, room=2), Copies(WINDOW)
    recv = 0
    for k, conn, step in steps:
        recv += step
        assert mine.count(_key(k), conn, recv) == theirs.count(_key(k), conn, recv), (k, recv)


def _frame(k: int, style: int, pad: int = 0) -> bytes:
    """A trade frame with trade id k, spelled one of several ways the key cut must follow,
    after `pad` bytes of near misses of the key's name (the search must not step over
    the first whole one)."""
    if style == 6:  # the key's name right at the start (a search's first step)
        return b'{"trade_id":"t-%d","type":"trade","msg":{"trade_id":"u"}}' % k
    if style == 5:
        near = ('"trade_i"' + '"' * (pad % 4) + "d" * (pad % 3))[: pad + 1]
        return b'{"type":"trade","near":%s,"msg":{"trade_id":"t-%d","again":{"trade_id":"u"}}}' % (
            json.dumps(near).encode(),
            k,
        )
    msg = {"trade_id": f"t-{k}", "market_ticker": "M", "count_fp": "1.00"}
    if style == 0:
        return json.dumps({"type": "trade", "sid": 2, "seq": 1, "msg": msg}).encode()
    if style == 1:  # no spaces
        return json.dumps({"type": "trade", "msg": msg}, separators=(",", ":")).encode()
    if style == 2:  # the id last: no comma after it
        return b'{"type":"trade","msg":{"market_ticker":"M","trade_id": "t-%d"  }}' % k
    if style == 3:  # tabs and newlines around it
        return b'{"type":"trade","msg":{"trade_id":\t"t-%d"\n,"count_fp":"1.00"}}' % k
    return b'{"type":"trade","sid":2,"msg":{"market_ticker":"M"}}'  # no trade_id at all


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(1, 3), st.integers(-200, 700),
                          st.integers(0, 6), st.booleans(), st.integers(0, 24)),
                min_size=1, max_size=200))  # fmt: skip
def test_the_kernels_trades_answer_as_the_engine(
    steps: list[tuple[int, int, int, int, bool, int]],
) -> None:
    """Frames counted in windows (the kernel's bulk call), some by the engine's call in
    between (the trades the kernel leaves to the engine), in one memory."""
    mine, theirs = CompiledCopies(WINDOW, room=2), Copies(WINDOW)
    frames = [_frame(k, style, pad) for k, _, _, style, _, pad in steps]
    data = np.frombuffer(b"".join(frames), np.uint8)
    offsets = np.cumsum([0] + [len(f) for f in frames]).astype(np.int32)
    recvs = np.cumsum([step for _, _, step, _, _, _ in steps]).astype(np.int64)
    conns = np.array([conn for _, conn, _, _, _, _ in steps], np.int64)
    i = 0
    while i < len(steps):
        if steps[i][4]:  # the engine's own
            key = message_key("trade", frames[i])
            got = mine.count(key, int(conns[i]), int(recvs[i]))
            assert got == theirs.count(key, int(conns[i]), int(recvs[i])), i
            i += 1
            continue
        j = i
        while j < len(steps) and not steps[j][4] and j - i < 7:
            j += 1
        rows = np.arange(i, j)
        got = mine.count_trades(data, offsets, rows, conns[i:j], recvs[i:j])
        want = [theirs.count(message_key("trade", frames[r]), int(conns[r]), int(recvs[r]))
                for r in range(i, j)]  # fmt: skip
        assert got.tolist() == want, (i, j)
        i = j


def test_a_key_is_forgotten_once_older_than_the_window_not_at_it() -> None:
    for memory in (CompiledCopies(WINDOW, room=2), Copies(WINDOW)):
        a, b, c = _key(1), _key(2), _key(3)
        assert memory.count(a, 1, 0)
        assert memory.count(b, 1, WINDOW)  # a is exactly one window old: kept
        assert not memory.count(a, 2, WINDOW)  # a copy on another connection
        assert memory.count(a, 1, WINDOW)  # conn 1 brought it twice: a second message
        assert memory.count(c, 1, WINDOW + 1)  # a is older than the window now: gone
        assert memory.count(a, 2, WINDOW + 1)


def test_the_compiled_key_cut_is_the_engines() -> None:
    """Every frame above is cut where `message_key` cuts it, in compiled code (a frame the
    cut missed would still be counted right, by the engine's key, but slowly)."""
    from replay.datasets.copies import _SKIP, _TRADE_ID, _trade_key

    for style in range(6 + 1):
        for pad in range(25):
            frame = _frame(7, style, pad)
            data = np.frombuffer(frame, np.uint8)
            k0, k1 = _trade_key(data, 0, len(data), _TRADE_ID, _SKIP)
            key = message_key("trade", frame)
            if b'"trade_id":' in frame:
                assert key == ("trade", frame[k0:k1]), (style, pad)
            else:
                assert k0 == -1, (style, pad)


def test_the_key_cut_finds_the_comma_at_any_place_in_a_word() -> None:
    """The comma after a trade id is searched eight bytes a step: ids of every length put
    it at every place in a word, and in the bytes after the last whole word."""
    from replay.datasets.copies import _SKIP, _TRADE_ID, _trade_key

    for length in range(24):
        for tail in (b',"count_fp":"1.00"}}', b"}}", b",}", b","):  # a comma last
            frame = b'{"type":"trade","msg":{"trade_id":"%s"%s' % (b"x" * length, tail)
            data = np.frombuffer(frame, np.uint8)
            k0, k1 = _trade_key(data, 0, len(data), _TRADE_ID, _SKIP)
            assert ("trade", frame[k0:k1]) == message_key("trade", frame), (length, tail)


def test_two_keys_are_the_same_only_byte_for_byte() -> None:
    """Keys of a hash are compared eight bytes a step, then byte by byte: keys of every
    length, equal and differing in each one byte, at every alignment in the arena."""
    from replay.datasets.copies import _same

    for length in range(20):
        key = np.arange(1, length + 1, dtype=np.uint8)
        for at in range(9):
            arena = np.zeros(at + length + 3, np.uint8)
            arena[at : at + length] = key
            assert _same(arena, at, key, 0, length), (length, at)
            for j in range(length):
                other = key.copy()
                other[j] ^= 0x40
                assert not _same(arena, at, other, 0, length), (length, at, j)


_QUIET = st.lists(st.tuples(st.integers(0, 6), st.integers(1, 3), st.integers(0, 150)),
                 max_size=100)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(_QUIET, _QUIET)
def test_a_memory_replayed_into_the_compiled_one_answers_on_as_it_would(
    before: list[tuple[int, int, int]],
    after: list[tuple[int, int, int]],
) -> None:
    """What a seek's restore counted (the engine's memory) goes into the derive's compiled
    memory when it takes over (`Copies.replay_into`): from then on both answer alike.
    (Receive times here never step back, as a capture's copies before a start do not
    by more than feeds' skew: a key kept only because an older one still sat before
    it in the memory's order may be forgotten in the replay.)"""
    theirs = Copies(WINDOW)
    recv = 0
    for k, conn, step in before:
        recv += step
        theirs.count(_key(k), conn, recv)
    mine = CompiledCopies(WINDOW, room=2)
    theirs.replay_into(mine)
    for k, conn, step in after:
        recv += step
        assert mine.count(_key(k), conn, recv) == theirs.count(_key(k), conn, recv), (k, recv)
