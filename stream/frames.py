"""The frame input: routing by sid, sequence checks, books; bad and unknown frames.

`FrameInput.frame_received` is the engine's hot path. It decodes a frame once,
routes it by sid to its wire subscription (or stashes it until the subscribe is
acknowledged, docs/protocol.md section 9.5), checks its seq, applies book frames
and hands the frame to `stream.fanout`; control frames go to `stream.control`.

Sequence rules (docs/protocol.md sections 8.16 and 9.1-9.5), per wire
subscription on every sequenced channel: an in-order frame passes; a duplicate
(seq equal to the last) is dropped; a gap (seq beyond last + 1) or a reset (seq
below the last) is reported. On a book channel the frame is dropped, the
subscription's books are cleared and a snapshot is requested (get_snapshot,
falling back to unsubscribe + subscribe). On other channels the frame after a gap
or a reset is still delivered, and the watermark follows it: dropping a valid
trade cannot bring back the lost one. A duplicate there is a frame whose seq and
bytes repeat the last one's; it is dropped and counted. After a reset, a frame
that continues from the highest seq seen before it is in order (a stray lower
frame broke nothing), and a gap counts from the highest seq when it goes past it. A malformed book
frame never moves the watermark, so the next good frame shows the gap (9.3).
Gaps and resets are `stream.resync`'s to handle.

The first frame of a subscription must carry `EngineConfig.first_seq` (1), so a
lost first frame is a gap too.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from schemas.channels import Channel, channel_of_type
from schemas.envelope import decode_envelope
from schemas.errors import EnvelopeError
from stream.book import OrderBook
from stream.connections import Connection
from stream.core import EngineCore
from stream.decode import (
    DECODE_ERRORS,
    FRAME_TAGS,
    DeltaFrame,
    ErrorFrame,
    OkFrame,
    SnapshotFrame,
    SubscribedFrame,
    UnsubscribedFrame,
    decode_book_exact,
    decode_frame,
    delta_units,
    snapshot_units,
)
from stream.events import Frame
from stream.fanout import Fanout
from stream.fixed import Units, price_memo, size_memo
from stream.resync import Resync
from stream.subscriptions import WireSubscription

if TYPE_CHECKING:
    from stream.arbitration import Arbiter
    from stream.control import ControlInput
    from stream.switching import Switching

__all__ = ["FrameInput"]

_TAG = FRAME_TAGS  # struct class -> wire type
_decode = decode_frame
_CONTROL = frozenset({SubscribedFrame, UnsubscribedFrame, OkFrame, ErrorFrame})
_DECODE_ERRORS = DECODE_ERRORS
_BOOK_TYPES = frozenset({"orderbook_snapshot", "orderbook_delta"})
_price_get = price_memo.get  # wire text -> units: the hot path's one lookup per number
_size_get = size_memo.get


class FrameInput:
    """The engine's frame input (see the module docstring).

    Control frames go to `control`, a standby's snapshots to `switching`: the engine
    sets both when it assembles its parts.
    """

    __slots__ = (
        "_conns",
        "_core",
        "_deliver",
        "_fanout",
        "_first_last",
        "_resync",
        "_stash_maxlen",
        "arbiter",
        "control",
        "stats",
        "switching",
    )

    def __init__(self, core: EngineCore, fanout: Fanout, resync: Resync) -> None:
        self._core = core
        self._fanout = fanout
        self._resync = resync
        # What the hot path reads, bound once (the same objects for the engine's life).
        self._conns = core.conns
        self.stats = core.stats
        self._deliver = fanout.deliver
        self._first_last = core.first_last
        self._stash_maxlen = core.config.stash_maxlen
        self.control: ControlInput | None = None
        self.switching: Switching | None = None
        self.arbiter: Arbiter | None = None

    def frame_received(
        self, raw: bytes, recv_ns: int, mono_ns: int, conn: int, decoded: Any = None
    ) -> None:
        """A server frame arrived on `conn`, bytes exact.

        `decoded` may carry the frame's `stream.decode.decode_frame` result when the edge
        already decoded it (the recorder's sink does, to derive its columns), so the
        frame is decoded once.
        """
        self.stats.frames += 1
        state = self._conns.get(conn)
        if state is None:
            self.stats.stale_frames += 1
            return
        # One decode, one type test, one sid lookup (docs/performance.md section 4.1). The dispatch
        # is written out here, not through _dispatch, to save a call per frame.
        if decoded is not None:
            frame = decoded
        else:
            try:
                frame = _decode(raw)
            except _DECODE_ERRORS:
                self._undecodable(state, raw, recv_ns, mono_ns)
                return
        kind = type(frame)
        if kind is DeltaFrame:
            # The hot path (about 70% of frames): a current-form delta in whole units, in
            # sequence, on a book we hold. Anything else takes `_book_frame`, which
            # decides every case, these included, the same way.
            wire = state.sids.get(frame.sid)
            if wire is not None:
                body = frame.msg
                seq = frame.seq
                last = wire.last_seq
                price = _price_get(body.price_dollars)
                delta = _size_get(body.delta_fp)
                side = body.side
                book = wire.books.get(body.market_ticker)
                if (
                    book is not None
                    and last is not None
                    and seq == last + 1
                    and price is not None
                    and delta is not None
                    and (side == "yes" or side == "no")
                ):
                    wire.frames += 1
                    wire.last_mono_ns = mono_ns
                    wire.last_seq = seq
                    book.apply(side == "yes", price, delta, seq, body.clock, recv_ns)
                    if wire.targets:
                        self._deliver(wire, Frame(
                            raw, recv_ns, mono_ns, state.conn, wire.channel, "orderbook_delta",
                            frame.sid, seq, body.market_ticker,
                        ), book)  # fmt: skip
                    return
            self._book_frame(state, frame, raw, recv_ns, mono_ns)
        elif kind is SnapshotFrame:
            self._book_frame(state, frame, raw, recv_ns, mono_ns)
        elif kind in _CONTROL:
            self._control(state, frame, raw, recv_ns, mono_ns)
        else:
            self._data_frame(state, frame, raw, recv_ns, mono_ns)

    def dispatch(self, state: Connection, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        """Process a frame already counted (a stashed one, replayed after its ack)."""
        try:
            frame = _decode(raw)
        except _DECODE_ERRORS:
            self._undecodable(state, raw, recv_ns, mono_ns)
            return
        kind = type(frame)
        if kind is DeltaFrame:
            # The hot path (about 70% of frames): a current-form delta in whole units, in
            # sequence, on a book we hold. Anything else takes `_book_frame`, which
            # decides every case, these included, the same way.
            wire = state.sids.get(frame.sid)
            if wire is not None:
                body = frame.msg
                seq = frame.seq
                last = wire.last_seq
                price = _price_get(body.price_dollars)
                delta = _size_get(body.delta_fp)
                side = body.side
                book = wire.books.get(body.market_ticker)
                if (
                    book is not None
                    and last is not None
                    and seq == last + 1
                    and price is not None
                    and delta is not None
                    and (side == "yes" or side == "no")
                ):
                    wire.frames += 1
                    wire.last_mono_ns = mono_ns
                    wire.last_seq = seq
                    book.apply(side == "yes", price, delta, seq, body.clock, recv_ns)
                    if wire.targets:
                        self._deliver(wire, Frame(
                            raw, recv_ns, mono_ns, state.conn, wire.channel, "orderbook_delta",
                            frame.sid, seq, body.market_ticker,
                        ), book)  # fmt: skip
                    return
            self._book_frame(state, frame, raw, recv_ns, mono_ns)
        elif kind is SnapshotFrame:
            self._book_frame(state, frame, raw, recv_ns, mono_ns)
        elif kind in _CONTROL:
            self._control(state, frame, raw, recv_ns, mono_ns)
        else:
            self._data_frame(state, frame, raw, recv_ns, mono_ns)

    def _control(
        self, state: Connection, frame: Any, raw: bytes, recv_ns: int, mono_ns: int
    ) -> None:
        assert self.control is not None
        self.control.handle(state, frame, raw, recv_ns, mono_ns)

    # ------------------------------------------------------------------ routing

    def _wire_for(
        self, state: Connection, sid: int | None, raw: bytes, recv_ns: int, mono_ns: int
    ) -> WireSubscription | None:
        """The wire subscription of a sid missing from the map: stash or drop the frame."""
        wire = state.sids.get(sid) if sid is not None else None
        if wire is not None:
            return wire
        if sid is None or sid in state.retired:
            self.stats.stale_frames += 1
            return None
        if state.pending:
            self._stash(state, sid, raw, recv_ns, mono_ns)
        else:
            self.stats.unrouted += 1
        return None

    def _stash(self, state: Connection, sid: int, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        """Keep a frame for a sid whose ack has not arrived yet (docs/protocol.md section 9.5)."""
        queue = state.stash.get(sid)
        if queue is None:
            queue = state.stash[sid] = deque(maxlen=self._stash_maxlen)
        if len(queue) == queue.maxlen:
            self.stats.stash_evicted += 1
            if not state.stash_warned:
                state.stash_warned = True
                self._core.report(
                    "stash_overflow",
                    f"more than {queue.maxlen} frames for sid {sid} before its ack; oldest evicted",
                    recv_ns,
                    state.conn,
                    sid,
                )
        queue.append((raw, recv_ns, mono_ns))
        self.stats.stashed += 1

    # ------------------------------------------------------------------ data frames

    def _data_frame(
        self, state: Connection, frame: Any, raw: bytes, recv_ns: int, mono_ns: int
    ) -> None:
        wire = state.sids.get(frame.sid)
        if wire is None:
            wire = self._wire_for(state, frame.sid, raw, recv_ns, mono_ns)
            if wire is None:
                return
        wire.frames += 1
        wire.last_mono_ns = mono_ns
        seq = frame.seq
        if wire.sequenced:
            if seq is None:
                self._malformed(state, raw, recv_ns, f"{_TAG[type(frame)]}: seq missing", wire)
                return
            last = wire.last_seq
            if last is None:
                last = self._first_last
            if last is not None and seq != last + 1:
                high = wire.high_seq
                if seq == last and raw == wire.last_raw:
                    self.stats.duplicates += 1  # the same frame again: dropped, counted
                    return
                if high is None or seq != high + 1:
                    # A gap or a reset is reported, and the frame delivered: the exchange
                    # sent it, and dropping it cannot bring back what was lost.
                    after = last if high is None or seq <= high else high
                    self._resync.sequence_break(state, wire, after, seq, recv_ns, mono_ns)
                # else: the stream goes on from before a stray lower frame, nothing missing
            wire.last_seq = seq  # the watermark follows (a true reset must not mute it)
            wire.last_raw = raw
            if wire.high_seq is None or seq > wire.high_seq:
                wire.high_seq = seq
        if not wire.targets or (self._core.muted and not self._core.overlap):
            return  # (muted, delivery remembers something only in an overlap or across feeds)
        msg = frame.msg
        market = None
        if msg is not None and type(msg) is not list:
            market = msg.market_ticker if msg.market_ticker is not None else msg.ticker
        frame_out = Frame(
            raw, recv_ns, mono_ns, state.conn, wire.channel, _TAG[type(frame)], frame.sid, seq,
            market,
        )  # fmt: skip
        self._deliver(wire, frame_out, None)

    def _book_frame(
        self, state: Connection, frame: Any, raw: bytes, recv_ns: int, mono_ns: int
    ) -> None:
        wire = state.sids.get(frame.sid)
        if wire is None:
            wire = self._wire_for(state, frame.sid, raw, recv_ns, mono_ns)
            if wire is None:
                return
        wire.frames += 1
        wire.last_mono_ns = mono_ns
        body = frame.msg
        is_delta = type(frame) is DeltaFrame
        # Validate fully before the watermark moves (docs/protocol.md section 9.3).
        price: Units
        delta: Units
        if is_delta:
            side = body.side
            memo_price, memo_delta = _price_get(body.price_dollars), _size_get(body.delta_fp)
            if memo_price is not None and memo_delta is not None and side in ("yes", "no"):
                is_yes, price, delta = side == "yes", memo_price, memo_delta  # current, whole
            else:
                try:
                    is_yes, price, delta = delta_units(body)  # legacy, finer, or malformed
                except ValueError as exc:
                    self._malformed(state, raw, recv_ns, str(exc), wire)
                    return
                self._count_subunit(price, delta)
        else:
            try:
                yes, no, finer = snapshot_units(body)
            except ValueError as exc:
                self._malformed(state, raw, recv_ns, f"orderbook_snapshot: {exc}", wire)
                return
            self.stats.subunit_values += finer
        seq = frame.seq
        if seq is None:
            self._malformed(state, raw, recv_ns, "orderbook frame without seq", wire)
            return
        last = wire.last_seq
        if last is None:
            last = self._first_last
        if last is not None and seq != last + 1:
            if seq == last:
                self.stats.duplicates += 1
                return
            self._resync.sequence_break(state, wire, last, seq, recv_ns, mono_ns)
            wire.last_seq = seq
            if is_delta or seq < last:
                return
        wire.last_seq = seq
        market = body.market_ticker
        book = wire.books.get(market)
        if is_delta:
            if book is None:
                self._delta_without_book(state, wire, market, recv_ns)
                return
            book.apply(is_yes, price, delta, seq, body.clock, recv_ns)
        else:
            if book is None:
                book = wire.books[market] = OrderBook(
                    market, state.conn, wire.sid, wire.use_yes_price
                )
            book.reset(yes, no, seq=seq, clock=body.clock, recv_ns=recv_ns,
                       market_id=body.market_id)  # fmt: skip
            wire.warned_no_book.discard(market)
            if self._core.cleared:
                self._core.cleared.pop((wire.channel, market), None)
            if wire.awaiting_snapshot:
                wire.awaiting_snapshot.discard(market)
                if not wire.awaiting_snapshot:
                    wire.resync_since_ns = None
            if self._core.arbitrating and wire.is_book:
                assert self.arbiter is not None
                self.arbiter.snapshot_applied(state, wire, market, recv_ns, mono_ns)
        if wire.targets:
            frame_out = Frame(
                raw, recv_ns, mono_ns, state.conn, wire.channel, _TAG[type(frame)], frame.sid,
                seq, market,
            )  # fmt: skip
            self._deliver(wire, frame_out, book)
        if not is_delta and state.group.standby is state:
            assert self.switching is not None
            self.switching.maybe_switch(state, recv_ns, mono_ns)

    def _delta_without_book(
        self, state: Connection, wire: WireSubscription, market: str, recv_ns: int
    ) -> None:
        self.stats.dropped_no_book += 1
        if market in wire.awaiting_snapshot:
            return  # expected while a resync is in flight
        if market not in wire.warned_no_book:
            wire.warned_no_book.add(market)
            self._core.report(
                "delta_before_snapshot",
                f"delta for {market} before its snapshot on sid {wire.sid}; dropped, "
                "snapshot requested",
                recv_ns,
                state.conn,
                wire.sid,
                wire.channel,
            )
            self._resync.request_snapshot(state, wire, [market], recv_ns)

    # ------------------------------------------------------------------ bad frames

    def _undecodable(self, state: Connection, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        """A frame the hot-path decoder rejects: an unknown type, or a known type gone wrong."""
        try:
            env = decode_envelope(raw)
        except EnvelopeError as exc:
            self._malformed(state, raw, recv_ns, str(exc), None)
            return
        wire = state.sids.get(env.sid) if env.sid is not None else None
        if env.type in _BOOK_TYPES:
            try:
                book_frame = decode_book_exact(raw)  # numbers sent as JSON numbers, exactly
            except _DECODE_ERRORS:
                pass
            else:
                self.stats.exact_reads += 1
                self._book_frame(state, book_frame, raw, recv_ns, mono_ns)
                return
        if channel_of_type(env.type) != Channel.UNKNOWN:
            self._malformed(state, raw, recv_ns, f"bad {env.type} frame", wire)
            return
        self.stats.unknown_types += 1
        channel = wire.channel if wire else None
        self._core.report(
            "unknown_type", f"unknown message type {env.type!r}", recv_ns, state.conn, env.sid,
            channel, raw=raw,
        )  # fmt: skip
        if wire is not None and wire.targets:  # the generic subscribe() stream still gets it
            frame = Frame(
                raw, recv_ns, mono_ns, state.conn, wire.channel, env.type, env.sid, env.seq,
                env.market_ticker,
            )  # fmt: skip
            self._deliver(wire, frame, None)

    def _count_subunit(self, price: Units, size: Units) -> None:
        """Count a value finer than its unit (kept exact, in the slower Decimal form)."""
        if type(price) is not int:
            self.stats.subunit_values += 1
        if type(size) is not int:
            self.stats.subunit_values += 1

    def _malformed(
        self,
        state: Connection,
        raw: bytes,
        recv_ns: int,
        reason: str,
        wire: WireSubscription | None,
    ) -> None:
        self.stats.malformed += 1
        sid, channel = (wire.sid, wire.channel) if wire else (None, None)
        self._core.report("malformed", reason, recv_ns, state.conn, sid, channel, raw=raw)
