"""The kernel's dense books: every write keeps the sizes, the `held` bitmap and the best
price together; books grow and clear without losing or leaving a level."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.datasets import kernel


def _books(markets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    books, held, best = kernel.empty_books(markets)
    rng = np.random.default_rng(7)
    for m in range(markets):
        for s in range(2):
            prices = rng.choice(kernel.PRICES, size=12, replace=False)
            for p, size in zip(prices, rng.integers(1, 10**9, size=12), strict=True):
                kernel.set_level(books, held, best, m, s, int(p), int(size))
    return books, held, best


def _levels(books: np.ndarray, held: np.ndarray, best: np.ndarray, m: int, s: int) -> list:
    """The levels of one side, best first, as the kernel walks them (best, then `below`)."""
    out = []
    p = int(best[m, s])
    while p >= 0:
        out.append((p, int(books[m, s, p])))
        p = int(kernel.below(held, m, s, p))
    return out


def _assert_consistent(books, held, best, model: dict) -> None:
    for (m, s), ladder in model.items():
        expected = sorted(((p, q) for p, q in ladder.items() if q > 0), reverse=True)
        assert _levels(books, held, best, m, s) == expected, (m, s)
        prices = np.flatnonzero(books[m, s])
        assert sorted(prices.tolist()) == sorted(p for p, _ in expected)
        bits = np.flatnonzero((held[m, s][:, None] >> np.arange(32) & 1).reshape(-1))
        assert bits.tolist() == sorted(p for p, _ in expected)


_PRICE = st.one_of(st.integers(0, kernel.PRICES - 1), st.sampled_from([0, 31, 32, 63, 64,
                   9_999, 10_000]))  # fmt: skip
_OP = st.tuples(
    st.sampled_from(["delta", "set", "clear"]),
    st.integers(0, 2),
    st.integers(0, 1),
    _PRICE,
    st.integers(-5, 5),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_OP, max_size=80))
def test_every_write_keeps_sizes_bitmap_and_best_together(ops: list) -> None:
    books, held, best = kernel.empty_books(3)
    model: dict[tuple[int, int], dict[int, int]] = {(m, s): {} for m in range(3) for s in (0, 1)}
    for op, m, s, p, x in ops:
        ladder = model[m, s]
        if op == "delta":
            changed, after = kernel.apply_delta(books, held, best, m, s, p, x)
            old = ladder.get(p, 0)
            new = old + x if old else max(x, 0)
            new = max(new, 0)
            assert (bool(changed), int(after)) == (new != old, new)
            ladder[p] = new
        elif op == "set":
            kernel.set_level(books, held, best, m, s, p, x)
            ladder[p] = max(x, 0)
        else:
            kernel.clear(books, held, best, m)
            model[m, 0].clear()
            model[m, 1].clear()
        _assert_consistent(books, held, best, model)


def test_a_snapshot_load_keeps_a_repeated_price_at_its_last_size() -> None:
    books, held, best = kernel.empty_books(1)
    prices = np.array([4_000, 5_000, 4_000, 6_000, 6_000], np.int64)
    sizes = np.array([7, 3, 9, 5, 0], np.int64)
    kernel.load_levels(books, held, best, 0, 0, prices, sizes)
    assert _levels(books, held, best, 0, 0) == [(5_000, 3), (4_000, 9)]


def test_growing_keeps_every_level_and_adds_empty_books() -> None:
    books, held, best = _books(5)
    grown, grown_held = kernel.grown_books(books, 16), kernel.grown_books(held, 16)
    assert grown.shape == (16, 2, kernel.PRICES)
    assert np.array_equal(grown[:5], books)
    assert np.array_equal(grown_held[:5], held)
    assert not grown[5:].any() and not grown_held[5:].any()


def test_clearing_empties_one_market_only() -> None:
    books, held, best = _books(4)
    before, held_before = books.copy(), held.copy()
    kernel.clear(books, held, best, 2)
    assert not books[2].any() and not held[2].any()
    assert list(best[2]) == [-1, -1]
    assert np.array_equal(np.delete(books, 2, axis=0), np.delete(before, 2, axis=0))
    assert np.array_equal(np.delete(held, 2, axis=0), np.delete(held_before, 2, axis=0))


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_growing_leaves_the_new_books_out_of_memory() -> None:
    """512 markets of dense ladders are 78 MiB of address space; growing copies only the
    levels held, so the new books' pages stay untouched (a whole-array copy of the old
    books, as the doubling did, made every page of them resident)."""
    books, _, _ = _books(8)
    start = _rss_mib()
    grown = kernel.grown_books(kernel.grown_books(books, 256), 512)  # doubling, as markets come
    assert grown.nbytes > 75 * 2**20
    assert _rss_mib() - start < 20
