"""The derive driver: the engine decides, the kernel does the arithmetic.

A capture is read in replay order (`replay.reading.capture`), window by window,
exactly as `ReplaySession` reads it. Each window is decoded in bulk
(`replay.datasets.decode`) and walked by `replay.datasets.kernel.run`, which takes
the rows the engine's hot path would take the same way. Every other row (control
frames, commands, connection events, gaps, duplicates, first snapshots, legacy or
finer values, a make-before-break overlap) goes to a real `stream.engine.Engine`,
fed as `ReplaySource` feeds it, with two attached consumers: a BOOK consumer on
`orderbook_delta` and a FRAME consumer on `trade`. What those consumers receive is
what a `ReplaySession` consumer receives; the driver turns it into rows (an
invalid book is a "clear", a new book is a clear plus its levels, a delta the
engine applied is applied to the kernel's book) and mirrors the engine's state
(which wire each sid is, its last seq, which connection is active) back into the
kernel's arrays. Before the engine sees a row, the kernel's progress (last seq,
last trade frame) is written back into the engine's wire subscriptions, so the
engine always decides on the same state it would hold alone. With redundant feeds the
kernel takes every feed's frames, keeps each feed's books, and keeps the rows of the
book the engine delivers and each trade once (`Mirror.keep_delivered`, `_first_copies`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from replay.datasets import kernel, schema
from replay.datasets.arrays import values_of
from replay.datasets.copies import CompiledCopies
from replay.datasets.decode import Decoded, Scratch, decode_window
from replay.datasets.gather import Gather
from replay.datasets.mirror import Mirror, Outputs
from replay.datasets.rows import Build, ChangeRows, batch_of
from replay.reading.capture import Capture, Resume, int64_view, of_markets, read_filter
from replay.reading.session import CONN_STRIDE, FEED_SLOTS, drive_event
from stream import BinaryMessage
from stream.arbitration import Copies
from stream.core import NS
from stream.engine import Engine
from stream.events import GapDetected
from stream.queues import DeliveryQueue, Overflow
from stream.subscriptions import Delivery

__all__ = ["BOOK_CHANNEL", "TRADE_CHANNEL", "derive_batches"]

BOOK_CHANNEL = "orderbook_delta"
TRADE_CHANNEL = "trade"
_BATCH_ROWS = 1 << 15
#: Freed memory goes back to the system once this many bytes of row groups were read,
#: not before each (`replay.reading.capture.GiveBack`): with pyarrow's default pool
#: quotes 12% and the 10M-frame day 19% faster, its peak 54 MiB higher (378 to 432
#: MiB); with jemalloc, which the commands use, neither changes (it gives large blocks
#: back as they are freed).
_GIVE_BACK = 128 << 20
#: The most trades the copy memory makes room for before it sees them (24 MiB of arrays:
#: the index's 4 MiB written at once, the rest touched as it fills; `_Feed._arbitrated`).
_COPIES_ROOM = 1 << 17
_COLUMNS = ("idx", "conn", "recv_ns", "mono_ns", "dir", "raw", "opcode", "feed")


class _Feed:
    """One engine fed from a capture, with the kernel's mirror of its book state."""

    def __init__(self, capture: Capture, emit: Callable[[Any, str], None], build: Build) -> None:
        self.engine = Engine()
        self.core = self.engine._core
        self.books_q = DeliveryQueue(1 << 40, Overflow.BLOCK)
        self.trades_q = DeliveryQueue(1 << 40, Overflow.BLOCK)
        self.engine.add_consumer(BOOK_CHANNEL, owns_wire=False, delivery=Delivery.BOOK,
                                 queue=self.books_q)  # fmt: skip
        self.engine.add_consumer(TRADE_CHANNEL, owns_wire=False, delivery=Delivery.FRAME,
                                 queue=self.trades_q)  # fmt: skip
        self.copies: CompiledCopies | None = None  # once feeds are arbitrated (`_arbitrated`)
        self.mirror = Mirror(self.core)
        self.out = Outputs(emit, build, self.mirror.book_names)
        self.capture = capture
        self.ended: dict[int, tuple[int, int]] = {}
        self.runs = sorted(capture.runs)
        self.scratch = Scratch()

    # ------------------------------------------------------------------ one window

    def window(self, run_id: str, group: int, offset: int, table: pa.Table,
               decoded: Decoded, frame_base: int) -> None:  # fmt: skip
        m = self.mirror
        conns = values_of(table.column("conn")).astype(np.int64)
        conns = conns + offset
        conn_codes = m.conn_codes(conns)
        markets = m.market_codes(decoded)
        mkt = m.book_codes(markets, table)  # each row's book: one per market, or per feed
        n = table.num_rows
        out = self.out
        out.begin(run_id, table, decoded, frame_base, m.names, markets)
        pos = 0
        lv = decoded.levels
        while pos < n:
            o0, q0, t0 = out.n, int(out.q_n[0]), out.t_n
            pos, o_n, t_n, full = kernel.run(
                pos, n, decoded.rk, conn_codes, decoded.sid, decoded.seq, mkt, decoded.side,
                decoded.price, decoded.dsize, decoded.exact, *lv,
                m.wire_of, m.wire_last, m.wire_role, m.wire_lastrow, m.first_last,
                m.market_wire, *m.books.arrays(), m.stamp, m.stamp_no,
                out.row, out.mkt, out.kind, out.side, out.price, out.size, out.delta,
                out.valid, out.n, out.t_row, out.t_n,
                m.qstate, out.q_row, out.q_mkt, out.q_val, out.q_n,
            )  # fmt: skip
            out.n, out.t_n = o_n, t_n
            if self.core.arbitrating:
                m.keep_delivered(out, o0, q0)
                self._first_copies(t0, decoded, conns, table)
            if full:
                if not (out.n or out.t_n or out.q_n[0]):  # a snapshot larger than the buffer
                    out.reserve(2 * len(out.row))
                out.flush()
                continue
            if pos >= n:
                break
            m.write_back(table)
            conn, book = int(conns[pos]), int(mkt[pos])
            before = m.before(conn, int(decoded.sid[pos])) if self.core.arbitrating else None
            raw = self._slow(pos, run_id, group, table, decoded, conn, book)
            m.refresh()
            if before is not None:
                m.follow(pos, decoded, conn, book, before, raw)
            elif self.core.arbitrating:  # a feed's first record, just now
                self._arbitrated()
            pos += 1
        m.write_back(table)
        recv = table.column("recv_ns")
        self.engine.tick(recv[-1].as_py(), table.column("mono_ns")[-1].as_py())
        self.engine.outbox.clear()
        out.end()

    def _slow(self, pos: int, run_id: str, group: int, table: pa.Table, decoded: Decoded,
              conn: int, mkt: int) -> Any:  # fmt: skip
        """Give one row to the engine; turn what its consumers got into rows. Returns the
        row's bytes."""
        engine = self.engine
        d = table.column("dir")[pos].as_py()
        raw = table.column("raw")[pos].as_py()
        recv_ns = table.column("recv_ns")[pos].as_py()
        mono_ns = table.column("mono_ns")[pos].as_py()
        self.out.reserve(16)
        if d == "in":
            if table.column("opcode")[pos].as_py() == 2:
                raw = BinaryMessage(raw)
            engine.frame_received(raw, recv_ns, mono_ns, conn)
        elif d == "out":
            engine.command_sent(raw, recv_ns, mono_ns, conn)
        else:
            feed = table.column("feed")[pos].as_py()
            self._event(raw, recv_ns, mono_ns, conn, group, feed)
        gap = any(isinstance(o, GapDetected) and o.channel == TRADE_CHANNEL
                  for o in engine.outbox)  # fmt: skip
        engine.outbox.clear()
        engine.take_blocking()
        buf = self.trades_q.buffer
        while buf:
            frame = buf.popleft()
            self.out.trade_frame(frame, self.runs[frame.conn // CONN_STRIDE],
                                 frame.conn % CONN_STRIDE, valid=not gap)  # fmt: skip
        buf = self.books_q.buffer
        while buf:
            self.mirror.delivered(buf.popleft(), pos, decoded, conn, mkt, raw, self.out)
        return raw

    def _arbitrated(self) -> None:
        """The engine remembers message copies across feeds in arrays the kernel's trades
        are counted in too (`_first_copies`), from the moment it arbitrates (before, it
        counts none). The arrays start with room for half the capture's trade frames
        (each trade comes once a feed), at most `_COPIES_ROOM`: growing them as they
        fill took a third of a two-feed trades derive."""
        trades = sum(p.rows for run in self.capture.runs.values() for p in run.pieces
                     if p.channel == TRADE_CHANNEL)  # fmt: skip
        room = min(max(trades // 2, 1 << 12), _COPIES_ROOM)
        self.copies = CompiledCopies(int(self.core.config.dedup_window_s * NS), room=room)
        counted = self.engine.arbiter.copies
        if isinstance(counted, Copies):  # a seek's restore counted copies into it
            counted.replay_into(self.copies)
        self.engine.arbiter.copies = self.copies

    def _first_copies(self, t0: int, decoded: Decoded, conns: np.ndarray,
                      table: pa.Table) -> None:  # fmt: skip
        """Of the trades the kernel took from `t0` on, keep each message once: the copy the
        engine's arbitration delivers (`stream.arbitration.Copies`' rule, in the memory the
        engine counts its own trades in)."""
        out = self.out
        if out.t_n <= t0:
            return
        assert self.copies is not None
        rows = out.t_row[t0 : out.t_n]
        recv = int64_view(table.column("recv_ns"))[rows]
        keep = self.copies.count_trades(decoded.data, decoded.offsets, rows, conns[rows], recv)
        if not keep.all():
            kept = int(keep.sum())
            out.t_row[t0 : t0 + kept] = rows[keep]
            out.t_valid[t0 : t0 + kept] = out.t_valid[t0 : out.t_n][keep]
            out.t_n = t0 + kept

    def _event(
        self, raw: bytes, recv_ns: int, mono_ns: int, conn: int, group: int, feed: int | None
    ) -> None:
        """A recorded connection event, as `ReplaySource` feeds it (each feed of a redundant
        capture is its own group; the engine arbitrates between them)."""
        if drive_event(self.engine, raw, recv_ns, mono_ns, conn, group + (feed or 0), feed):
            self.ended[group] = (recv_ns, mono_ns)

    def end_groups(self, current: int | None) -> None:
        """Runs whose records ended: their end matters once another run goes on."""
        for g in [g for g in self.ended if g != current]:
            when = self.ended.pop(g)
            for feed in range(FEED_SLOTS):
                self.engine.group_ended(g + feed, *when)
            self.mirror.refresh()


def derive_batches(
    capture: Capture,
    *,
    markets: frozenset[str] | None = None,
    runs: list[str] | None = None,
    from_idx: dict[str, Resume] | None = None,
    prepare: Callable[[Engine, dict[str, int], dict[str, int]], dict[str, Resume]] | None = None,
    end_ns: int | None = None,
    channels: tuple[str, ...] = (BOOK_CHANNEL, TRADE_CHANNEL),
    build: Build = Build(),
) -> Iterator[tuple[str, Any]]:
    """Yield ("book_changes" | "quotes" | "trades", batch) in capture order, what `build`
    asks for: book_changes only with `changes` (quotes alone need the books, not the
    rows), quotes only with `quotes` (depth needs the rows, not the quotes); with
    `change_rows` the kernel's level changes come as ("book_rows", `rows.ChangeRows`)
    instead of book_changes batches (depth alone needs no Arrow rows; books restored at a
    seek still come as a batch); without `trades`, trade batches hold only what the bars
    read (`rows.BAR_TRADES`).

    `prepare(engine, groups, offsets)` may restore checkpoints before reading and
    return the idx to read each run from (the seek of `replay.datasets.shards`).
    """
    pending: list[tuple[str, pa.RecordBatch]] = []
    feed = _Feed(capture, lambda batch, name: pending.append((name, batch)), build)
    all_runs = sorted(capture.runs)
    offsets = {run: i * CONN_STRIDE for i, run in enumerate(all_runs)}
    groups = {run: (i + 1) * FEED_SLOTS for i, run in enumerate(all_runs)}
    chosen = sorted(runs) if runs is not None else all_runs
    if prepare is not None:
        from_idx = prepare(feed.engine, groups, offsets)
        if feed.core.arbitrating:  # feeds restored: their copies counted from here on
            feed._arbitrated()
        feed.mirror.refresh()
        restored = feed.mirror.load_engine_books(all_runs, CONN_STRIDE, feed.engine.arbiter.owners)
        if restored and build.changes:
            fields = [*schema.BOOK_CHANGES, pa.field("_frame", pa.int64())]
            yield "book_changes", batch_of(restored, pa.schema(fields))
    wanted = [c for c in channels if c in capture.channels]
    if not chosen:
        return
    last_idx = {run: max(p.idx_hi for p in capture.runs[run].pieces) for run in chosen}
    base = 0
    # Sequenced channels are read for every market (their seq spans a subscription's
    # markets), and the rows narrowed to `markets` on the way out, as a replay does.
    read_markets = read_filter(wanted, markets)
    keep = None if markets is None or read_markets is not None else markets
    windows = capture.read(wanted, columns=_COLUMNS, markets=read_markets, runs=chosen,
                           from_idx=from_idx or {}, window_rows=_BATCH_ROWS,
                           give_back=_GIVE_BACK, copying=Gather())  # fmt: skip
    for run, table in _batched(windows, end_ns):
        group = groups[run]
        if feed.ended and any(g != group for g in feed.ended):
            feed.end_groups(group)
            yield from _drain(pending, keep)
        decoded = decode_window(table, feed.mirror.table, feed.scratch)
        feed.window(run, group, offsets[run], table, decoded, base)
        base += table.num_rows
        if table.column("idx")[-1].as_py() >= last_idx[run]:
            feed.ended.setdefault(group, (table.column("recv_ns")[-1].as_py(),
                                          table.column("mono_ns")[-1].as_py()))  # fmt: skip
        del table, decoded  # before the next window is read into a buffer they hold
        yield from _drain(pending, keep)
    feed.out.flush()  # each window's rows went out with it: this refuses any left over


def _batched(windows: Iterator[Any], end_ns: int | None) -> Iterator[tuple[str, pa.Table]]:
    """Windows of a run, the small ones (cut at a file's end) put together with their
    neighbours (the decode and the kernel pay per call); a window of a quarter of
    `_BATCH_ROWS` or more goes alone (a join copies it). Reading stops at the first
    window starting at `end_ns`."""
    alone = _BATCH_ROWS // 4
    run: str | None = None
    parts: list[pa.Table] = []
    rows = 0
    for window in windows:
        if end_ns is not None and window.keys[0].as_py() >= end_ns:
            break
        if parts and (window.run_id != run or rows >= alone or window.table.num_rows >= alone):
            assert run is not None
            yield run, _joined(parts)
            parts, rows = [], 0
        run = window.run_id
        parts.append(window.table)
        rows += window.table.num_rows
    if parts:
        assert run is not None
        yield run, _joined(parts)


def _joined(parts: list[pa.Table]) -> pa.Table:
    """One table of contiguous columns (a window read whole is one already)."""
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if all(column.num_chunks == 1 for column in table.columns):
        return table
    return table.combine_chunks()


def _drain(
    pending: list[tuple[str, Any]], keep: frozenset[str] | None = None
) -> Iterator[tuple[str, Any]]:
    while pending:
        name, batch = pending.pop(0)
        if keep is not None:
            if isinstance(batch, ChangeRows):  # depth's rows, not a batch
                batch = batch.of(keep)
                if not len(batch.mkt):
                    continue
            else:
                batch = batch.filter(of_markets(pa.chunked_array([batch.column("market")]), keep))
                if not batch.num_rows:
                    continue
        yield name, batch
