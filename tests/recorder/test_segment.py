"""The journal segment format: records round-trip bytes exact; damage is found and bounded.

Segments are written by a real JournalWriter and read back by `read_segment`, which
the publisher and recovery both use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.errors import SegmentFormatError
from recorder.storage._segment import (
    BODY_FIXED,
    decode_header,
    encode_header,
    parse_segment_name,
    read_segment,
    segment_name,
)
from recorder.storage._table import segment_table
from recorder.storage.journal import JournalWriter
from schemas.record import CaptureRecord

from .helpers import RUN_A

# conn recv_ns mono_ns dir channel type sid seq market_ticker raw binary feed
Row = tuple[int, int, int, str, str, str, int | None, int | None, str | None, bytes, bool, int]

ODD_ROWS: list[Row] = [
    (1, 10, 20, "in", "ticker", "ticker", 2, None, "KX-A", b'{"type":"ticker"}', False, 0),
    (1, 11, 21, "in", "_unknown", "_malformed", None, None, None, b"", False, 1),
    (
        1,
        12,
        22,
        "in",
        "_unknown",
        "_malformed",
        None,
        None,
        None,
        b"\xff\xfe\x00\x80 utf-8?",
        True,
        5,
    ),
    (2, 13, 23, "out", "_control", "subscribe", None, None, None, b'{"id":1,"cmd":"x"}', False, 7),
    (2, 14, 24, "event", "_session", "close", None, None, None, b'{"type":"close"}', False, 1),
    (2, 15, 25, "in", "trade", "trade", 3, 2**62, "KX-\u00e9\u4e2d", b"x" * 200_000, True, 5),
    (2, 16, 26, "in", "trade", "trade", -5, 0, "", b"\x00" * 3, False, 0),
]


def write_segment(journal: Path, rows: list[Row]) -> Path:
    sealed: list[Path] = []
    with JournalWriter(journal, RUN_A, on_sealed=sealed.append) as writer:
        for *fields, feed in rows:
            writer.append(*fields, feed=feed)
    assert len(sealed) == 1
    return sealed[0]


def opcode(row: Row) -> int | None:
    """What the capture's `opcode` column says of a row: 1 text, 2 binary, None for events."""
    return None if row[3] == "event" else 2 if row[10] else 1


def as_records(rows: list[Row]) -> list[CaptureRecord]:
    return [CaptureRecord(RUN_A, i, *row[:10], opcode(row), row[11]) for i, row in enumerate(rows)]


def record_sizes(rows: list[Row]) -> list[int]:
    return [
        8 + BODY_FIXED + len(ch.encode()) + len(ty.encode()) + len((tk or "").encode()) + len(raw)
        for _, _, _, _, ch, ty, _, _, tk, raw, _, _ in rows
    ]


def test_records_round_trip_bytes_exact_including_invalid_utf8_and_empty_raw(
    tmp_path: Path,
) -> None:
    path = write_segment(tmp_path, ODD_ROWS)
    data = read_segment(path)
    assert data.records() == as_records(ODD_ROWS)
    assert data.header.run_id == RUN_A
    assert (data.skipped_bytes, data.tail_bytes, data.excluded_records) == (0, 0, 0)


def test_sid_and_seq_outside_their_column_types_are_stored_as_null_with_raw_intact(
    tmp_path: Path,
) -> None:
    raw = b'{"type":"trade","sid":99999999999,"seq":1}'
    row: Row = (1, 1, 1, "in", "trade", "trade", 99_999_999_999, 2**70, "KX-A", raw, True, 6)
    (record,) = read_segment(write_segment(tmp_path, [row])).records()
    assert (record.sid, record.seq, record.raw, record.market_ticker) == (None, None, raw, "KX-A")
    assert (record.opcode, record.feed) == (2, 6)  # the clamped path keeps both


@pytest.mark.parametrize("victim", [0, 3, 6])
def test_a_flipped_byte_is_caught_and_costs_only_its_own_record(
    tmp_path: Path, victim: int
) -> None:
    path = write_segment(tmp_path, ODD_ROWS)
    sizes = record_sizes(ODD_ROWS)
    start = decode_header(path.read_bytes()).size + sum(sizes[:victim])
    data = bytearray(path.read_bytes())
    data[start + sizes[victim] - 1] ^= 0x01  # the last byte of its raw (or ticker)
    path.write_bytes(bytes(data))
    read = read_segment(path)
    expected = [r for r in as_records(ODD_ROWS) if r.idx != victim]
    assert read.records() == expected
    if victim == len(ODD_ROWS) - 1:
        assert read.tail_bytes == sizes[victim]
    else:
        assert read.skipped_bytes == sizes[victim]


def test_a_flipped_length_field_is_caught(tmp_path: Path) -> None:
    path = write_segment(tmp_path, ODD_ROWS)
    start = decode_header(path.read_bytes()).size
    data = bytearray(path.read_bytes())
    data[start] ^= 0x04  # record 0's length, now wrong by 4
    path.write_bytes(bytes(data))
    assert [r.idx for r in read_segment(path).records()] == [1, 2, 3, 4, 5, 6]


