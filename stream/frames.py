"""Data and book frames: routing by sid, sequence checks, books, resyncs.

Sequence rules (docs/protocol.md section 8.16 and behaviours 1-5), per wire
subscription on every sequenced channel: an in-order frame passes; a duplicate
(seq equal to the last) is dropped; a gap (seq beyond last + 1) or a reset (seq
below the last) is reported. On a book channel the frame is dropped, the
subscription's books are cleared and a snapshot is requested (get_snapshot,
falling back to unsubscribe + subscribe). On other channels the frame after a gap
is still delivered: dropping a valid trade cannot bring back the lost one. A
reset's frame is dropped everywhere and the watermark rebased. A malformed book
frame never moves the watermark, so the next good frame shows the gap (#3).

The first frame of a subscription must carry `EngineConfig.first_seq` (1), so a
lost first frame is a gap too.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from schemas.channels import Channel, channel_of_type
from schemas.envelope import decode_envelope
from schemas.errors import EnvelopeError
from stream.book import OrderBook
from stream.connections import Connection
from stream.core import NS, EngineCore
from stream.decode import (
    DECODE_ERRORS,
    FRAME_TAGS,
    DeltaFrame,
    ErrorFrame,
    OkFrame,
    SnapshotFrame,
    SubscribedFrame,
    UnsubscribedFrame,
    decode_frame,
    delta_fields,
    snapshot_levels,
)
from stream.events import Frame, GapDetected, ResyncRequested
from stream.subscriptions import WireSubscription

__all__ = ["FrameHandling"]

_TAG = FRAME_TAGS  # struct class -> wire type
_decode = decode_frame
_CONTROL = frozenset({SubscribedFrame, UnsubscribedFrame, OkFrame, ErrorFrame})
_DECODE_ERRORS = DECODE_ERRORS


class FrameHandling(EngineCore):
    """The frame input of the engine (see `stream.engine.Engine`)."""

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
        # The hot path: one decode, one type test, one sid lookup
        # (docs/performance.md section 4.1). The dispatch is written out here, not through
        # _dispatch, to save a call per frame.
        if decoded is not None:
            frame = decoded
        else:
            try:
                frame = _decode(raw)
            except _DECODE_ERRORS:
                self._undecodable(state, raw, recv_ns, mono_ns)
                return
        kind = type(frame)
        if kind is DeltaFrame or kind is SnapshotFrame:
            self._book_frame(state, frame, raw, recv_ns, mono_ns)
        elif kind in _CONTROL:
            self._control(state, frame, raw, recv_ns, mono_ns)
        else:
            self._data_frame(state, frame, raw, recv_ns, mono_ns)

    def _dispatch(self, state: Connection, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        """Process a frame already counted (a stashed one, replayed after its ack)."""
        try:
            frame = _decode(raw)
        except _DECODE_ERRORS:
            self._undecodable(state, raw, recv_ns, mono_ns)
            return
        kind = type(frame)
        if kind is DeltaFrame or kind is SnapshotFrame:
            self._book_frame(state, frame, raw, recv_ns, mono_ns)
        elif kind in _CONTROL:
            self._control(state, frame, raw, recv_ns, mono_ns)
        else:
            self._data_frame(state, frame, raw, recv_ns, mono_ns)

    def _control(
        self, state: Connection, frame: Any, raw: bytes, recv_ns: int, mono_ns: int
    ) -> None:
        raise NotImplementedError  # stream.control.ControlHandling

    def _maybe_switch(self, group_conn: Connection, recv_ns: int, mono_ns: int) -> None:
        raise NotImplementedError  # stream.engine.Engine

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
            queue = state.stash[sid] = deque(maxlen=self.config.stash_maxlen)
        if len(queue) == queue.maxlen:
            self.stats.stash_evicted += 1
            if not state.stash_warned:
                state.stash_warned = True
                self._report(
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
                if seq == last:
                    self.stats.duplicates += 1
                    return
                self._sequence_break(state, wire, last, seq, recv_ns, mono_ns)
                if seq < last:
                    wire.last_seq = seq  # rebase: a true reset must not mute the stream
                    return
            wire.last_seq = seq
        if not wire.targets:
            return
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
        if is_delta:
            side, price, delta = body.side, body.price_dollars, body.delta_fp
            if price is not None and delta is not None and (side == "yes" or side == "no"):
                is_yes = side == "yes"  # the current wire form, read inline
            else:
                try:
                    is_yes, price, delta = delta_fields(body)  # legacy form, or malformed
                except ValueError as exc:
                    self._malformed(state, raw, recv_ns, str(exc), wire)
                    return
        else:
            yes, no = snapshot_levels(body)
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
            self._sequence_break(state, wire, last, seq, recv_ns, mono_ns)
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
            book.reset(yes, no, seq=seq, clock=body.clock, recv_ns=recv_ns)
            wire.warned_no_book.discard(market)
            if wire.awaiting_snapshot:
                wire.awaiting_snapshot.discard(market)
                if not wire.awaiting_snapshot:
                    wire.resync_since_ns = None
        if wire.targets:
            frame_out = Frame(
                raw, recv_ns, mono_ns, state.conn, wire.channel, _TAG[type(frame)], frame.sid,
                seq, market,
            )  # fmt: skip
            self._deliver(wire, frame_out, book)
        if not is_delta and state.group.standby is state:
            self._maybe_switch(state, recv_ns, mono_ns)

    def _delta_without_book(
        self, state: Connection, wire: WireSubscription, market: str, recv_ns: int
    ) -> None:
        self.stats.dropped_no_book += 1
        if market in wire.awaiting_snapshot:
            return  # expected while a resync is in flight
        if market not in wire.warned_no_book:
            wire.warned_no_book.add(market)
            self._report(
                "delta_before_snapshot",
                f"delta for {market} before its snapshot on sid {wire.sid}; dropped, "
                "snapshot requested",
                recv_ns,
                state.conn,
                wire.sid,
                wire.channel,
            )
            self._request_snapshot(state, wire, [market], recv_ns)

    # ------------------------------------------------------------------ bad frames

    def _undecodable(self, state: Connection, raw: bytes, recv_ns: int, mono_ns: int) -> None:
        """A frame the hot-path decoder rejects: an unknown type, or a known type gone wrong."""
        try:
            env = decode_envelope(raw)
        except EnvelopeError as exc:
            self._malformed(state, raw, recv_ns, str(exc), None)
            return
        wire = state.sids.get(env.sid) if env.sid is not None else None
        if channel_of_type(env.type) != Channel.UNKNOWN:
            self._malformed(state, raw, recv_ns, f"bad {env.type} frame", wire)
            return
        self.stats.unknown_types += 1
        channel = wire.channel if wire else None
        self._report(
            "unknown_type", f"unknown message type {env.type!r}", recv_ns, state.conn, env.sid,
            channel, raw=raw,
        )  # fmt: skip
        if wire is not None and wire.targets:  # the generic subscribe() stream still gets it
            frame = Frame(
                raw, recv_ns, mono_ns, state.conn, wire.channel, env.type, env.sid, env.seq,
                env.market_ticker,
            )  # fmt: skip
            self._deliver(wire, frame, None)

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
        self._report("malformed", reason, recv_ns, state.conn, sid, channel, raw=raw)

    # ------------------------------------------------------------------ sequence and resync

    def _sequence_break(
        self,
        state: Connection,
        wire: WireSubscription,
        last: int,
        seq: int,
        recv_ns: int,
        mono_ns: int,
    ) -> None:
        kind = "gap" if seq > last else "reset"
        if kind == "gap":
            self.stats.gaps += 1
        else:
            self.stats.resets += 1
        assert wire.sid is not None
        self.outbox.append(
            GapDetected(kind, state.conn, wire.sid, wire.channel, last + 1, seq, recv_ns, mono_ns)
        )
        message = f"{wire.channel} sid {wire.sid}: expected seq {last + 1}, got {seq}"
        self._report(kind, message, recv_ns, state.conn, wire.sid, wire.channel)
        if wire.is_book:
            markets = set(wire.books) | set(wire.markets or ()) | wire.awaiting_snapshot
            self._clear_books(wire, kind, recv_ns, notify=True)
            self._request_snapshot(state, wire, sorted(markets), recv_ns)

    def _request_snapshot(
        self, state: Connection, wire: WireSubscription, markets: list[str], recv_ns: int
    ) -> None:
        new = [m for m in markets if m not in wire.awaiting_snapshot]
        if not new and wire.resync_cmd_id is not None:
            return  # one resync in flight covers it
        wire.awaiting_snapshot.update(markets)
        self.stats.resyncs += 1
        assert wire.sid is not None
        self.outbox.append(
            ResyncRequested(
                state.conn, wire.sid, wire.channel, tuple(markets), "get_snapshot", recv_ns
            )
        )
        params = {"sids": [wire.sid], "action": "get_snapshot", "market_tickers": markets}
        self._command(state, "update_subscription", params, "resync", wire)

    def _fallback_resubscribe(
        self, state: Connection, wire: WireSubscription, recv_ns: int
    ) -> None:
        """get_snapshot failed or timed out: unsubscribe and subscribe again (fresh snapshot).

        Not for a subscription the server ended meanwhile (error 25, `unsubscribed`): its
        owner was already ended or subscribed again, and a second subscribe would record
        the channel twice.
        """
        owner = wire.owner
        if owner is None or not owner.active or wire.sid is None:
            return
        if state.sids.get(wire.sid) is not wire:
            return
        self.stats.resyncs += 1
        markets = tuple(sorted(wire.markets or ()))
        self.outbox.append(
            ResyncRequested(state.conn, wire.sid, wire.channel, markets, "resubscribe", recv_ns)
        )
        self._command(state, "unsubscribe", {"sids": [wire.sid]}, "fallback")
        self._subscribe(state, owner, "resubscribe")

    def _check_resync_timeout(
        self, state: Connection, wire: WireSubscription, recv_ns: int, mono_ns: int
    ) -> None:
        since = wire.resync_since_ns
        if since is not None and mono_ns - since >= int(self.config.resync_timeout_s * NS):
            wire.resync_since_ns = None
            message = f"no snapshot for sid {wire.sid} after get_snapshot"
            self._report("resync_timeout", message, recv_ns, state.conn, wire.sid, wire.channel)
            self._fallback_resubscribe(state, wire, recv_ns)
