"""The capture record: one row per thing a recorder saw or did.

This module owns the record's columns and their meaning
(docs/architecture.md section 3), the names of the connection lifecycle events
(their fields are `schemas.events`), the partition layout, and the derivation of
the routing columns from a raw frame. It is pure Python; the Arrow schema of the
same columns is in `schemas.arrow`, so the engine can use these names without
importing pyarrow.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from schemas.channels import ALL_CHANNELS, WIRE_CHANNELS, Channel, channel_of_type
from schemas.envelope import ack_channel_sid, decode_envelope
from schemas.errors import EnvelopeError, PartitionError

__all__ = [
    "COLUMNS",
    "JOURNAL_DIR",
    "MALFORMED_TYPE",
    "OPCODE_BINARY",
    "OPCODE_TEXT",
    "ROOT_ENTRIES",
    "STATUS_FILE",
    "CaptureFileName",
    "CaptureRecord",
    "ColumnDeriver",
    "Derived",
    "Dir",
    "Event",
    "compacted_file_suffix",
    "live_files",
    "new_run_id",
    "parse_file_name",
    "partition_dir",
    "partition_file",
    "split_live_files",
    "utc_date",
    "validate_run_id",
]

#: Column names, in schema order.
COLUMNS: Final[tuple[str, ...]] = (
    "run_id",
    "idx",
    "conn",
    "recv_ns",
    "mono_ns",
    "dir",
    "channel",
    "type",
    "sid",
    "seq",
    "market_ticker",
    "raw",
    "opcode",
    "feed",
)

#: WebSocket opcodes (RFC 6455) as the `opcode` column holds them.
OPCODE_TEXT: Final = 1
OPCODE_BINARY: Final = 2

#: The `type` given to an inbound frame that is not a JSON object with a `type`.
MALFORMED_TYPE: Final = "_malformed"


class Dir(StrEnum):
    """Direction of a record."""

    IN = "in"  # a frame received from the server, bytes exact
    OUT = "out"  # a command we sent, bytes exact
    EVENT = "event"  # something that happened to the connection or the recorder


class Event(StrEnum):
    """Names of `event` records (the `type` column of the `_session` partition).

    Each event's `raw` is a small JSON object: the fields of its class in
    `schemas.events`, with the name under `type`.
    """

    RUN_START = "run_start"  # a recorder process started; config and versions
    RUN_STOP = "run_stop"  # it stopped cleanly
    ATTEMPT = "attempt"  # a connection attempt begins
    OPEN = "open"  # the handshake succeeded; `conn` is the new connection
    CLOSE = "close"  # a connection ended, with codes and the disconnect reason
    ERROR = "error"  # a failed attempt or a transport error
    RECONNECT_WAIT = "reconnect_wait"  # the reconnect loop sleeps before the next attempt
    STATE = "state"  # the session's connection state changed
    SWITCH = "switch"  # make-before-break: delivery moved from one connection to another
    CAPTURE_GAP = "capture_gap"  # frames the recorder could not keep (disk full): count
    FRAME_REJECTED = "frame_rejected"  # an inbound frame did not parse; stored under _unknown
    ARBITRATE = "arbitrate"  # redundant feeds: a market's book moved from one feed to another


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One row of a capture, as Python values (the Arrow schema is `schemas.arrow`)."""

    run_id: str
    idx: int
    conn: int
    recv_ns: int
    mono_ns: int
    dir: str
    channel: str
    type: str
    sid: int | None
    seq: int | None
    market_ticker: str | None
    raw: bytes
    #: The WebSocket opcode the message came (or went) as: 1 text, 2 binary; None for
    #: events, and for messages of captures made before the opcode was recorded.
    opcode: int | None = None
    #: Which feed of a redundant capture the record belongs to (0..7; see
    #: docs/architecture.md section 3); None in captures made before feeds existed.
    #: None and 0 both mean the first (or only) feed.
    feed: int | None = None


@dataclass(frozen=True, slots=True)
class Derived:
    """The routing columns derived from a frame: channel, type, sid, seq, market_ticker.

    `error` is set (and channel is `_unknown`) when an inbound frame did not decode.
    """

    channel: str
    type: str
    sid: int | None = None
    seq: int | None = None
    market_ticker: str | None = None
    error: str | None = None


