"""The exchange's own record of what it did, for tests to compare a client against.

This module owns the truth: per connection, every frame sent (a digest, its type,
sid and seq) and every fault injected; and, on request, every market's true book.
It keeps it in memory (for in-process tests) and/or appends it to an NDJSON file
(for tests that run the server as a subprocess). One JSON object per line:

    {"kind": "conn", "conn": 1, "event": "open" | "close", ...}
    {"kind": "sent", "conn": 1, "n": 17, "digest": "9f...", "type": "orderbook_delta",
     "sid": 1, "seq": 16}
    {"kind": "fault", "conn": 1, "fault": "gap", "sid": 1, "seq": 40}
    {"kind": "book", "market_ticker": "...", "clock": 912,
     "yes": [["0.4500", "12.00"], ...], "no": [...]}

`n` counts frames sent on the connection from 1; a frame a fault withheld (gap)
has a `fault` line and no `sent` line. It knows nothing of sockets or markets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from replay.server.tape import BookView
from schemas.envelope import decode_envelope, encode_json
from schemas.errors import EnvelopeError

__all__ = ["SentFrame", "Truth", "frame_digest"]


def frame_digest(frame: bytes) -> str:
    """The digest the truth uses for a frame (blake2b, 8 bytes, hex)."""
    return hashlib.blake2b(frame, digest_size=8).hexdigest()


@dataclass(frozen=True)
class SentFrame:
    """One frame as the exchange sent it on a connection."""

    n: int
    digest: str
    type: str | None
    sid: int | None
    seq: int | None


class Truth:
    """Frames sent, faults injected and true books, in memory and/or in a file.

    Args:
        path: NDJSON file to write (truncated at start), or None.
        keep: keep the records in memory for `frames`, `seqs` and `faults`.
    """

    def __init__(self, path: Path | None, *, keep: bool = True) -> None:
        self._file: IO[bytes] | None = path.open("wb") if path is not None else None
        self._keep = keep
        self._sent: dict[int, list[SentFrame]] = {}
        self._faults: list[dict[str, Any]] = []
        self._counts: dict[int, int] = {}

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(encode_json(record) + b"\n")

    def connection(self, conn_no: int, event: str, **detail: Any) -> None:
        """A connection opened or closed (detail: close code, reason, auth)."""
        self._write({"kind": "conn", "conn": conn_no, "event": event, **detail})

    def sent(self, conn_no: int, frame: bytes) -> None:
        """A frame left for the client."""
        n = self._counts.get(conn_no, 0) + 1
        self._counts[conn_no] = n
        type_: str | None = None
        sid: int | None = None
        seq: int | None = None
        try:
            env = decode_envelope(frame)
            type_, sid, seq = env.type, env.sid, env.seq
        except EnvelopeError:
            pass  # a malformed frame (a fault): recorded by digest only
        if type_ == "subscribed":
            sid = None  # the ack's sid is inside msg; it carries no seq
        digest = frame_digest(frame)
        if self._keep:
            self._sent.setdefault(conn_no, []).append(SentFrame(n, digest, type_, sid, seq))
        self._write(
            {
                "kind": "sent",
                "conn": conn_no,
                "n": n,
                "digest": digest,
                "type": type_,
                "sid": sid,
                "seq": seq,
            }
        )

    def fault(self, conn_no: int, fault: str, **detail: Any) -> None:
        """A fault was injected on a connection."""
        record = {"kind": "fault", "conn": conn_no, "fault": fault, **detail}
        if self._keep:
            self._faults.append(record)
        self._write(record)

    def books(self, views: Iterable[BookView]) -> None:
        """Write every market's true book now (file only; in memory, ask the tape)."""
        for view in views:
            self._write(
                {
                    "kind": "book",
                    "market_ticker": view.market_ticker,
                    "clock": view.clock,
                    "yes": [list(level) for level in view.yes],
                    "no": [list(level) for level in view.no],
                }
            )
        self.flush()

    def frames(self, conn_no: int) -> list[SentFrame]:
        """Frames sent on connection `conn_no`, in order (needs keep=True)."""
        return list(self._sent.get(conn_no, ()))

    def seqs(self, conn_no: int) -> dict[int, list[int]]:
        """sid -> seqs sent on it, in order, for connection `conn_no`."""
        out: dict[int, list[int]] = {}
        for frame in self._sent.get(conn_no, ()):
            if (
                frame.sid is not None
                and frame.seq is not None
                and frame.type not in ("ok", "error", "unsubscribed")
            ):
                out.setdefault(frame.sid, []).append(frame.seq)
        return out

    def faults(self, conn_no: int | None = None) -> list[dict[str, Any]]:
        """Faults injected (on one connection, or all)."""
        return [f for f in self._faults if conn_no is None or f["conn"] == conn_no]

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
