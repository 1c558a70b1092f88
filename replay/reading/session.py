"""ReplaySession: the Session API of `stream` over a recorded capture.

A consumer written for `LiveSession` runs unchanged on a capture: the same
`subscribe_*` calls, `orderbook()`, `@on` callbacks, `on_state_change` and
`run_forever`. `ReplaySource` feeds the engine what the capture recorded, in the
order it happened: frames received (`dir=in`), commands sent (`dir=out`) and
connection events (`dir=event` in `_session`). The `_control` and `_session`
partitions are always read, so recorded acks and connection events drive the
engine, and recorded reconnects fire the same state changes and resets as live.
Consumers attach to the recorded subscriptions of their channel, filtered by
ticker (nothing is subscribed anew: the tape already holds what was).

Seek: with `start`, each run is restored from its latest connection checkpoint
before the start (the `_checkpoint` partition; each feed's, in a capture of redundant
feeds) and fast-forwarded silently from there, so books at the start are what they
were live at that moment.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import gc
import json
from collections.abc import Iterable
from itertools import islice, repeat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from replay.errors import NotInCapture
from replay.reading.capture import (
    Capture,
    Resume,
    bool_array,
    int64_view,
    merge_key,
    read_filter,
)
from replay.reading.pacing import Pacer
from schemas.channels import Channel
from schemas.events import (
    Attempt,
    AttemptFailed,
    Closed,
    EventError,
    Opened,
    RunStop,
    event_from_bytes,
)
from schemas.record import OPCODE_BINARY
from schemas.storage import StorageOptions
from stream import BinaryMessage, EngineConfig, Overflow, Session, Source
from stream.arbitration import message_key
from stream.core import NS
from stream.engine import Engine

__all__ = [
    "CONN_STRIDE",
    "ReplaySession",
    "ReplaySource",
    "drive_event",
    "restore_checkpoint",
    "to_ns",
]

#: Connection numbers of the n-th run (runs sorted by id, from 0) are offset by
#: n * CONN_STRIDE in replay, so connections of concurrent runs never collide; the
#: first run's numbers are as recorded.
CONN_STRIDE = 1_000_000
#: Engine groups of the n-th run: (n + 1) * FEED_SLOTS + feed, one per feed of a
#: redundant capture (the `feed` column; null in older captures: one group per run).
FEED_SLOTS = 8
# Records fed between pumps: small chunks keep the GC calm (docs/performance.md section 4.2).
_PUMP_EVERY = 64
_SLICE_ROWS = 8192  # rows turned into Python values at a time (bounded memory)
_GC_GEN0 = 50_000  # gen0 threshold during an unpaced replay (the default is 700)


def to_ns(when: dt.datetime | str | int | float | None, field: str = "start") -> int | None:
    """A time given as a datetime, an ISO-8601 string, or ns/s since the epoch, in ns.

    Naive datetimes and strings are taken as UTC.

    Raises:
        ValueError: the value names no time (the message names the field).
    """
    if when is None:
        return None
    if isinstance(when, bool):
        raise ValueError(f"{field}: expected a time, got {when!r}")
    if isinstance(when, int | float):
        return int(when) if abs(when) > 1e14 else int(when * 1e9)  # ns, or seconds
    if isinstance(when, str):
        try:
            when = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{field}: {when!r} is not an ISO-8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1_000_000) * 1000


class ReplaySource(Source):
    """Feeds a `Session`'s engine from a capture, paced or as fast as consumers read."""

    owns_wire = False

    def __init__(
        self,
        capture: Capture,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        channels: Iterable[str] | None = None,
        markets: Iterable[str] | None = None,
        speed: float | None = None,
        snapshots: bool = False,
    ) -> None:
        self.capture = capture
        self.start_ns = start_ns
        self.snapshots = snapshots
        self.end_ns = end_ns
        self.channels = None if channels is None else frozenset(channels)
        self.markets = None if markets is None else frozenset(markets)
        self.pacer = Pacer(speed)
        self._recv_ns = 0
        self._mono_ns = 0
        self._stopped = False
        self._offsets: dict[str, int] = {}
        self.records = 0  # records fed to the engine
        if self.channels is not None:
            for channel in self.channels:
                self._check_channel(channel)

    # ------------------------------------------------------------------ Source

    def now(self) -> tuple[int, int]:
        return self._recv_ns, self._mono_ns

    async def send(self, conn: int, raw: bytes) -> None:
        """Nothing is sent in replay: the recorded commands are fed as they were sent."""

    async def stop(self) -> None:
        self._stopped = True

    def validate_subscription(self, channel: str, tickers: frozenset[str] | None) -> None:
        self._check_channel(channel)
        if self.channels is not None and channel not in self.channels:
            raise NotInCapture(
                f"channel {channel!r} is not among the channels this replay reads: "
                f"{sorted(self.channels)}"
            )
        if tickers:
            held = self.capture.markets(channel)
            missing = sorted(tickers - held)
            if missing:
                sample = ", ".join(sorted(held)[:20]) + (" ..." if len(held) > 20 else "")
                raise NotInCapture(
                    f"the capture holds no {channel} data for {missing}; it holds "
                    f"{len(held)} markets on {channel}: {sample}"
                )

    def narrow_tickers(self, channel: str, tickers: frozenset[str] | None) -> frozenset[str] | None:
        """A replay limited to some markets delivers only those (it reads every market
        of a sequenced channel: `replay.reading.capture.read_filter`)."""
        if self.markets is None:
            return tickers
        return self.markets if tickers is None else tickers & self.markets

    def _check_channel(self, channel: str) -> None:
        held = self.capture.data_channels
        if channel not in held:
            raise NotInCapture(
                f"the capture holds no {channel!r} data; it holds {held or 'nothing'}"
            )

    # ------------------------------------------------------------------ the feed

    async def run(self, session: Session) -> None:
        await session.wait_for_demand()
        if self._stopped:
            return
        if self.pacer.speed is not None:
            await self._run(session)
            return
        # As fast as possible, the garbage collector's young-generation passes, not JSON
        # or Parquet, bound replay (docs/performance.md section 4.2): raise
        # the threshold for the replay's duration (never lower it), then restore it.
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], _GC_GEN0), *thresholds[1:])
        try:
            await self._run(session)
        finally:
            gc.set_threshold(*thresholds)

    async def _run(self, session: Session) -> None:
        engine = session.engine
        channels = self.channels
        if channels is None:
            channels = frozenset(c.channel for c in engine.consumers()) or frozenset(
                self.capture.data_channels
            )
        runs = sorted(self.capture.runs)
        self._offsets = {run: i * CONN_STRIDE for i, run in enumerate(runs)}
        groups = {run: (i + 1) * FEED_SLOTS for i, run in enumerate(runs)}
        from_idx: dict[str, Resume] = {}
        if self.start_ns is not None:
            runs = self._runs_alive_at(runs, self.start_ns)
            engine.mute()
            for run in runs:
                from_idx[run] = self._restore(engine, run, groups[run], self.start_ns)
        last_idx = {run: max(p.idx_hi for p in self.capture.runs[run].pieces) for run in runs}
        self._muted = self.start_ns is not None
        self._ended: dict[int, tuple[int, int]] = {}  # group -> when its run's records ended
        columns = ("idx", "conn", "recv_ns", "mono_ns", "dir", "raw", "opcode", "feed")
        markets = read_filter(channels, self.markets)
        for window in self.capture.read(channels, columns=columns, markets=markets,
                                        runs=runs, from_idx=from_idx):  # fmt: skip
            run = window.run_id
            group = groups[run]
            if self._ended and any(g != group for g in self._ended):
                # Another run goes on after these ended: only now does their end matter.
                for g in [g for g in self._ended if g != group]:
                    when = self._ended.pop(g)
                    for feed in range(FEED_SLOTS):  # every feed of the run ended with it
                        engine.group_ended(g + feed, *when)
            table, keys = window.table, window.keys
            for start in range(0, table.num_rows, _SLICE_ROWS):
                if self._stopped:
                    return
                if not await self._feed(session, run, group, last_idx[run],
                                        table.slice(start, _SLICE_ROWS),
                                        keys.slice(start, _SLICE_ROWS)):  # fmt: skip
                    return
        if self._muted:
            engine.unmute(snapshot_frames=self.snapshots)
        await session.pump()

    async def _feed(
        self, session: Session, run: str, group: int, last_idx: int, table: pa.Table,
        keys: pa.Array,
    ) -> bool:  # fmt: skip
        """Feed one slice of a window to the engine; False once the end time is reached."""
        engine = session.engine
        key_list = keys.to_pylist()
        n = len(key_list)
        if self.end_ns is not None and key_list[-1] >= self.end_ns:
            n = bisect.bisect_left(key_list, self.end_ns)
        if self._muted and self.start_ns is not None and key_list[-1] >= self.start_ns:
            cut = bisect.bisect_left(key_list, self.start_ns)
            if cut:
                await self._dispatch(session, run, group, table.slice(0, cut), key_list[:cut])
            self._muted = False
            engine.unmute(snapshot_frames=self.snapshots)
            await session.pump()
            table, key_list, n = table.slice(cut), key_list[cut:], n - cut
        if n > 0:
            await self._dispatch(session, run, group, table.slice(0, n), key_list[:n])
        idx_hi = table.column("idx")[-1].as_py() if table.num_rows else -1
        if idx_hi >= last_idx:
            self._ended[group] = (self._recv_ns, self._mono_ns)
        return n == len(key_list)

    async def _dispatch(
        self, session: Session, run: str, group: int, table: pa.Table, keys: list[int]
    ) -> None:
        """The hot loop: one engine input per record, a pump every few dozen records."""
        engine = session.engine
        receive = engine.frame_received
        offset = self._offsets[run]
        conns = table.column("conn").to_pylist()
        if offset:
            conns = [conn + offset for conn in conns]
        recv = table.column("recv_ns").to_pylist()
        mono = table.column("mono_ns").to_pylist()
        raws = table.column("raw").to_pylist()
        opcodes = table.column("opcode")
        if pc.max(opcodes).as_py() == OPCODE_BINARY:  # rare: Kalshi sends text
            for i, opcode in enumerate(opcodes.to_pylist()):
                if opcode == OPCODE_BINARY:
                    raws[i] = BinaryMessage(raws[i])
        dirs = _dir_codes(table.column("dir"))
        feeds = _feeds(table.column("feed"))
        if self.pacer.speed is not None and not self._muted:
            await self._dispatch_paced(session, group, keys, dirs, raws, recv, mono, conns, feeds)
            return
        n = len(raws)
        rows = zip(dirs, raws, recv, mono, conns, feeds or repeat(None, n), strict=True)
        for start in range(0, n, _PUMP_EVERY):
            for d, raw, recv_ns, mono_ns, conn, feed in islice(rows, _PUMP_EVERY):
                if d == _IN:
                    receive(raw, recv_ns, mono_ns, conn)
                else:
                    self._other(engine, d, raw, recv_ns, mono_ns, conn, group, feed)
            last = min(start + _PUMP_EVERY, n) - 1
            self._recv_ns, self._mono_ns = recv[last], mono[last]
            self.records += last - start + 1
            engine.tick(recv[last], mono[last])
            await session.pump()

    async def _dispatch_paced(
        self,
        session: Session,
        group: int,
        keys: list[int],
        dirs: list[int],
        raws: list[bytes],
        recv: list[int],
        mono: list[int],
        conns: list[int],
        feeds: list[int | None] | None,
    ) -> None:
        """`_dispatch` at a pace: wait for each record's time before feeding it."""
        engine = session.engine
        loop = asyncio.get_running_loop()
        for i, raw in enumerate(raws):
            wait = self.pacer.delay_s(keys[i], loop.time())
            if wait > 0.001:
                self._recv_ns, self._mono_ns = recv[i], mono[i]
                await session.pump()
                await asyncio.sleep(wait)
            if dirs[i] == _IN:
                engine.frame_received(raw, recv[i], mono[i], conns[i])
            else:
                feed = feeds[i] if feeds is not None else None
                self._other(engine, dirs[i], raw, recv[i], mono[i], conns[i], group, feed)
            self._recv_ns, self._mono_ns = recv[i], mono[i]
            self.records += 1
            if not (i + 1) % _PUMP_EVERY or i + 1 == len(raws):
                engine.tick(recv[i], mono[i])
                await session.pump()

    def _other(
        self, engine: Engine, d: int, raw: bytes, recv_ns: int, mono_ns: int, conn: int,
        group: int, feed: int | None = None,
    ) -> None:  # fmt: skip
        """A record that is not a received frame: a sent command or a connection event
        (of feed `feed` of the run whose first group is `group`)."""
        if d == _OUT:
            engine.command_sent(raw, recv_ns, mono_ns, conn)
        elif drive_event(engine, raw, recv_ns, mono_ns, conn, group + (feed or 0), feed):
            self._ended[group] = (recv_ns, mono_ns)

    # ------------------------------------------------------------------ seek

    def _runs_alive_at(self, runs: list[str], start_ns: int) -> list[str]:
        """Runs that have records at or after the start (the others are over by then)."""
        return [run for run in runs if self.capture.last_key(run) >= start_ns]

    def _restore(self, engine: Engine, run: str, group: int, start_ns: int) -> Resume:
        """Restore the run's latest checkpoint before `start_ns`; return where to read it from."""
        return restore_checkpoint(self.capture, engine, run, group, start_ns, self._offsets[run])


