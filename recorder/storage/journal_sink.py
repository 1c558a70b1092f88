"""The recorder's sink: every frame, command, event and checkpoint into the journal.

This module owns the step from a live session's `Sink` calls to journal records:
it derives the routing columns (channel, type, sid, seq, market) and appends.
Called from the receive loop before the engine sees the frame (write first,
interpret second), so it must stay cheap: one decode and a buffered append, no
syscall. The decode is the engine's own hot-path one (`stream.decode`), returned
to the caller so the engine does not decode the frame again; channel resolution
is `schemas.record.ColumnDeriver`'s. A frame that does not parse is stored under
`_unknown`, bytes intact, and a `frame_rejected` event says why. Every record keeps
the feed the session hands with it (a checkpoint: its group's), 0 for a session of
one feed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from recorder.storage.journal import JournalWriter
from schemas.channels import Channel, channel_of_type
from schemas.envelope import encode_json
from schemas.events import ConnectionEvent, FrameRejected
from schemas.record import ColumnDeriver, Dir, Event
from stream.decode import (
    DECODE_ERRORS,
    FRAME_TAGS,
    DeltaFrame,
    SnapshotFrame,
    SubscribedFrame,
    decode_frame,
)
from stream.events import BinaryMessage, Checkpoint

__all__ = ["JournalSink"]

#: Decoded frame class -> its channel, where the type alone decides it (the others,
#: `event_lifecycle` and control replies among them, ask the sid's ack).
_CHANNEL_OF: dict[type[Any], str] = {
    kind: channel
    for kind, type_ in FRAME_TAGS.items()
    if type_ != "event_lifecycle"
    and (channel := channel_of_type(type_)) not in (Channel.UNKNOWN, Channel.CONTROL)
}


class JournalSink:
    """A `recorder.link.sink.Sink` that appends to a `JournalWriter`.

    Attributes:
        per_channel: records appended per channel (for progress and metrics).
        last_idx: idx of the newest record appended.
        rejected: inbound frames that did not parse (stored under `_unknown`).
    """

    def __init__(self, journal: JournalWriter) -> None:
        self.journal = journal
        self._deriver = ColumnDeriver()
        self.per_channel: Counter[str] = Counter()
        self.bytes_in = 0
        self.last_idx = -1
        self.rejected = 0

    def frame_in(self, conn: int, recv_ns: int, mono_ns: int, raw: bytes, feed: int = 0) -> Any:
        """Journal a received frame of feed `feed`; return its hot-path decode for the
        engine (or None).

        A `stream.BinaryMessage` is journaled with the binary opcode."""
        try:
            frame = decode_frame(raw)
        except DECODE_ERRORS:
            self._frame_in_slow(conn, recv_ns, mono_ns, raw, feed)
            return None
        kind = type(frame)
        type_ = FRAME_TAGS[kind]
        market = None
        if kind is SubscribedFrame:
            sid, seq = frame.msg.sid, None
            self._deriver.bind(conn, sid, frame.msg.channel)
            channel = Channel.CONTROL
        else:
            sid, seq = frame.sid, frame.seq
            channel = _CHANNEL_OF.get(kind) or self._deriver.channel_for(conn, type_, sid)
            if kind is DeltaFrame or kind is SnapshotFrame:
                market = frame.msg.market_ticker
            elif channel != Channel.CONTROL:
                msg = frame.msg
                if msg is not None and type(msg) is not list:
                    market = msg.market_ticker if msg.market_ticker is not None else msg.ticker
        self.last_idx = self.journal.append(
            conn, recv_ns, mono_ns, "in", channel, type_, sid, seq, market, raw,
            type(raw) is BinaryMessage, feed,
        )  # fmt: skip
        self.per_channel[channel] += 1
        self.bytes_in += len(raw)
        return frame

    def _frame_in_slow(self, conn: int, recv_ns: int, mono_ns: int, raw: bytes, feed: int) -> None:
        """A frame the hot-path decoder rejects: the generic derivation, with its reason."""
        d = self._deriver.derive(Dir.IN, raw, conn)
        idx = self.journal.append(
            conn, recv_ns, mono_ns, Dir.IN, d.channel, d.type, d.sid, d.seq, d.market_ticker, raw,
            type(raw) is BinaryMessage, feed,
        )  # fmt: skip
        self.per_channel[d.channel] += 1
        self.bytes_in += len(raw)
        self.last_idx = idx
        if d.error is not None:
            self.rejected += 1
            detail = FrameRejected(idx=idx, reason=d.error).to_bytes()
            self.last_idx = self.journal.append(
                conn, recv_ns, mono_ns, Dir.EVENT, Channel.SESSION, Event.FRAME_REJECTED,
                None, None, None, detail, False, feed,
            )  # fmt: skip

    def command_out(self, conn: int, recv_ns: int, mono_ns: int, raw: bytes, feed: int = 0) -> None:
        d = self._deriver.derive(Dir.OUT, raw, conn)
        self.last_idx = self.journal.append(
            conn, recv_ns, mono_ns, Dir.OUT, d.channel, d.type, d.sid, d.seq, None, raw,
            feed=feed,
        )  # fmt: skip
        self.per_channel[d.channel] += 1

    def event(
        self, conn: int, recv_ns: int, mono_ns: int, event: ConnectionEvent, feed: int = 0
    ) -> None:
        raw = event.to_bytes()
        self._deriver.derive(Dir.EVENT, raw, conn)  # an open or close resets the sid map
        self.last_idx = self.journal.append(
            conn, recv_ns, mono_ns, Dir.EVENT, Channel.SESSION, event.name, None, None, None, raw,
            feed=feed,
        )  # fmt: skip
        self.per_channel[Channel.SESSION] += 1

    def checkpoint(self, output: Checkpoint) -> None:
        """A checkpoint's feed is its group's (a live session's group ids are its feeds)."""
        self.last_idx = self.journal.append(
            output.conn, output.recv_ns, output.mono_ns, Dir.EVENT, Channel.CHECKPOINT,
            "checkpoint", None, None, None, encode_json(output.record), feed=output.group,
        )  # fmt: skip
        self.per_channel[Channel.CHECKPOINT] += 1
