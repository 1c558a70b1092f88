"""The journal segment format: file names, header, and length + CRC framed records.

This module owns the bytes of a segment and nothing else: how a record is encoded,
how a segment is read back (cutting a torn tail, skipping a corrupt record), and how
segment files are named. It knows nothing of threads, fsync or Parquet.

Segment file (all integers little-endian)::

    header  := magic "KTJOURNL" | version u16 (=3) | reserved u16 | segment u32
               | run_id_len u16 | run_id (ASCII) | crc32 u32 (of the header bytes before it)
    record  := body_len u32 | crc32(body) u32 | body
    body    := idx i64 | recv_ns i64 | mono_ns i64 | seq i64 | conn i32 | sid i32
               | flags u8 | dir u8 | channel_len u8 | reserved u8 | type_len u16 | ticker_len u16
               | channel | type | market_ticker (UTF-8) | raw (the rest of the body, bytes exact)

    flags: bit 0 sid present, bit 1 seq present, bit 2 market_ticker present,
           bit 3 the message came (or went) as a binary WebSocket message (else text),
           bits 4-6 the feed (0-7) of a redundant capture; bit 7 is 0
    dir:   0 in, 1 out, 2 event

Older versions are read too: version 2 (before bits 4-6) and version 1 (before bit 3
too). Their records' feed is unknown (None, as in Parquet files written before the
`feed` column); a version 1 segment's messages' opcode is unknown (None) too.

A record is valid when its length fits, its CRC matches, its fields are in range and
its idx is above the previous record's. Reading stops being trusting at the first
invalid record: it looks for the next valid record after it (a flipped byte costs one
record, not the rest of the segment) and calls whatever follows the last valid record
the torn tail.

Names in the journal directory::

    <run_id>-<segment:08d>.open           being written
    <run_id>-<segment:08d>.seg            sealed
    <run_id>-<segment:08d>.L<limit>.seg   sealed after a failed fsync: only the first
                                          <limit> bytes were ever confirmed on disk
    LOCK                                  the writer's lock file
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from recorder.errors import SegmentFormatError
from schemas.record import OPCODE_BINARY, OPCODE_TEXT, CaptureRecord

__all__ = [
    "BODY_FIXED",
    "DIR_CODES",
    "DIR_NAMES",
    "FORMAT_VERSION",
    "FRAME",
    "MAGIC",
    "MAX_FEEDS",
    "NUMBERS",
    "NUMERIC",
    "READABLE_VERSIONS",
    "RecordKey",
    "SegmentData",
    "SegmentHeader",
    "SegmentName",
    "StringTable",
    "decode_header",
    "encode_header",
    "parse_segment_name",
    "read_segment",
    "record_flags",
    "segment_name",
]

MAGIC: Final = b"KTJOURNL"
FORMAT_VERSION: Final = 3
#: Versions this code reads: 1 has no opcode bit, 1 and 2 no feed bits.
READABLE_VERSIONS: Final = frozenset({1, 2, 3})
DIR_CODES: Final[dict[str, int]] = {"in": 0, "out": 1, "event": 2}
DIR_NAMES: Final[tuple[str, ...]] = ("in", "out", "event")

_HEAD = struct.Struct("<8sHHIH")
_CRC = struct.Struct("<I")
FRAME: Final = struct.Struct("<II")
BODY: Final = struct.Struct("<qqqqiiBBBxHH")
BODY_FIXED: Final = BODY.size  # 48
_MIN_RECORD: Final = FRAME.size + BODY_FIXED
# The frame header and the body fields the reader checks, in one unpack (numbers skipped).
_HEAD_FIELDS: Final = struct.Struct("<IIq24x8xBBBxHH")
_MAX_STR: Final = 0xFFFF
_MAX_CHANNEL: Final = 0xFF

_SID_SET, _SEQ_SET, _TICKER_SET, _BINARY_SET = 1, 2, 4, 8
_FEED_SHIFT: Final = 4
#: The most feeds a capture holds (feeds 0..7: flags bits 4-6).
MAX_FEEDS: Final = 8
_MAX_FLAGS: Final = 0x7F
#: The highest valid flags byte of each version's records (reading checks it).
_MAX_FLAGS_OF: Final[dict[int, int]] = {1: 15, 2: 15, 3: _MAX_FLAGS}


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    run_id: str
    segment: int
    version: int
    size: int  # header bytes; records start here


def encode_header(run_id: str, segment: int, version: int = FORMAT_VERSION) -> bytes:
    """The header of a new segment (`version` other than the current: tests of old ones)."""
    rid = run_id.encode("ascii")
    head = _HEAD.pack(MAGIC, version, 0, segment, len(rid)) + rid
    return head + _CRC.pack(zlib.crc32(head))


def decode_header(buf: bytes | memoryview) -> SegmentHeader:
    """Decode a segment header.

    Raises:
        SegmentFormatError: not a segment, a torn or corrupt header, or a newer version.
    """
    if len(buf) < _HEAD.size:
        raise SegmentFormatError(f"segment header is torn: {len(buf)} bytes")
    magic, version, _, segment, rid_len = _HEAD.unpack_from(buf, 0)
    if magic != MAGIC:
        raise SegmentFormatError(f"not a journal segment: magic {bytes(magic)!r}")
    if version not in READABLE_VERSIONS:
        raise SegmentFormatError(
            f"segment format version {version}; this code reads {sorted(READABLE_VERSIONS)}"
        )
    end = _HEAD.size + rid_len
    if len(buf) < end + _CRC.size:
        raise SegmentFormatError("segment header is torn")
    (crc,) = _CRC.unpack_from(buf, end)
    if zlib.crc32(buf[:end]) != crc:
        raise SegmentFormatError("segment header CRC mismatch")
    run_id = bytes(buf[_HEAD.size : end]).decode("ascii")
    return SegmentHeader(run_id, segment, version, end + _CRC.size)


def _utf8(text: str, limit: int) -> bytes:
    # Derived columns only; `raw` keeps the exact bytes, so a lone surrogate or an
    # absurdly long type string is replaced or clipped here rather than failing capture.
    data = text.encode("utf-8", "replace")
    if len(data) > limit:
        data = data[:limit].decode("utf-8", "ignore").encode("utf-8")
    return data


class StringTable:
    """Encodes (dir, channel, type, market_ticker) once per distinct combination.

    The body bytes after `flags` depend only on these, and a capture has few distinct
    combinations, so the writer looks the bytes up instead of building them per frame.
    The table is cleared when it grows past `max_entries` (types and tickers come from
    the wire).
    """

    __slots__ = ("_max", "cache")

    def __init__(self, max_entries: int = 200_000) -> None:
        #: (dir, channel, type, market_ticker) -> bytes; the writer reads it directly.
        self.cache: dict[tuple[str, str, str, str | None], bytes] = {}
        self._max = max_entries

    def tail(self, dir_: str, channel: str, type_: str, ticker: str | None) -> bytes:
        """The body bytes from `dir` to the end of `market_ticker`."""
        key = (dir_, channel, type_, ticker)
        blob = self.cache.get(key)
        if blob is None:
            ch = _utf8(channel, _MAX_CHANNEL)
            ty = _utf8(type_, _MAX_STR)
            tk = b"" if ticker is None else _utf8(ticker, _MAX_STR)
            blob = struct.pack("<BBxHH", DIR_CODES[dir_], len(ch), len(ty), len(tk)) + ch + ty + tk
            if len(self.cache) >= self._max:
                self.cache.clear()
            self.cache[key] = blob
        return blob


#: The body's numeric fields and flags, in order: idx recv_ns mono_ns seq conn sid flags.
NUMERIC: Final = struct.Struct("<qqqqiiB")


def record_flags(
    sid: int | None, seq: int | None, ticker: str | None, binary: bool = False, feed: int = 0
) -> int:
    """The flags byte of a record (see the module docstring).

    Raises:
        ValueError: `feed` is not 0..7.
    """
    if not 0 <= feed < MAX_FEEDS:
        raise ValueError(f"feed must be 0..{MAX_FEEDS - 1}, got {feed!r}")
    return (
        (sid is not None) | (seq is not None) << 1 | (ticker is not None) << 2 | binary << 3
        | feed << _FEED_SHIFT
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RecordKey:
    """The low-cardinality part of a record (everything but the numbers and `raw`)."""

    flags: int
    dir: str
    channel: str
    type: str
    market_ticker: str | None

    @property
    def has_sid(self) -> bool:
        return bool(self.flags & _SID_SET)

    @property
    def has_seq(self) -> bool:
        return bool(self.flags & _SEQ_SET)

    def opcode(self, version: int) -> int | None:
        """The WebSocket opcode of a message record (None: an event, or a version 1
        segment, which did not record it)."""
        if self.dir == "event" or version < 2:
            return None
        return OPCODE_BINARY if self.flags & _BINARY_SET else OPCODE_TEXT

    def feed(self, version: int) -> int | None:
        """The feed of the record (None: a version 1 or 2 segment, which did not record it)."""
        if version < 3:
            return None
        return self.flags >> _FEED_SHIFT


#: The numeric fields of a body, as `SegmentData.numbers` keeps them: idx recv_ns mono_ns seq
#: (int64) then conn sid (int32); 40 bytes a record.
NUMBERS: Final = struct.Struct("<qqqqii")


@dataclass(slots=True)
class SegmentData:
    """The records of one segment, column-wise, and what reading it found.

    `numbers` holds each record's numeric fields packed as in the body (`NUMBERS`, 40
    bytes a record), so the publisher turns them into Arrow columns without a Python
    object per value. `key` holds, per record, an index into `keys` (dir, channel, type,
    ticker and null flags). Numeric fields are 0 where the value is null.
    """

    header: SegmentHeader
    path: Path
    numbers: bytearray = field(default_factory=bytearray)
    key: list[int] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    keys: list[RecordKey] = field(default_factory=list)
    good_end: int = 0  # offset just past the last valid record
    end: int = 0  # where reading stopped: file size, or the limit in the name
    skipped_bytes: int = 0  # invalid bytes between valid records (corruption)
    excluded_records: int = 0  # valid records at or above `idx_below`
    first_idx: int | None = None  # of the first valid record, excluded or not

    def __len__(self) -> int:
        return len(self.key)

    @property
    def tail_bytes(self) -> int:
        """Bytes after the last valid record: a torn tail."""
        return self.end - self.good_end

    def idx_at(self, i: int) -> int:
        return int.from_bytes(self.numbers[i * 40 : i * 40 + 8], "little", signed=True)

    def truncate(self, count: int) -> None:
        """Keep only the first `count` records."""
        del self.numbers[count * 40 :]
        del self.key[count:]
        del self.raw[count:]

    def records(self) -> list[CaptureRecord]:
        """The records as `CaptureRecord`s, in idx order (for tests and tools, not hot paths)."""
        out = []
        run_id, version = self.header.run_id, self.header.version
        for i, (idx, recv, mono, seq, conn, sid) in enumerate(NUMBERS.iter_unpack(self.numbers)):
            k = self.keys[self.key[i]]
            out.append(
                CaptureRecord(
                    run_id,
                    idx,
                    conn,
                    recv,
                    mono,
                    k.dir,
                    k.channel,
                    k.type,
                    sid if k.has_sid else None,
                    seq if k.has_seq else None,
                    k.market_ticker,
                    self.raw[i],
                    k.opcode(version),
                    k.feed(version),
                )
            )
        return out


def _key_of(blob: bytes) -> RecordKey:
    flags, dir_, chl, tyl, tkl = struct.unpack_from("<BBBxHH", blob, 0)
    s = 8
    ch = blob[s : s + chl].decode("utf-8", "replace")
    ty = blob[s + chl : s + chl + tyl].decode("utf-8", "replace")
    tk = blob[s + chl + tyl : s + chl + tyl + tkl].decode("utf-8", "replace")
    return RecordKey(flags, DIR_NAMES[dir_], ch, ty, tk if flags & _TICKER_SET else None)


def _valid_at(buf: bytes, pos: int, end: int, last_idx: int, max_flags: int) -> int:
    """Length of a valid record at pos, or 0. Cheap checks first: this runs per byte
    when resynchronising after corruption."""
    if end - pos < _MIN_RECORD:
        return 0
    body_len, crc = FRAME.unpack_from(buf, pos)
    if body_len < BODY_FIXED or body_len > end - pos - 8:
        return 0
    idx, _, _, _, _, _, flags, dir_, chl, tyl, tkl = BODY.unpack_from(buf, pos + 8)
    if idx <= last_idx or flags > max_flags or dir_ > 2 or BODY_FIXED + chl + tyl + tkl > body_len:
        return 0
    if zlib.crc32(memoryview(buf)[pos + 8 : pos + 8 + body_len]) != crc:
        return 0
    return 8 + int(body_len)


def read_segment(path: Path, *, idx_below: int | None = None) -> SegmentData:
    """Read every valid record of a segment (open or sealed).

    Args:
        path: the segment; a `.L<limit>.seg` name limits reading to `limit` bytes.
        idx_below: leave out records with idx >= this (they were re-written in the
            run's next segment after a failed fsync; see `recorder.storage.recovery`).

    Raises:
        SegmentFormatError: the header is missing, torn or of another format.
        OSError: the file cannot be read.
    """
    buf = path.read_bytes()
    name = parse_segment_name(path.name)
    end = len(buf) if name is None or name.limit is None else min(len(buf), name.limit)
    header = decode_header(memoryview(buf)[:end])
    data = SegmentData(header, path, good_end=header.size, end=end)
    _scan(buf, header.size, end, idx_below, data)
    return data


def _scan(buf: bytes, pos: int, end: int, idx_below: int | None, out: SegmentData) -> None:
    mv = memoryview(buf)
    head_unpack, crc32 = _HEAD_FIELDS.unpack_from, zlib.crc32
    key_index: dict[bytes, int] = {}
    numbers, key_l, raw_l = out.numbers, out.key, out.raw
    max_flags = _MAX_FLAGS_OF[out.header.version]
    below = idx_below if idx_below is not None else 1 << 63
    last_idx = -(1 << 63)
    good_end = pos
    while pos < end:
        # The fast path: a well-formed record. Anything odd falls to the slow path below.
        if end - pos >= _MIN_RECORD:
            body_len, crc, idx, flags, dir_, chl, tyl, tkl = head_unpack(buf, pos)
            body_end = pos + 8 + body_len
            raw_start = pos + 56 + chl + tyl + tkl
            if (
                body_len >= BODY_FIXED
                and body_end <= end
                and (
                    idx > last_idx
                    and raw_start <= body_end
                    and flags <= max_flags
                    and dir_ <= 2
                    and crc32(mv[pos + 8 : body_end]) == crc
                )
            ):
                if out.first_idx is None:
                    out.first_idx = idx
                last_idx = idx
                if idx >= below:
                    out.excluded_records += 1
                else:
                    blob = buf[pos + 48 : raw_start]  # flags .. ticker: the record's key
                    k = key_index.get(blob)
                    if k is None:
                        k = key_index[blob] = len(out.keys)
                        out.keys.append(_key_of(blob))
                    numbers += mv[pos + 8 : pos + 48]
                    key_l.append(k)
                    raw_l.append(buf[raw_start:body_end])
                pos = good_end = body_end
                continue
        nxt = pos + 1
        while nxt < end and not _valid_at(buf, nxt, end, last_idx, max_flags):
            nxt += 1
        if nxt >= end:
            break  # nothing valid follows: a torn tail
        out.skipped_bytes += nxt - pos
        pos = nxt
    out.good_end = good_end


@dataclass(frozen=True, slots=True)
class SegmentName:
    run_id: str
    segment: int
    sealed: bool
    limit: int | None = None

    @property
    def sort_key(self) -> tuple[str, int]:
        return (self.run_id, self.segment)


_NAME = re.compile(
    r"^(?P<run>[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8})-(?P<seg>[0-9]{8})"
    r"(?:\.(?P<open>open)|(?:\.L(?P<limit>[0-9]+))?\.seg)$"
)


def segment_name(run_id: str, segment: int, *, sealed: bool, limit: int | None = None) -> str:
    base = f"{run_id}-{segment:08d}"
    if not sealed:
        return f"{base}.open"
    return f"{base}.L{limit}.seg" if limit is not None else f"{base}.seg"


def parse_segment_name(name: str) -> SegmentName | None:
    """Parse a segment file name; None for any other file (the lock file, strays)."""
    m = _NAME.match(name)
    if m is None:
        return None
    limit = m.group("limit")
    return SegmentName(
        m.group("run"),
        int(m.group("seg")),
        sealed=m.group("open") is None,
        limit=int(limit) if limit is not None else None,
    )
