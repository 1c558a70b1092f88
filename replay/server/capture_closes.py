"""Where a capture's frames sit in time, and which recorded disconnects a client should meet.

This module owns two facts the replay server needs about a capture beyond its
frames. Time: a delivered frame's merge key (`replay.reading.capture.merge_key`: its
run's first receive time plus the monotonic time elapsed), so frames of several
runs pace on one axis and a wall-clock step inside a run changes nothing.
Disconnects: the recorded `close` events of `_session` that happened TO the
recorder (reactive: the server closed, the network failed, a ping timed out, a
protocol error, a stale feed), never the ones it chose (planned rotations,
scheduled reconnects, shutdown), with their close code and reason, so a server
can close its clients at the same points. It reads the `_session` partition with
`replay.reading.bulk` and knows nothing of sockets or subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from replay.reading.bulk import iter_frames
from replay.reading.capture import Capture

# The replay session numbers the connections of its i-th run (sorted by run id) from
# i * this; a frame's run follows from its `conn`. (Private to replay.reading.session; see
# the report: a public `Frame` run or key would be better.)
from replay.reading.session import CONN_STRIDE
from schemas.channels import Channel
from schemas.events import Closed, EventError, event_from_bytes
from schemas.record import Event

__all__ = ["REACTIVE_REASONS", "RecordedClose", "RunClock", "is_reactive", "recorded_closes"]

#: Disconnect reasons that happened to the recorder (recorder.link.policies.DisconnectReason's
#: reactive values, less `killed`, which a user asked for to test a client).
REACTIVE_REASONS: Final = frozenset(
    {"server_closed", "network_error", "ping_timeout", "protocol_error", "stale"}
)


@dataclass(frozen=True, slots=True)
class RecordedClose:
    """One recorded reactive disconnect.

    Attributes:
        key_ns: its merge key (where it sits among the frames).
        code: the recorded close code; None or 1006 mean no close frame.
        reason: the recorded close reason text.
        disconnect_reason: why the recorder lost the connection.
    """

    key_ns: int
    code: int | None
    reason: str
    disconnect_reason: str


def is_reactive(close: Closed) -> bool:
    """True for a close the recorder did not choose (initiator "server", or a reactive
    disconnect reason); False for its own rotations, schedules and shutdowns."""
    if close.initiator == "server":
        return True
    return close.disconnect_reason.lower() in REACTIVE_REASONS


class RunClock:
    """Merge keys of delivered frames, from their run's anchors."""

    def __init__(self, capture: Capture) -> None:
        self._anchors = [capture.anchors(run) for run in sorted(capture.runs)]
        self._by_run = dict(zip(sorted(capture.runs), self._anchors, strict=True))

    def key(self, conn: int, mono_ns: int) -> int:
        """The merge key of a frame delivered on replay connection `conn` at `mono_ns`."""
        index = min(conn // CONN_STRIDE, len(self._anchors) - 1)
        anchor_recv, anchor_mono = self._anchors[index]
        return anchor_recv + mono_ns - anchor_mono

    def run_key(self, run_id: str, mono_ns: int) -> int:
        anchor_recv, anchor_mono = self._by_run[run_id]
        return anchor_recv + mono_ns - anchor_mono


def recorded_closes(
    capture: Capture, clock: RunClock, start_ns: int | None, end_ns: int | None
) -> list[RecordedClose]:
    """The capture's reactive closes with keys in [start_ns, end_ns), in key order."""
    if Channel.SESSION not in capture.channels:
        return []
    out: list[RecordedClose] = []
    for record in iter_frames(capture, channels=[Channel.SESSION]):
        if record.type != Event.CLOSE:
            continue
        try:
            close = event_from_bytes(record.raw)
        except EventError:
            continue
        if not isinstance(close, Closed) or not is_reactive(close):
            continue
        key = clock.run_key(record.run_id, record.mono_ns)
        if (start_ns is not None and key < start_ns) or (end_ns is not None and key >= end_ns):
            continue
        out.append(RecordedClose(key, close.code, close.reason, close.disconnect_reason))
    out.sort(key=lambda c: c.key_ns)
    return out