class ColumnDeriver:
    """Derives the routing columns of each record, in arrival order.

    The channel of a data frame comes from its type; where the type is ambiguous
    (`event_lifecycle` rides two channels) or unknown, from the `subscribed` ack
    of its sid on the same connection. Feed it every record of a run in `idx`
    order; it keeps only the sid -> channel map of each open connection.
    """

    __slots__ = ("_sid_channel",)

    def __init__(self) -> None:
        self._sid_channel: dict[tuple[int, int], str] = {}

    def derive(self, dir_: str, raw: bytes, conn: int) -> Derived:
        if dir_ == Dir.EVENT:
            return self._event(raw, conn)
        try:
            env = decode_envelope(raw)
        except EnvelopeError as exc:
            if dir_ == Dir.OUT:
                return Derived(Channel.CONTROL, MALFORMED_TYPE, error=str(exc))
            return Derived(Channel.UNKNOWN, MALFORMED_TYPE, error=str(exc))
        if env.is_command:
            return Derived(Channel.CONTROL, env.type, env.sid, env.seq, None)
        if env.type == "subscribed":
            ack = ack_channel_sid(raw)
            if ack is not None:
                self.bind(conn, ack[1], ack[0])
                return Derived(Channel.CONTROL, env.type, ack[1], None, None)
        channel = self.channel_for(conn, env.type, env.sid)
        return Derived(channel, env.type, env.sid, env.seq, env.market_ticker)

    def bind(self, conn: int, sid: int, channel: str) -> None:
        """A `subscribed` ack: frames on `sid` of this connection belong to `channel`."""
        # Partition values come from the fixed channel list only: an ack naming
        # anything else (a path, a channel we do not know) must not become a
        # directory, so its sid's frames of unknown type stay under _unknown.
        if channel in WIRE_CHANNELS:
            self._sid_channel[(conn, sid)] = channel
        else:
            self._sid_channel.pop((conn, sid), None)

    def channel_for(self, conn: int, type_: str, sid: int | None) -> str:
        """The channel of a server frame of `type_` on `sid` (control types: `_control`)."""
        channel = channel_of_type(type_)
        if (channel == Channel.UNKNOWN or type_ == "event_lifecycle") and sid is not None:
            channel = self._sid_channel.get((conn, sid), channel)
        return channel

    def _event(self, raw: bytes, conn: int) -> Derived:
        try:
            type_ = decode_envelope(raw).type
        except EnvelopeError:
            type_ = MALFORMED_TYPE
        if type_ in (Event.CLOSE, Event.OPEN):
            # A new or ended connection starts with no subscriptions.
            for key in [k for k in self._sid_channel if k[0] == conn]:
                del self._sid_channel[key]
        return Derived(Channel.SESSION, type_)


_RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")


def new_run_id(recv_ns: int, entropy: bytes) -> str:
    """Build a run id that sorts by start time: `20261121T081600Z-1a2b3c4d`.

    The caller supplies the start time and 4+ random bytes (this module reads no
    clock and no random source).
    """
    if len(entropy) < 4:
        raise ValueError("run id entropy needs at least 4 bytes")
    start = dt.datetime.fromtimestamp(recv_ns / 1e9, tz=dt.UTC)
    return f"{start:%Y%m%dT%H%M%SZ}-{entropy[:4].hex()}"


def validate_run_id(run_id: str) -> str:
    """Return run_id if it has the form `new_run_id` makes, else raise PartitionError."""
    if not _RUN_ID.fullmatch(run_id):
        raise PartitionError(f"invalid run id {run_id!r}: expected like 20261121T081600Z-1a2b3c4d")
    return run_id


