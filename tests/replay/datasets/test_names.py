"""Market names looked up from frame bytes (`replay.datasets.names`) and the mirror's
registration of new ones."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.datasets import names
from replay.datasets.names import NameTable

# short and long names, names that share their first and last eight bytes, non-ASCII
NAME = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=30),
    st.builds(lambda m: f"KXHIGHNY-26NOV21-B{m}.5", st.integers(0, 99)),
    st.builds(lambda m: f"KXHIGH{m}-26NOV21-B45.5", st.sampled_from(["NY", "NYC", "AUS", "LAX"])),
)


def spans(words: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The words laid out as a frame buffer (with junk between), and their spans."""
    data, m0, m1 = bytearray(b"xx"), [], []
    for w in words:
        m0.append(len(data))
        data += w
        m1.append(len(data))
        data += b'","'
    return np.frombuffer(bytes(data), np.uint8), np.array(m0, np.int64), np.array(m1, np.int64)


@settings(max_examples=300, deadline=None)
@given(known=st.lists(NAME, unique=True, max_size=200), asked=st.lists(NAME, max_size=60))
def test_each_span_gets_the_code_of_its_name_or_unknown(known: list[str], asked: list[str]) -> None:
    table = NameTable()
    for i, name in enumerate(known):  # grows and rehashes along the way
        assert table.add(name.encode()) == i
    words = [*known, *asked]
    data, m0, m1 = spans([w.encode() for w in words])
    codes, _ = table.codes(data, m0, m1)
    want = [known.index(w) if w in known else names.UNKNOWN for w in words]
    assert codes.tolist() == want


def test_a_frame_without_a_market_has_none() -> None:
    table = NameTable()
    table.add(b"M")
    data = np.frombuffer(b"M", np.uint8)
    codes, _ = table.codes(data, np.array([0, 0]), np.array([1, -1]))
    assert codes.tolist() == [0, names.NONE]


def test_the_mirror_numbers_new_names_in_order_and_leaves_bad_bytes_to_the_engine() -> None:
    from replay.datasets.mirror import Mirror
    from stream.engine import Engine

    mirror = Mirror(Engine()._core)

    def codes(words: list[bytes]) -> list[int]:
        """A window's codes, as the driver asks: the scan's lookup, then the mirror's."""
        data, m0, m1 = spans(words)
        looked_up = mirror.table.codes(data, m0, m1)
        window = SimpleNamespace(data=data, market_spans=(m0, m1), market_codes=looked_up)
        return mirror.market_codes(window).tolist()  # type: ignore[arg-type]

    assert codes([b"B", b"A", b"B", b"\xff\xfe", b"C", b"A"]) == [0, 1, 0, names.NONE, 2, 1]
    assert mirror.names == ["B", "A", "C"]
    assert codes([b"C", b"D", b"B"]) == [2, 3, 0]  # the next window: old codes kept
    assert mirror.market("D") == 3 and mirror.market("E") == 4
    assert codes([b"E"]) == [4]  # a name registered by the engine's side is known too
