"""Property tests: books equal a reference fold; a damaged sequence is detected or harmless."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from stream import GapDetected
from stream.book import OrderBook
from stream.fixed import price_decimal, price_units, size_decimal

from .harness import Driver, wire
from .test_engine_sequence import book_consumer, drain, frame_consumer

PRICES = [f"0.{p:02d}00" for p in range(1, 100)]
levels = st.dictionaries(st.sampled_from(PRICES), st.integers(1, 500), max_size=15)
deltas = st.lists(
    st.tuples(st.booleans(), st.sampled_from(PRICES), st.integers(-300, 300).filter(bool)),
    max_size=60,
)


def reference(yes: dict, no: dict, ops: list) -> tuple[dict, dict]:
    """The book by definition (docs/protocol.md section 8.1): add, and a level at or below 0
    is gone."""
    book = {
        True: {Decimal(p): Decimal(q) for p, q in yes.items()},
        False: {Decimal(p): Decimal(q) for p, q in no.items()},
    }
    for is_yes, price, delta in ops:
        side = book[is_yes]
        new = side.get(Decimal(price), Decimal(0)) + delta
        if new > 0:
            side[Decimal(price)] = new
        else:
            side.pop(Decimal(price), None)
    return book[True], book[False]


@given(levels, levels, deltas)
def test_a_book_from_a_snapshot_and_deltas_equals_the_reference_fold(yes, no, ops) -> None:
    book = OrderBook("KX-A", 1, 1)  # in units: 1e-4 dollars, 1e-2 contracts
    book.reset(
        {price_units(p): q * 100 for p, q in yes.items()},
        {price_units(p): q * 100 for p, q in no.items()},
        seq=1,
        clock=1,
        recv_ns=0,
    )
    snapshots = []
    for i, (is_yes, price, delta) in enumerate(ops):
        book.apply(is_yes, price_units(price), delta * 100, i + 2, None, 0)
        snapshots.append(book.snapshot())
    ref_yes, ref_no = reference(yes, no, ops)
    snap = book.snapshot()
    assert dict(snap.yes) == ref_yes and dict(snap.no) == ref_no
    assert (
        snap.best_yes_bid == (max(ref_yes), ref_yes[max(ref_yes)])
        if ref_yes
        else (snap.best_yes_bid is None)
    )
    assert [lv.price for lv in snap.no_bids] == sorted(ref_no, reverse=True)
    assert {price_decimal(p): size_decimal(q) for p, q in snap.yes_units.items()} == ref_yes
    for i, old in enumerate(snapshots):  # earlier snapshots never changed afterwards
        assert (dict(old.yes), dict(old.no)) == reference(yes, no, ops[: i + 1])


damage = st.lists(st.sampled_from(["keep", "drop", "dup", "swap"]), min_size=1, max_size=40)


def damaged(frames: list, plan: list[str]) -> list:
    out, i = [], 0
    for action in plan:
        if i >= len(frames):
            break
        if action == "keep":
            out.append(frames[i])
        elif action == "dup":
            out += [frames[i], frames[i]]
        elif action == "swap" and i + 1 < len(frames):
            out += [frames[i + 1], frames[i]]
            i += 1
        i += 1
    return out + frames[i:]


@settings(max_examples=150)
@given(deltas.filter(lambda ops: len(ops) > 3), damage)
def test_any_drop_duplicate_or_reorder_is_detected_or_harmless(ops, plan) -> None:
    d = Driver()
    d.open(1)
    book_consumer(d, ["KX-A"])
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "orderbook_delta", 1))
    d.recv(wire.snapshot(1, 1, "KX-A", yes=[], no=[]))
    frames = [
        (i + 2, wire.delta(1, i + 2, "KX-A", price, str(delta), "yes" if is_yes else "no"))
        for i, (is_yes, price, delta) in enumerate(ops)
    ]
    ops = [*ops, (True, "0.5000", 1)]  # the stream goes on after the damage, so a loss shows
    final = wire.delta(1, len(ops) + 1, "KX-A", "0.5000", "1", "yes")
    for _seq, raw in [*damaged(frames, plan), (len(ops) + 1, final)]:
        d.recv(raw)
        book = d.engine.book("KX-A")
        if book is not None:
            # Never silently wrong: a book held is exactly the truth at its seq.
            applied = ops[: book.seq - 1]
            assert (dict(book.yes), dict(book.no)) == reference({}, {}, applied)
    if not d.of(GapDetected):
        assert d.engine.book("KX-A").seq == len(ops) + 1  # undamaged in effect: complete


@settings(max_examples=150)
@given(st.integers(5, 40), damage)
def test_on_a_stateless_channel_every_missing_seq_is_reported_and_nothing_is_doubled(n, plan):
    d = Driver()
    d.open(1)
    queue = frame_consumer(d, "trade")
    ((_, cmd),) = d.take_sent()
    d.recv(wire.ack(cmd["id"], "trade", 1))
    frames = [(seq, wire.trade(1, seq, "KX-A", f"t{seq}")) for seq in range(1, n + 1)]
    for _, raw in [*damaged(frames, plan), (n + 1, wire.trade(1, n + 1, "KX-A", "last"))]:
        d.recv(raw)
    delivered = [f.seq for f in drain(queue)]
    assert len(delivered) == len(set(delivered))  # nothing delivered twice
    missing = set(range(1, max(delivered) + 1)) - set(delivered)
    if missing:
        assert d.of(GapDetected)