_IN, _OUT, _EVENT = 0, 1, 2
_DIR_CODE = {"in": _IN, "out": _OUT}


def restore_checkpoint(
    capture: Capture, engine: Engine, run: str, group: int, start_ns: int, conn_offset: int
) -> Resume:
    """Restore `run`'s latest connection checkpoint before `start_ns` into `engine` (its
    connections numbered from `conn_offset`, as the replay numbers them); return where to
    read the run from (0 when it has none). The seek of a replay, a backtest shard and a
    datasets day shard.

    In a capture of redundant feeds each feed's latest checkpoint is restored (into that
    feed's group, `group + feed`, oldest first) and each feed's records are read from
    its own (`replay.reading.capture.Resume`): every feed's books are what they were
    live, so a market can move to another feed from the first record on. Each market is
    delivered from the feed whose checkpoint says it delivered it (the newest record
    that says so); a market no checkpoint names (captures recorded before checkpoints
    named them, merged ones) from the feed restored first with a valid book of it. A
    feed without a checkpoint before the start joins at its next connection. The
    message copies a feed brought before its checkpoint, within the copy memory's window
    of the start, are counted as one pass would have (`_count_unread_copies`): a trade
    one feed brought just before its checkpoint is not delivered again from another
    feed after the start."""
    pieces = [p for p in capture.runs[run].pieces if p.channel == Channel.CHECKPOINT]
    if not pieces:
        return 0
    anchor_recv, anchor_mono = capture.anchors(run)
    best: dict[int | None, tuple[int, int, int, int, bytes]] = {}  # feed -> latest checkpoint
    for piece in pieces:
        table = capture.read_piece(piece, ["idx", "conn", "recv_ns", "mono_ns", "raw", "feed"])
        keys = merge_key(table.column("mono_ns"), anchor_recv, anchor_mono)
        before = table.filter(bool_array(int64_view(keys) < start_ns))
        latest: dict[int | None, tuple[int, int]] = {}  # feed -> (idx, row): no bytes read yet
        rows = zip(before.column("feed").to_pylist(), before.column("idx").to_pylist(), strict=True)
        for i, (feed, idx) in enumerate(rows):
            if feed not in latest or idx > latest[feed][0]:
                latest[feed] = (idx, i)
        for feed, (idx, i) in latest.items():
            if feed not in best or idx > best[feed][0]:
                row = before.slice(i, 1).to_pylist()[0]
                best[feed] = (idx, row["conn"], row["recv_ns"], row["mono_ns"], row["raw"])
    if not best:
        return 0
    feeds = sorted(best, key=lambda f: best[f][0])  # oldest first: the newest record last
    for feed in feeds:  # every feed's group first: arbitration holds from the first restore
        _, _, recv_ns, mono_ns, _ = best[feed]
        engine.connection_attempt(recv_ns, mono_ns, group=group + (feed or 0), feed=feed)
    for feed in feeds:
        idx, conn, recv_ns, mono_ns, raw = best[feed]
        engine.restore_checkpoint(json.loads(raw), recv_ns, mono_ns, conn=conn + conn_offset,
                                  group=group + (feed or 0), feed=feed)  # fmt: skip
    first = {feed or 0: best[feed][0] + 1 for feed in feeds}
    if engine.arbitrating:
        _count_unread_copies(capture, engine, run, first, start_ns, conn_offset)
    return first


