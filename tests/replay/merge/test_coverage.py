"""What a capture covered, from its connection events: `replay.merge.coverage`."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from replay.merge.coverage import (
    Connection,
    connections,
    covered_ns,
    gaps,
    intersect,
    shifted,
    subtract,
    union,
)

_DICT = pa.dictionary(pa.int32(), pa.string())


def _events(rows: list[tuple[str, int, int, int, str]], *, dictionary: bool = True) -> pa.Table:
    run, idx, conn, recv, type_ = zip(*rows, strict=True)
    kind = _DICT if dictionary else pa.string()
    return pa.table({"run_id": pa.array(run).cast(kind), "idx": pa.array(idx, pa.int64()),
                     "conn": pa.array(conn, pa.int32()), "recv_ns": pa.array(recv, pa.int64()),
                     "type": pa.array(type_).cast(kind)})  # fmt: skip


def test_a_connection_covers_from_its_open_to_its_close_or_its_runs_last_record() -> None:
    rows = [
        ("r2", 5, 1, 900, "open"),  # a second run, killed: no close
        ("r1", 9, 2, 500, "close"),
        ("r1", 1, 0, 90, "run_start"),
        ("r1", 2, 1, 100, "open"),
        ("r1", 3, 0, 101, "state"),
        ("r1", 4, 1, 300, "close"),
        ("r1", 5, 2, 350, "open"),
        ("r1", 7, 3, 400, "close"),  # a close of a connection never seen open: nothing
        ("r1", 10, 0, 510, "run_stop"),
    ]
    ends = {"r1": 510, "r2": 1_500}
    found = connections(_events(rows), ends)
    assert found == [
        Connection("r1", 1, 100, 300, True),
        Connection("r1", 2, 350, 500, True),
        Connection("r2", 1, 900, 1_500, False),
    ]
    assert connections(_events(rows, dictionary=False), ends) == found


def test_a_connection_opened_twice_without_a_close_ends_at_the_second_open() -> None:
    events = _events([("r", 1, 1, 10, "open"), ("r", 2, 1, 20, "open"), ("r", 3, 1, 30, "close")])
    assert connections(events, {"r": 40}) == [
        Connection("r", 1, 10, 20, False),
        Connection("r", 1, 20, 30, True),
    ]
    assert connections(events.slice(0, 0), {}) == []


def test_shifted_moves_every_connection_onto_the_other_clock() -> None:
    conns = [Connection("r", 1, 100, 200, True), Connection("r", 2, 300, 400, False)]
    assert [c.interval for c in shifted(conns, -50)] == [(50, 150), (250, 350)]
    assert shifted(conns, -50)[1].closed is False


def test_union_gaps_and_differences_of_intervals() -> None:
    a = [(10, 20), (15, 30), (40, 50), (50, 55), (60, 60)]
    assert union(a) == [(10, 30), (40, 55)]
    assert gaps(a) == [(30, 40)]
    assert gaps([]) == []
    b = [(0, 12), (25, 45)]
    assert intersect(a, b) == [(10, 12), (25, 30), (40, 45)]
    assert subtract(a, b) == [(12, 25), (45, 55)]
    assert subtract(b, a) == [(0, 10), (30, 40)]
    assert covered_ns(a) == 35


_intervals = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 12)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=8,
)


def _points(intervals: list[tuple[int, int]]) -> set[int]:
    return {t for start, end in intervals for t in range(start, end)}


@given(_intervals, _intervals)
def test_interval_arithmetic_agrees_with_sets_of_instants(
    a: list[tuple[int, int]], b: list[tuple[int, int]]
) -> None:
    pa_, pb = _points(a), _points(b)
    assert _points(union(a)) == pa_
    assert all(x[1] < y[0] for x, y in zip(union(a), union(a)[1:], strict=False))
    assert _points(intersect(a, b)) == pa_ & pb
    assert _points(subtract(a, b)) == pa_ - pb
    assert covered_ns(a) == len(pa_)
    if pa_:
        span = set(range(min(pa_), max(pa_) + 1))
        assert _points(gaps(a)) == span - pa_
