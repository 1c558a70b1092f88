"""The kernel's dense books grow and clear without losing or leaving a level."""

from __future__ import annotations

import numpy as np

from replay.datasets import kernel


def _books(markets: int) -> tuple[np.ndarray, np.ndarray]:
    books = np.zeros((markets, 2, kernel.PRICES), np.int64)
    best = np.full((markets, 2), -1, np.int64)
    rng = np.random.default_rng(7)
    for m in range(markets):
        for s in range(2):
            prices = rng.choice(kernel.PRICES, size=12, replace=False)
            books[m, s, prices] = rng.integers(1, 10**9, size=12)
            best[m, s] = prices.max()
    return books, best


def test_growing_keeps_every_level_and_adds_empty_books() -> None:
    books, _ = _books(5)
    grown = kernel.grown_books(books, 16)
    assert grown.shape == (16, 2, kernel.PRICES)
    assert np.array_equal(grown[:5], books)
    assert not grown[5:].any()


def test_clearing_empties_one_market_only() -> None:
    books, best = _books(4)
    before = books.copy()
    kernel.clear(books, best, 2)
    assert not books[2].any()
    assert list(best[2]) == [-1, -1]
    assert np.array_equal(np.delete(books, 2, axis=0), np.delete(before, 2, axis=0))


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
    books, _ = _books(8)
    start = _rss_mib()
    grown = kernel.grown_books(kernel.grown_books(books, 256), 512)  # doubling, as markets come
    assert grown.nbytes > 75 * 2**20
    assert _rss_mib() - start < 20