def _count_unread_copies(
    capture: Capture, engine: Engine, run: str, first: dict[int, int], start_ns: int,
    conn_offset: int,
) -> None:  # fmt: skip
    """Count into the engine's copy memory the trades each feed brought before its own
    checkpoint (the records a seek does not read) and at most the memory's window before
    the start, in capture order: one pass would still remember them at the start."""
    window = int(engine.config.dedup_window_s * NS)
    since, unread = start_ns - window, max(first.values())
    pieces = [p for p in capture.runs[run].pieces if p.channel == Channel.TRADE
              and p.idx_lo < unread and p.recv_hi >= since]  # fmt: skip
    found: list[tuple[int, int, int, bytes]] = []
    columns = ["idx", "conn", "recv_ns", "dir", "raw", "feed"]
    for piece in pieces:
        table = capture.read_piece(piece, columns)
        recv, idx = int64_view(table.column("recv_ns")), int64_view(table.column("idx"))
        near = (recv >= since) & (recv < start_ns) & (idx < unread)
        kept = table.filter(bool_array(near))  # (no Python value converted: pandas stays out)
        rows = zip(*(kept.column(c).to_pylist() for c in columns), strict=True)
        for i, conn, recv_ns, dir_, raw, feed in rows:
            if dir_ == "in" and i < first.get(feed or 0, 0):
                found.append((i, conn, recv_ns, raw))
    copies = engine.arbiter.copies
    for _, conn, recv_ns, raw in sorted(found):
        copies.count(message_key("trade", raw), conn + conn_offset, recv_ns)


