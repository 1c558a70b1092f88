"""The derive's reads and window takes (`replay.datasets.gather.Gather`) give what
Arrow's read and take give, and never reuse memory a table or window still holds; a
window derived is let go before the next is read (`Outputs.end`).

Row groups as the recorder writes them (sorted for compression within, so every window
is taken out of order) and derived through it equal what `ReplaySession`, reading
through Arrow's take, holds at every frame (`test_equality.assert_equal_to_replay`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.datasets import gather as gather_module
from replay.datasets.gather import Gather
from replay.datasets.rows import Outputs
from schemas.parquet import ParquetSettings, encode_parquet
from tests.replay.capture_factory import build_standard_capture
from tests.replay.datasets.test_equality import assert_equal_to_replay


def _table(frames: list[bytes | None], kind: pa.DataType = pa.binary()) -> pa.Table:
    n = len(frames)
    return pa.table({
        "idx": pa.array(np.arange(n, dtype=np.int64) * 3),
        "raw": pa.array(frames, kind),
        "dir": pa.array(["in", "out"] * (n // 2) + ["in"] * (n % 2)).dictionary_encode(),
    })  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 150).flatmap(lambda n: st.lists(st.integers(0, 40), min_size=n, max_size=n)),
    st.randoms(use_true_random=False),
    st.sampled_from([pa.binary(), pa.large_binary()]),
    st.sampled_from([1, 7, 64, 150]),
)
def test_a_window_equals_arrows_take(
    lengths: list[int], rnd: object, kind: pa.DataType, size: int
) -> None:
    frames = [bytes((7 * k + j) % 251 for j in range(n)) for k, n in enumerate(lengths)]
    table = _table(frames, kind)
    order = list(range(len(frames)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    gather = Gather(keep=2)
    held = []
    for lo in range(0, len(order), size):  # windows of a row group, in turn
        rows = pa.array(order[lo : lo + size], pa.uint64())
        got = gather.take(table, rows)
        assert got.schema == table.schema
        assert got.equals(table.take(rows))
        held.append((got, rows))
    for got, rows in held:  # each still intact once later windows were taken
        assert got.equals(table.take(rows))


def test_memory_a_window_holds_is_not_reused_and_freed_memory_is() -> None:
    frames = [bytes([k]) * (k + 1) for k in range(200)]
    table = _table(frames)
    rows = pa.array(np.arange(199, -1, -1), pa.uint64())
    gather = Gather(keep=2)
    first = gather.take(table, rows)
    address = first.column("raw").chunk(0).buffers()[2].address
    for _ in range(5):  # the first is held: none of these may land in its buffer
        other = gather.take(table, rows)
        assert other.column("raw").chunk(0).buffers()[2].address != address
        del other
    assert first.equals(table.take(rows))
    assert len(gather.windows) == 2  # no more than `keep`
    kept = {gather.take(table, rows).column("raw").chunk(0).buffers()[2].address for _ in range(4)}
    assert len(kept) == 1  # each window dropped before the next: one buffer, used again
    view = np.frombuffer(first.column("raw").chunk(0).buffers()[2], np.uint8)
    del first  # a numpy view of its bytes still holds the buffer
    for _ in range(3):
        assert gather.take(table, rows).column("raw").chunk(0).buffers()[2].address != address
    want = b"".join(frames[k] for k in range(199, -1, -1))
    assert view[: len(want)].tobytes() == want


def test_frames_with_nulls_go_through_arrows_take() -> None:
    table = _table([b"a", None, b"ccc", b""])
    rows = pa.array([2, 1, 3, 0], pa.uint64())
    assert Gather().take(table, rows).equals(table.take(rows))


def _file(path: Path, frames: list[bytes], group_rows: int, **options: object) -> pq.ParquetFile:
    """A file of `frames` as the capture holds them (`raw` required), in row groups."""
    n = len(frames)
    schema = pa.schema([pa.field("idx", pa.int64(), nullable=False),
                        pa.field("raw", pa.binary(), nullable=False),
                        pa.field("market_ticker", pa.string())])  # fmt: skip
    table = pa.table({"idx": np.arange(n, dtype=np.int64),
                      "raw": pa.array(frames, pa.binary()),
                      "market_ticker": [f"M{k % 7}" for k in range(n)]}, schema=schema)  # fmt: skip
    pq.write_table(table, path, row_group_size=group_rows, **options)  # type: ignore[arg-type]
    return pq.ParquetFile(path)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 300), min_size=1, max_size=400),
    st.integers(1, 150),
    st.sampled_from([16, 100, 1000]),
    st.sampled_from([["idx", "raw", "market_ticker"], ["raw"], ["market_ticker", "raw"]]),
)
def test_a_row_group_read_in_batches_equals_arrows_read(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[int], group_rows: int,
    piece: int, columns: list[str],
) -> None:  # fmt: skip
    frames = [bytes((5 * k + j) % 253 for j in range(n)) for k, n in enumerate(lengths)]
    f = _file(tmp_path_factory.mktemp("read") / "f.parquet", frames, group_rows)
    gather = Gather(groups=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gather_module, "_PIECE", piece)  # row groups of a few KB in batches
        held = [(g, gather.read(f, g, columns)) for g in range(f.metadata.num_row_groups)]
    for g, got in held:  # each still intact once later row groups were read
        assert got.equals(f.read_row_group(g, columns=columns))
        assert got.schema == f.read_row_group(g, columns=columns).schema


def test_a_row_group_whose_metadata_undercounts_its_frames_grows_its_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = [bytes([k % 3]) * 500 for k in range(2000)]  # three frames, repeated
    f = _file(tmp_path / "f.parquet", frames, 2000, use_dictionary=["raw"], compression="none")
    column = f.metadata.row_group(0).column(1)
    assert column.path_in_schema == "raw"
    assert column.total_uncompressed_size < sum(map(len, frames)) // 10  # a dictionary's
    monkeypatch.setattr(gather_module, "_PIECE", 1000)
    assert Gather().read(f, 0, ["idx", "raw"]).equals(f.read_row_group(0, columns=["idx", "raw"]))


def test_frames_beyond_32_bit_offsets_are_read_by_arrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = [bytes([k % 3]) * 500 for k in range(2000)]  # the metadata says 3 KB
    f = _file(tmp_path / "f.parquet", frames, 2000, use_dictionary=["raw"], compression="none")
    monkeypatch.setattr(gather_module, "_PIECE", 1000)
    monkeypatch.setattr(gather_module, "_OFFSETS", 100_000)  # as if offsets ended there
    gather = Gather()
    got = gather.read(f, 0, ["idx", "raw"])
    assert got.equals(f.read_row_group(0, columns=["idx", "raw"]))
    ours = {b.ctypes.data for b in gather.groups._buffers}
    assert ours and got.column("raw").chunk(0).buffers()[2].address not in ours


def test_frames_that_may_be_null_are_read_by_arrow(tmp_path: Path) -> None:
    frames: list[bytes | None] = [b"x" * 40, None, b"yz"] * 100
    pq.write_table(pa.table({"raw": pa.array(frames, pa.binary())}), tmp_path / "f.parquet")
    f = pq.ParquetFile(tmp_path / "f.parquet")
    assert Gather().read(f, 0, ["raw"]).equals(f.read_row_group(0, columns=["raw"]))


def _rewrite_as_the_recorder(root: Path) -> int:
    """Every file of the capture rewritten in row groups of 5 records, each sorted by
    type and market as the recorder's files may be; returns how many row groups are
    then out of idx order."""
    unsorted = 0
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        buffer = encode_parquet(table, ParquetSettings(row_group_rows=5),
                                order=("type", "market_ticker", "idx"))  # fmt: skip
        path.write_bytes(buffer.to_pybytes())
        f = pq.ParquetFile(path)
        for g in range(f.metadata.num_row_groups):
            idx = f.read_row_group(g, columns=["idx"]).column("idx")
            unsorted += not pc.all(pc.less(idx[:-1], idx[1:])).as_py() if len(idx) > 1 else 0
    return unsorted


def test_row_groups_sorted_for_storage_derive_as_replay_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gather_module, "_PIECE", 64)  # every row group read in batches
    build_standard_capture(tmp_path)
    assert _rewrite_as_the_recorder(tmp_path) > 5
    out = assert_equal_to_replay(tmp_path)
    assert out["book_changes"].num_rows and out["trades"].num_rows


def test_a_window_derived_is_let_go_and_rows_outside_one_are_refused() -> None:
    emitted: list[str] = []
    out = Outputs(lambda batch, name: emitted.append(name))
    frames = _table([b'{"type":"x"}'] * 4)
    out.begin("run", frames, None, 0, [], np.zeros(4, np.int32))
    out.end()  # nothing emitted: nothing goes out, and the window is not held
    assert emitted == [] and sys.getrefcount(frames) == 2
    out.emit(0, 0, 0, -1, 0, 0, 0, True)  # a row with no window to take its context from
    with pytest.raises(RuntimeError, match="outside a window"):
        out.flush()
