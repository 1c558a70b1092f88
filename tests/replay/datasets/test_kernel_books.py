"""The derive's books (`replay.datasets.ladders`): every write keeps sizes, the `held`
bitmap and the best price together; a market's ladder is a cent's slots until a finer
price comes, then every price's, its levels kept; books grow and clear without losing
or leaving a level."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.datasets import ladders


def _levels(books: ladders.Books, m: int, s: int) -> list[tuple[int, int]]:
    """One side's levels, best first, as the kernel walks them (best, then `below`)."""
    sizes, held, best, lay = books.arrays()
    out = []
    p = int(best[m, s])
    while p >= 0:
        out.append((p, int(ladders.size_at(sizes, lay, m, s, p))))
        p = int(ladders.below(held, lay, m, s, p))
    return out


def _assert_as_modelled(books: ladders.Books, model: dict) -> None:
    sizes, held, best, lay = books.arrays()
    for (m, s), ladder in model.items():
        expected = sorted(((p, q) for p, q in ladder.items() if q > 0), reverse=True)
        assert _levels(books, m, s) == expected, (m, s)
        step = int(lay[m, 1])
        slots = (ladders.PRICES - 1) // step + 1
        first = int(lay[m, 0]) + s * slots
        held_prices = np.flatnonzero(sizes[first : first + slots]) * step
        assert sorted(held_prices.tolist()) == sorted(p for p, _ in expected)
        words = (slots + 31) // 32
        hfirst = int(lay[m, 2]) + s * words
        bits = np.flatnonzero((held[hfirst : hfirst + words, None] >> np.arange(32) & 1).ravel())
        assert (bits * step).tolist() == sorted(p for p, _ in expected)


_CENTS = st.integers(0, 100).map(lambda c: c * 100)
_PRICE = st.one_of(_CENTS, _CENTS, st.integers(0, ladders.PRICES - 1),
                   st.sampled_from([0, 31, 32, 3_100, 3_200, 9_999, 10_000]))  # fmt: skip
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
    """Writes as the kernel and the mirror make them: the ladder fitted to the price
    first (a finer price moves the market to a finer ladder, its levels kept)."""
    books = ladders.Books()
    books.add(3)
    model: dict[tuple[int, int], dict[int, int]] = {(m, s): {} for m in range(3) for s in (0, 1)}
    for op, m, s, p, x in ops:
        ladder = model[m, s]
        if op != "clear":
            books.fit(m, (p,))
        if op == "delta":
            changed, after = ladders.apply_delta(*books.arrays(), m, s, p, x)
            old = ladder.get(p, 0)
            new = max(old + x if old else x, 0)
            assert (bool(changed), int(after)) == (new != old, new)
            ladder[p] = new
        elif op == "set":
            ladders.set_level(*books.arrays(), m, s, p, x)
            ladder[p] = max(x, 0)
        else:
            ladders.clear(*books.arrays(), m)
            model[m, 0].clear()
            model[m, 1].clear()
        _assert_as_modelled(books, model)


def test_a_finer_price_moves_the_market_to_a_finer_ladder_keeping_its_levels() -> None:
    books = ladders.Books()
    books.add(2)
    for m in range(2):
        for s, p, q in ((0, 4_500, 7), (0, 4_000, 3), (1, 5_200, 9)):
            ladders.set_level(*books.arrays(), m, s, p, q)
    assert books.lay[0, 1] == ladders.CENT
    assert not ladders.fits(books.lay, 0, 4_550)
    books.fit(0, (4_550,))
    assert ladders.fits(books.lay, 0, 4_550) and books.lay[1, 1] == ladders.CENT
    ladders.set_level(*books.arrays(), 0, 0, 4_550, 2)
    assert _levels(books, 0, 0) == [(4_550, 2), (4_500, 7), (4_000, 3)]
    assert _levels(books, 0, 1) == [(5_200, 9)]
    assert _levels(books, 1, 0) == [(4_500, 7), (4_000, 3)]  # the other market untouched


def test_a_snapshot_load_keeps_a_repeated_price_at_its_last_size() -> None:
    books = ladders.Books()
    books.add(1)
    prices = np.array([4_000, 5_000, 4_000, 6_000, 6_000], np.int64)
    quantities = np.array([7, 3, 9, 5, 0], np.int64)
    ladders.load_levels(*books.arrays(), 0, 0, prices, quantities)
    assert _levels(books, 0, 0) == [(5_000, 3), (4_000, 9)]


def test_growing_keeps_every_level_and_clearing_empties_one_market_only() -> None:
    books = ladders.Books()
    rng = np.random.default_rng(7)
    model = {}
    for m in range(40):  # growing one market at a time, as markets come
        books.add(m + 1)
        for s in range(2):
            prices = rng.choice(101, size=12, replace=False) * 100
            if m % 5 == 0:
                prices[0] += 37  # a sub-penny market
                books.fit(m, prices.tolist())
            for p in prices:
                q = int(rng.integers(1, 10**9))
                ladders.set_level(*books.arrays(), m, s, int(p), q)
                model.setdefault((m, s), {})[int(p)] = q
    _assert_as_modelled(books, model)
    ladders.clear(*books.arrays(), 12)
    model[12, 0], model[12, 1] = {}, {}
    _assert_as_modelled(books, model)
    assert list(books.best[12]) == [-1, -1]


def test_books_cost_what_their_ladders_need() -> None:
    """5,000 markets in whole cents (a whole-exchange capture): 8 MB of ladders, under
    20 MiB with the pools' room to grow; one slot a price unit for every market would be
    763 MiB. A sub-penny market costs 160 KB."""
    books = ladders.Books()
    books.add(5_000)
    assert books.sizes.nbytes + books.held.nbytes < 20 * 2**20
    used = books.sizes.nbytes
    books.fit(7, (4_550,))
    assert books.sizes.nbytes - used <= 2 * 2 * ladders.PRICES * 8  # at most one doubling