def test_torn_tail_at_every_byte_offset_of_the_last_record_is_cut(tmp_path: Path) -> None:
    rows = ODD_ROWS[:5]
    path = write_segment(tmp_path, rows)
    full = path.read_bytes()
    last = record_sizes(rows)[-1]
    last_start = len(full) - last
    torn = tmp_path / segment_name(RUN_A, 0, sealed=False)
    path.unlink()
    for cut in range(last_start, len(full)):
        torn.write_bytes(full[:cut])
        data = read_segment(torn)
        assert [r.idx for r in data.records()] == [0, 1, 2, 3], cut
        assert data.good_end == last_start
        assert data.tail_bytes == cut - last_start
    torn.write_bytes(full)
    assert len(read_segment(torn)) == 5


def test_a_torn_header_is_refused(tmp_path: Path) -> None:
    header = encode_header(RUN_A, 7)
    assert decode_header(header).segment == 7
    for cut in range(len(header)):
        with pytest.raises(SegmentFormatError):
            decode_header(header[:cut])
    with pytest.raises(SegmentFormatError, match="magic"):
        decode_header(b"NOTASEGM" + header[8:])
    newer = bytearray(header)
    newer[8] = 4
    with pytest.raises(SegmentFormatError, match="version 4"):
        decode_header(bytes(newer))


def as_old_segment(path: Path, version: int) -> None:
    """Give a segment written with no opcode bit or feed bits set the header of an older
    version: its records are then exactly what that version wrote."""
    data = path.read_bytes()
    old_header = encode_header(RUN_A, 0, version=version)
    assert len(old_header) == decode_header(data).size
    path.write_bytes(old_header + data[len(old_header) :])


def test_a_version_1_segment_reads_with_its_opcodes_and_feeds_unknown(tmp_path: Path) -> None:
    # Version 1 (before the opcode bit) is what a journal left by an older recorder holds.
    path = write_segment(tmp_path, [(*row[:10], False, 0) for row in ODD_ROWS])
    as_old_segment(path, 1)
    records = read_segment(path).records()
    assert records == [CaptureRecord(RUN_A, i, *row[:10]) for i, row in enumerate(ODD_ROWS)]


def test_a_version_2_segment_reads_with_its_opcodes_and_its_feeds_unknown(tmp_path: Path) -> None:
    # Version 2 (the opcode bit, no feed bits): a journal left by the recorder before feeds.
    path = write_segment(tmp_path, [(*row[:11], 0) for row in ODD_ROWS])
    as_old_segment(path, 2)
    data = read_segment(path)
    assert data.header.version == 2
    assert data.records() == [
        CaptureRecord(RUN_A, i, *row[:10], opcode(row), None) for i, row in enumerate(ODD_ROWS)
    ]
    table = segment_table(data)  # what the publisher writes of it: a null feed column
    assert table.column("feed").null_count == len(ODD_ROWS)
    assert table.column("opcode").to_pylist() == [opcode(row) for row in ODD_ROWS]


def test_feed_bits_in_a_version_2_record_make_it_invalid(tmp_path: Path) -> None:
    # Version 2 knew flags up to bit 3: a record with a feed bit set is not one it wrote.
    path = write_segment(
        tmp_path, [(*row[:11], 1 if i == 2 else 0) for i, row in enumerate(ODD_ROWS)]
    )
    as_old_segment(path, 2)
    data = read_segment(path)
    assert [r.idx for r in data.records()] == [0, 1, 3, 4, 5, 6]
    assert data.skipped_bytes == record_sizes(ODD_ROWS)[2]


@pytest.mark.parametrize("feed", [-1, 8, 16, 255])
def test_a_feed_out_of_range_is_refused_before_it_takes_an_idx(tmp_path: Path, feed: int) -> None:
    with JournalWriter(tmp_path, RUN_A) as writer:
        with pytest.raises(ValueError, match=r"feed must be 0\.\.7"):
            writer.append(1, 1, 1, "in", "trade", "trade", 1, 1, "KX-A", b"{}", feed=feed)
        assert writer.append(1, 2, 2, "in", "trade", "trade", 1, 2, "KX-A", b"{}", feed=7) == 0


def test_segment_names_parse_and_strays_are_not_segments() -> None:
    assert parse_segment_name(segment_name(RUN_A, 3, sealed=False)) == parse_segment_name(
        f"{RUN_A}-00000003.open"
    )
    sealed = parse_segment_name(segment_name(RUN_A, 3, sealed=True))
    assert sealed is not None
    assert (sealed.sealed, sealed.limit) == (True, None)
    cut = parse_segment_name(segment_name(RUN_A, 3, sealed=True, limit=4096))
    assert cut is not None
    assert cut.limit == 4096
    for stray in ("LOCK", f"{RUN_A}-3.seg", f"{RUN_A}-00000003.seg.corrupt", "x.open"):
        assert parse_segment_name(stray) is None


def test_a_limit_in_the_name_hides_bytes_written_after_it(tmp_path: Path) -> None:
    path = write_segment(tmp_path, ODD_ROWS[:3])
    keep = len(path.read_bytes()) - record_sizes(ODD_ROWS[:3])[-1]
    limited = path.with_name(segment_name(RUN_A, 0, sealed=True, limit=keep))
    path.rename(limited)
    data = read_segment(limited)
    assert [r.idx for r in data.records()] == [0, 1]
    assert data.tail_bytes == 0