def drive_event(
    engine: Engine, raw: bytes, recv_ns: int, mono_ns: int, conn: int, group: int,
    feed: int | None = None,
) -> bool:  # fmt: skip
    """Re-drive the engine with a recorded connection event (the one way a replay and
    the datasets' driver turn events into engine inputs) on `group`, which is feed
    `feed` of a redundant capture (None: the capture does not say); True if the run
    stopped."""
    try:
        event = event_from_bytes(raw)
    except EventError:
        return False
    match event:
        case Attempt():
            engine.connection_attempt(recv_ns, mono_ns, group=group, feed=feed)
        case AttemptFailed(will_retry=will_retry):
            engine.attempt_failed(recv_ns, mono_ns, will_retry=will_retry, group=group, feed=feed)
        case Opened(standby=standby):
            engine.connection_opened(conn, recv_ns, mono_ns, standby=standby, group=group,
                                     feed=feed)  # fmt: skip
        case Closed(code=code, reason=reason, will_reconnect=will_reconnect):
            engine.connection_closed(
                conn, recv_ns, mono_ns, code=code, reason=reason, will_reconnect=will_reconnect
            )
        case RunStop():
            return True
    return False


def _feeds(column: pa.ChunkedArray) -> list[int | None] | None:
    """The `feed` column as Python values, or None when the records are all of feed 0
    (or null: a capture recorded before feeds)."""
    if column.null_count == len(column) or not pc.max(column).as_py():
        return None  # no feed above 0: the run's one group, as before feeds
    return column.to_pylist()