def utc_date(recv_ns: int) -> str:
    """The UTC calendar date of a wall-clock nanosecond timestamp, as YYYY-MM-DD."""
    return dt.datetime.fromtimestamp(recv_ns // 1_000_000_000, tz=dt.UTC).strftime("%Y-%m-%d")


#: The recorder's journal directory and status file under a local root, by default. Their
#: leading "_" makes every Hive reader skip them (pyarrow datasets, Spark and Dask skip
#: "_" and "." names; DuckDB and Polars read `**/*.parquet`), so the root opens as-is.
JOURNAL_DIR: Final = "_journal"
STATUS_FILE: Final = "_status.json"

#: Entries a capture root may hold besides its partitions: the recorder's journal and
#: status file, under their names of today and of older layouts (`journal/`,
#: `status.json`, and what the repository's `data/` once held). Readers neither read
#: nor report them, nor any other root entry whose name starts with "_" or ".".
ROOT_ENTRIES: Final[frozenset[str]] = frozenset(
    {JOURNAL_DIR, STATUS_FILE, "journal", "status.json", "README.md", "sample", "make_sample.py"}
)

_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def partition_dir(channel: str, date: str) -> str:
    """The relative directory of a partition: `channel=<channel>/date=<YYYY-MM-DD>`.

    Partition values come only from the fixed channel list and a UTC date, never
    from a ticker or any other wire content, so a path can never escape the root.

    Raises:
        PartitionError: the channel is not in `ALL_CHANNELS` or the date is not a
            real YYYY-MM-DD date.
    """
    if channel not in ALL_CHANNELS:
        raise PartitionError(f"unknown channel {channel!r}: not in the fixed channel list")
    if not _DATE.fullmatch(date):
        raise PartitionError(f"invalid partition date {date!r}: expected YYYY-MM-DD")
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        raise PartitionError(f"invalid partition date {date!r}: not a calendar date") from None
    return f"channel={channel}/date={date}"


def partition_file(channel: str, date: str, run_id: str, segment: int, suffix: str = "") -> str:
    """The relative path of a published file: `<partition_dir>/<run_id>-<segment>.parquet`.

    The name derives only from the run and the segment, so republishing a segment
    after a crash replaces its file instead of adding a second copy. `suffix`
    distinguishes derived files (for example compaction outputs) and must be short
    lowercase alphanumerics.
    """
    validate_run_id(run_id)
    if segment < 0:
        raise PartitionError(f"invalid segment number {segment}")
    if suffix and not re.fullmatch(r"[a-z0-9]{1,16}", suffix):
        raise PartitionError(f"invalid file suffix {suffix!r}")
    tail = f"-{suffix}" if suffix else ""
    return f"{partition_dir(channel, date)}/{run_id}-{segment:08d}{tail}.parquet"


# The visibility rule of a partition's files ---------------------------------------------
#
# A partition holds `<run_id>-<lo:08d>.parquet` (the rows of journal segment `lo`) and,
# after compaction, `<run_id>-<lo:08d>-c<hi:08d>.parquet` (every row of segments lo..hi
# of the run in this partition). A file is superseded when a compacted file of the same
# run covers its whole segment range; readers read only live files. Names starting with
# "." are temporary, and names outside the pattern are not capture files: neither is
# ever live. The writer (recorder) and every reader (replay, SQL) apply this one rule.

_FILE_NAME = re.compile(
    r"^(?P<run>[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8})-(?P<lo>[0-9]{8,})(?:-c(?P<hi>[0-9]{8,}))?\.parquet$"
)


@dataclass(frozen=True, slots=True)
class CaptureFileName:
    """What a published file's name says: its run and the journal segments it holds."""

    name: str
    run_id: str
    lo: int
    hi: int
    compacted: bool

    def covers(self, other: CaptureFileName) -> bool:
        """True when this compacted file holds every row of `other`."""
        return (
            self.compacted
            and self.name != other.name
            and self.run_id == other.run_id
            and self.lo <= other.lo
            and other.hi <= self.hi
        )


def parse_file_name(name: str) -> CaptureFileName | None:
    """Parse a published file name; None if it does not follow the pattern."""
    m = _FILE_NAME.match(name)
    if m is None:
        return None
    lo, hi = int(m["lo"]), m["hi"]
    return CaptureFileName(name, m["run"], lo, lo if hi is None else int(hi), hi is not None)


def compacted_file_suffix(hi: int) -> str:
    """The `suffix` of `partition_file` for a compacted file ending at segment `hi`."""
    return f"c{hi:08d}"


def split_live_files(names: list[str]) -> tuple[list[str], dict[str, CaptureFileName]]:
    """(live names, superseded name -> the compacted file covering it) of one partition."""
    parsed: dict[str, list[CaptureFileName]] = {}
    live: list[str] = []
    for name in names:
        if name.startswith(".") or not name.endswith(".parquet"):
            continue
        f = parse_file_name(name)
        if f is not None:
            parsed.setdefault(f.run_id, []).append(f)
    superseded: dict[str, CaptureFileName] = {}
    for files in parsed.values():
        covering = [f for f in files if f.compacted]
        for f in files:
            cover = next((c for c in covering if c.covers(f)), None)
            if cover is None:
                live.append(f.name)
            else:
                superseded[f.name] = cover
    return sorted(live), superseded


def live_files(names: list[str]) -> list[str]:
    """The names a reader should read, of the file names listed in one partition."""
    return split_live_files(names)[0]
