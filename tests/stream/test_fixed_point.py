"""Fixed-point books: integers in the wire's units inside, exact Decimals at the surface.

The property tests drive the real engine with wire frames in every form the
exchange uses or may use (4-decimal strings, sub-penny and finer prices,
fractional sizes, legacy integer cents, numbers sent as JSON numbers, one-sided
and empty snapshots) and hold the books against a plain Decimal fold.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.fixed import (
    MEMO_LIMIT,
    PRICE_SCALE,
    SIZE_SCALE,
    format_price,
    price_decimal,
    price_memo,
    price_units,
    size_decimal,
    size_units,
    units,
)

from .harness import Driver, wire
from .test_engine_sequence import book_consumer, drain

D = Decimal

# ---------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.5600", 5600),
        ("0.56", 5600),
        ("1", 10_000),
        ("0.0001", 1),
        ("-0.0100", -100),
        ("0.560000", 5600),  # extra zero digits are still a whole unit
        ("5.6e-1", 5600),
        (1, 10_000),
    ],
)
def test_a_price_becomes_an_exact_integer_of_ten_thousandths(text: Any, expected: int) -> None:
    value = price_units(text)
    assert value == expected and type(value) is int


@pytest.mark.parametrize(
    ("text", "expected"),
    [("25.00", 2500), ("-25.00", -2500), ("74.77", 7477), ("0.5", 50), ("12", 1200), (3, 300)],
)
def test_a_size_becomes_an_exact_integer_of_hundredths(text: Any, expected: int) -> None:
    value = size_units(text)
    assert value == expected and type(value) is int


def test_legacy_cents_and_counts_scale_exactly_into_the_same_units() -> None:
    assert units(48, 2) == price_units("0.48") == 4800  # cents: 1e-2 dollars
    assert units(-25, 2) == size_units("-25.00") == -2500  # whole contracts
    assert units("48.5", 2) == price_units("0.485") == 4850  # a half cent, as text


def test_a_value_finer_than_the_unit_stays_exact_and_is_never_rounded() -> None:
    price = price_units("0.56005")
    size = size_units("1.005")
    assert price == D("5600.5") and type(price) is D
    assert size == D("100.5") and type(size) is D
    assert price_decimal(price) == D("0.56005") and size_decimal(size) == D("1.005")
    # ints and Decimals in units add and compare exactly with each other
    assert price + 4399 == D("9999.5") and price > 5600 and price < 5601


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-inf", "", "0.5.6", "abc", "0x10", 1.5])
def test_anything_but_a_finite_decimal_is_refused(text: Any) -> None:
    with pytest.raises(ValueError):
        price_units(text)


def test_the_memo_only_keeps_whole_units_and_stays_bounded() -> None:
    price_units("0.12345")
    assert "0.12345" not in price_memo
    for i in range(MEMO_LIMIT + 10):
        size_units(f"{i}.5")
    from stream.fixed import size_memo

    assert len(size_memo) <= MEMO_LIMIT
    assert size_units(f"{MEMO_LIMIT + 5}.5") == (MEMO_LIMIT + 5) * SIZE_SCALE + 50


def test_prices_convert_back_to_their_four_decimal_wire_text() -> None:
    assert format_price(5600) == "0.5600" and price_decimal(PRICE_SCALE) == D("1.0000")
    assert str(size_decimal(2500)) == "25.00"


# ---------------------------------------------------------------------- frames in every form

_NUM = "@@num:"


def render(obj: Any) -> bytes:
    """JSON where a `_NUM`-tagged string is written as a bare JSON number (its exact text)."""
    text = json.dumps(obj, separators=(",", ":"))
    while _NUM in text:
        start = text.index('"' + _NUM)
        end = text.index('"', start + 1)
        text = text[:start] + text[start + 1 + len(_NUM) : end] + text[end + 1 :]
    return text.encode()


def as_json_number(value: D) -> str:
    return _NUM + format(value, "f")


# A price: 1 to 9,999 ten-thousandths, or finer (up to 6 places), strictly inside (0, 1).
prices = st.one_of(
    st.integers(1, 99).map(lambda c: D(c) / 100),  # whole cents (legacy-expressible)
    st.integers(1, 9999).map(lambda u: D(u) / 10_000),  # sub-penny
    st.integers(1, 999_999).map(lambda u: D(u) / 1_000_000),  # finer than the unit
)
sizes = st.one_of(
    st.integers(1, 500).map(D),  # whole contracts (legacy-expressible)
    st.integers(1, 50_000).map(lambda u: D(u) / 100),  # fractional
    st.integers(1, 500_000).map(lambda u: D(u) / 1000),  # finer than the unit
)
forms = st.sampled_from(["text", "text4", "number", "legacy"])


def encode_price(price: D, form: str) -> tuple[str, Any]:
    """(field, value) of a price in a form; legacy only when it is whole cents."""
    if form == "legacy" and (price * 100) == (price * 100).to_integral_value():
        return "price", int(price * 100)
    if form == "number":
        return "price_dollars", as_json_number(price)
    if form == "text4" and price == price.quantize(D("0.0001")):
        return "price_dollars", format(price.quantize(D("0.0001")), "f")
    return "price_dollars", format(price, "f")


def encode_size(size: D, form: str) -> tuple[str, Any]:
    if form == "legacy" and size == size.to_integral_value():
        return "delta", int(size)
    if form == "number":
        return "delta_fp", as_json_number(size)
    return "delta_fp", format(size, "f")


def is_finer(value: D, places: int) -> bool:
    return value.scaleb(places) != value.scaleb(places).to_integral_value()


ladder = st.dictionaries(prices, sizes, max_size=8)
side_or_none = st.one_of(st.none(), ladder)  # None: the side's key is absent
snapshot_op = st.tuples(st.just("snapshot"), side_or_none, side_or_none, st.booleans())
delta_op = st.tuples(st.just("delta"), st.booleans(), prices, sizes, st.booleans(), forms)
streams = st.lists(st.one_of(delta_op, delta_op, delta_op, snapshot_op), min_size=1, max_size=40)


def snapshot_frame(seq: int, yes: dict | None, no: dict | None, legacy: bool) -> tuple[bytes, int]:
    """A snapshot (a side left out when None), and how many of its values are finer."""
    msg: dict[str, Any] = {"market_ticker": "KX-A", "market_id": "m", "clock": seq}
    finer = 0
    whole_cents = all(
        not is_finer(p, 2) and not is_finer(q, 0)
        for side in (yes or {}, no or {})
        for p, q in side.items()
    )
    for name, legacy_name, side in (("yes_dollars_fp", "yes", yes), ("no_dollars_fp", "no", no)):
        if side is None:
            continue
        if legacy and whole_cents:
            msg[legacy_name] = [[int(p * 100), int(q)] for p, q in side.items()]
        else:
            msg[name] = [[format(p, "f"), format(q, "f")] for p, q in side.items()]
            finer += sum(is_finer(p, 4) + is_finer(q, 2) for p, q in side.items())
    frame = {"type": "orderbook_snapshot", "sid": 1, "seq": seq, "msg": msg}
    return render(frame), finer


def delta_frame(seq: int, is_yes: bool, price: D, size: D, remove: bool, form: str) -> bytes:
    price_field, price_value = encode_price(price, form)
    size_field, size_value = encode_size(-size if remove else size, form)
    msg = {
        "market_ticker": "KX-A",
        "market_id": "m",
        "clock": seq,
        "side": "yes" if is_yes else "no",
        price_field: price_value,
        size_field: size_value,
    }
    return render({"type": "orderbook_delta", "sid": 1, "seq": seq, "msg": msg})


def fold(book: dict[bool, dict[D, D]], op: tuple) -> None:
    """The book by definition, in Decimals."""
    if op[0] == "snapshot":
        _, yes, no, _ = op
        book[True] = {p: q for p, q in (yes or {}).items() if q > 0}
        book[False] = {p: q for p, q in (no or {}).items() if q > 0}
        return
    _, is_yes, price, size, remove, _ = op
    side = book[is_yes]
    delta = -size if remove else size
    old = side.get(price)
    if old is None:
        if delta > 0:
            side[price] = delta
        return
    if old + delta > 0:
        side[price] = old + delta
    else:
        del side[price]


def finer_in_delta(op: tuple) -> int:
    _, _, price, size, _, form = op
    price_field, _ = encode_price(price, form)
    size_field, _ = encode_size(size, form)
    legacy_price, legacy_size = price_field == "price", size_field == "delta"
    return (not legacy_price and is_finer(price, 4)) + (not legacy_size and is_finer(size, 2))


@settings(max_examples=300, deadline=None)
@given(ladder, ladder, streams)
def test_fixed_point_books_equal_a_decimal_fold_on_random_streams(yes, no, ops) -> None:
    d = Driver()
    d.open(1)
    queue = book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    ops = [("snapshot", yes, no, False), *ops]
    truth: dict[bool, dict[D, D]] = {True: {}, False: {}}
    finer = 0
    for seq, op in enumerate(ops, start=1):
        if op[0] == "snapshot":
            raw, n = snapshot_frame(seq, op[1], op[2], op[3])
            finer += n
        else:
            raw = delta_frame(seq, *op[1:])
            finer += finer_in_delta(op)
        d.recv(raw)
        fold(truth, op)
        book = d.engine.book("KX-A")
        assert book is not None and book.valid
        assert dict(book.yes) == truth[True] and dict(book.no) == truth[False]
        best_yes = max(truth[True], default=None)
        best_no = max(truth[False], default=None)
        assert (book.best_yes_bid is None) == (best_yes is None)
        if best_yes is not None:
            assert book.best_yes_bid == (best_yes, truth[True][best_yes])
            assert book.best_no_ask == (1 - best_yes, truth[True][best_yes])
        if best_no is not None:
            assert book.best_yes_ask == (1 - best_no, truth[False][best_no])
        if best_yes is not None and best_no is not None:
            assert book.spread == 1 - best_no - best_yes
            assert book.mid == (best_yes + 1 - best_no) / 2
            assert book.spread_units == (1 - best_no - best_yes) * PRICE_SCALE
        else:
            assert book.spread is None and book.mid is None
        assert [lv.price for lv in book.yes_bids] == sorted(truth[True], reverse=True)
        assert {price_decimal(p): size_decimal(q) for p, q in book.no_units.items()} == truth[False]
    assert not d.reports("malformed")
    assert d.engine.stats.subunit_values == finer
    numbers = sum(op[0] == "delta" and op[5] == "number" for op in ops)
    assert d.engine.stats.exact_reads == numbers
    assert len(drain(queue)) == len(ops)


@given(st.sampled_from(["NaN", "Infinity", "", "0.5.5", "x", "1e"]), st.booleans())
def test_a_malformed_number_is_a_malformed_frame_and_changes_nothing(bad, in_price) -> None:
    d = Driver()
    d.open(1)
    book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A"))
    before = d.engine.book("KX-A")
    raw = wire.delta(1, 2, "KX-A", bad if in_price else "0.4000", "5.00" if in_price else bad)
    d.recv(raw)
    (report,) = d.reports("malformed")
    assert report.raw == raw
    assert d.engine.book("KX-A") == before and d.engine.book("KX-A").seq == 1
    d.recv(wire.delta(1, 2, "KX-A", "0.4000", "5.00"))  # seq 2 is still expected next
    assert d.engine.book("KX-A").yes[D("0.40")] == D("15.00")


def test_a_sub_penny_level_is_kept_exactly_and_emptied_exactly() -> None:
    d = Driver()
    d.open(1)
    book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A", yes=[("0.40001", "1.001")], no=[]))
    book = d.engine.book("KX-A")
    assert book.yes == {D("0.40001"): D("1.001")}
    assert book.best_yes_bid_units == (D("4000.1"), D("100.1"))
    d.recv(wire.delta(1, 2, "KX-A", "0.40001", "-1.001"))
    assert d.engine.book("KX-A").yes == {}
    assert d.engine.stats.subunit_values == 4