def _dir_codes(column: pa.ChunkedArray) -> list[int]:
    """The `dir` column as small ints, decoding the dictionary once per chunk
    (docs/performance.md section 4.8: never to_pylist a dictionary column value by value)."""
    out: list[int] = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            codes = [_DIR_CODE.get(v, _EVENT) for v in chunk.dictionary.to_pylist()]
            out.extend(codes[i] for i in chunk.indices.to_pylist())
        else:
            out.extend(_DIR_CODE.get(v, _EVENT) for v in chunk.to_pylist())
    return out


class ReplaySession(Session):
    """The Session API over a recorded capture.

    Args:
        root: the capture root (`data/` by default for `kalshi-tape record`), or an
            object-store URI such as `s3://bucket/prefix`, or an already built
            `Capture` index of one.
        start, end: replay only from/until these times (datetime, ISO-8601 string, or
            ns since the epoch); books at `start` are what they were live then.
        channels: read only these channels (default: the channels subscribed to).
        markets: read only frames of these markets (and frames of no market).
        speed: None = as fast as the consumers read (nothing dropped); 1.0 = real
            time; k = k times real time.
        snapshots: with `start`, consumers of raw frames, models or structs of a book
            channel begin each market with an `orderbook_snapshot` frame of its book at
            `start`, as a subscriber connecting then receives one first (book consumers
            always get the book at `start`). Built from the restored book, not recorded:
            its sid, its last change's seq and receive time; a subscription's in seq
            order, so the next recorded frame follows them.
        storage: endpoint, region and credentials of an object-store root (default:
            the AWS environment, `schemas.storage.StorageOptions.from_env`).

    Consumers default to the BLOCK overflow policy: a replay waits for a slow
    consumer instead of dropping anything.
    """

    def __init__(
        self,
        root: str | Path | Capture,
        start: dt.datetime | str | int | None = None,
        end: dt.datetime | str | int | None = None,
        channels: Iterable[str] | None = None,
        markets: Iterable[str] | None = None,
        speed: float | None = None,
        *,
        on_state_change: Any = None,
        on_error: Any = None,
        engine_config: EngineConfig | None = None,
        default_maxsize: int = 4096,
        storage: StorageOptions | None = None,
        snapshots: bool = False,
    ) -> None:
        self.source = ReplaySource(
            root if isinstance(root, Capture) else Capture(root, storage=storage),
            start_ns=to_ns(start, "start"),
            end_ns=to_ns(end, "end"),
            channels=channels,
            markets=markets,
            speed=speed,
            snapshots=snapshots,
        )
        super().__init__(
            self.source,
            on_state_change=on_state_change,
            on_error=on_error,
            engine_config=engine_config,
            default_overflow=Overflow.BLOCK,
            default_maxsize=default_maxsize,
        )

    @property
    def capture(self) -> Capture:
        return self.source.capture
