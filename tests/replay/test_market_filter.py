"""A read narrowed to some markets keeps every row of them (`of_markets`)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from replay.reading.capture import Capture, of_markets

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample"


def test_a_slice_of_a_dictionary_column_is_filtered_by_its_own_rows() -> None:
    """The windows of a read are slices of their row groups: the codes of a slice begin
    `offset` codes into the buffer (they were read `offset` bytes in: other rows' codes)."""
    column = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 2, 0, 1, None, 0, 1], pa.int32()), pa.array(["A", "B", "C"])
    )
    part = column.slice(3, 5)  # A B null A B
    keep = of_markets(pa.chunked_array([part]), frozenset(["B"])).to_pylist()
    assert keep == [False, True, True, False, True]  # a row of no market is kept


def test_a_read_of_some_markets_in_small_windows_keeps_all_their_rows() -> None:
    capture = Capture(SAMPLE)
    market = sorted(capture.markets("ticker"))[0]
    expected = 0
    for window in capture.read(["ticker"], columns=("market_ticker",), with_state=False):
        expected += window.table.column("market_ticker").to_pylist().count(market)
    got = 0
    for window in capture.read(["ticker"], columns=("market_ticker",), with_state=False,
                               markets=frozenset([market]), window_rows=7):  # fmt: skip
        assert set(window.table.column("market_ticker").to_pylist()) == {market}
        got += window.table.num_rows
    assert expected > 20 and got == expected
