"""Statistics of a live session: connections, disconnects by kind, traffic, gaps.

This module owns the counters the connection manager updates and the figures
derived from them. Every update is handed the time (wall ns and monotonic ns),
so nothing here reads a clock and the numbers are exact in tests; durations use
the monotonic clock, timestamps the wall clock. Bytes are counted as bytes (the
frame as received or sent), never as characters. Per-channel counts come from
the envelope `type` of each frame, found by a byte search (no JSON parse).
It knows nothing of sockets or of the engine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import MISSING, dataclass, field, fields

from recorder.link.policies import DisconnectReason
from schemas.channels import channel_of_type

__all__ = ["LiveStats", "frame_type"]

_NS = 1_000_000_000
_TYPE_KEY = b'"type":"'


def frame_type(raw: bytes) -> bytes:
    """The envelope `type` of a frame as bytes (b"" if none), by byte search.

    Kalshi puts `type` first in every envelope, so the first `"type":"` is the
    envelope's; a frame that does not parse still gets counted (as its bytes say).
    """
    start = raw.find(_TYPE_KEY)
    if start < 0:
        return b""
    start += len(_TYPE_KEY)
    end = raw.find(b'"', start)
    return raw[start:end] if end > 0 else b""


@dataclass(slots=True)
class LiveStats:
    """Counters of one `LiveSession` (kept across its runs until `reset`).

    Attributes:
        attempts, failed_attempts: handshakes started, and refused or timed out.
        connects: connections opened (standbys included).
        disconnects, proactive_disconnects, reactive_disconnects: connections ended.
        disconnects_by_reason: DisconnectReason -> count.
        rotations: make-before-break switches completed.
        arbitrations: markets moved between redundant feeds (`recorder.link.feeds`).
        messages_received, bytes_received, messages_sent, bytes_sent: traffic.
        types_received: envelope type (bytes) -> frames (see `per_channel`).
        gaps, resets, resyncs: sequence breaks and snapshot requests (engine outputs).
        stale: subscriptions judged stale.
        last_connect_ns, last_disconnect_ns, last_message_ns: wall-clock times (0: never).
        last_close_code: the code of the last connection end (None: no code).
    """

    started_mono_ns: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    connects: int = 0
    disconnects: int = 0
    proactive_disconnects: int = 0
    reactive_disconnects: int = 0
    disconnects_by_reason: Counter[DisconnectReason] = field(default_factory=Counter)
    rotations: int = 0
    arbitrations: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    types_received: Counter[bytes] = field(default_factory=Counter)
    gaps: int = 0
    resets: int = 0
    resyncs: int = 0
    stale: int = 0
    last_connect_ns: int = 0
    last_disconnect_ns: int = 0
    last_message_ns: int = 0
    last_close_code: int | None = None
    connected_mono_ns: int | None = None  # when the active connection opened

    def reset(self, mono_ns: int) -> None:
        """Zero everything; uptime counts from `mono_ns`."""
        connected = self.connected_mono_ns
        for spec in fields(self):
            factory = spec.default_factory
            setattr(self, spec.name, factory() if factory is not MISSING else spec.default)
        self.started_mono_ns = mono_ns
        self.connected_mono_ns = connected

    # ------------------------------------------------------------------ updates

    def attempt(self) -> None:
        self.attempts += 1

    def attempt_failed(self) -> None:
        self.failed_attempts += 1

    def connected(self, recv_ns: int, mono_ns: int, *, active: bool) -> None:
        self.connects += 1
        self.last_connect_ns = recv_ns
        if active:
            self.connected_mono_ns = mono_ns

    def active_changed(self, opened_mono_ns: int | None) -> None:
        """The active connection is now one opened at `opened_mono_ns` (None: none)."""
        self.connected_mono_ns = opened_mono_ns

    def disconnected(self, reason: DisconnectReason, code: int | None, recv_ns: int) -> None:
        self.disconnects += 1
        if reason.is_proactive:
            self.proactive_disconnects += 1
        else:
            self.reactive_disconnects += 1
        self.disconnects_by_reason[reason] += 1
        self.last_disconnect_ns = recv_ns
        self.last_close_code = code

    def received(self, raw: bytes, recv_ns: int) -> None:
        """One frame in (the receive loop inlines this for speed; keep them equal)."""
        self.messages_received += 1
        self.bytes_received += len(raw)
        self.last_message_ns = recv_ns
        self.types_received[frame_type(raw)] += 1

    def sent(self, raw: bytes, recv_ns: int) -> None:
        self.messages_sent += 1
        self.bytes_sent += len(raw)
        self.last_message_ns = recv_ns

    # ------------------------------------------------------------------ derived

    def uptime_s(self, mono_ns: int) -> float:
        """Seconds since the session object was created (or reset)."""
        return max(0.0, (mono_ns - self.started_mono_ns) / _NS)

    def connection_duration_s(self, mono_ns: int) -> float:
        """Seconds the active connection has been open; 0.0 when not connected."""
        if self.connected_mono_ns is None:
            return 0.0
        return max(0.0, (mono_ns - self.connected_mono_ns) / _NS)

    @property
    def per_channel(self) -> dict[str, int]:
        """Frames received per channel (`_control` for acks and replies, `_unknown` else)."""
        out: Counter[str] = Counter()
        for type_, count in self.types_received.items():
            out[channel_of_type(type_.decode("utf-8", "replace"))] += count
        return dict(out)
