"""Exceptions of the `recorder` package.

    RecorderError                 anything this package raises on its own account
    ├── JournalError              the journal cannot be used as asked
    │   ├── JournalLockedError    another process holds the journal directory
    │   ├── JournalClosedError    append() after close()
    │   └── SegmentFormatError    a file is not a journal segment this version reads
    ├── PublishError              a sealed segment could not be turned into Parquet
    ├── CompactionError           a partition could not be compacted or pruned
    └── LiveError                 the live connection cannot go on (ends the session's iterators)
        ├── PermanentClose        the server closed with a code that forbids reconnecting
        ├── HandshakeRejected     the server refused the upgrade with an HTTP status
        │   └── AuthenticationFailed  HTTP 401 / 403: the key id or the signature was refused
        └── ReconnectGaveUp       the last allowed reconnect attempt failed (carries the last error)

Disk-full and write errors during capture are not exceptions: the journal keeps
frames in memory, counts what it drops and records a `capture_gap` event
(docs/architecture.md section 4). Exceptions here are for callers that asked for
something impossible, or for a job (publish, compaction) that the caller retries.
The `LiveError`s end a live session: its iterators raise them and `on_error` gets
them; single disconnects and failed attempts are events, never exceptions.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "CompactionError",
    "HandshakeRejected",
    "JournalClosedError",
    "JournalError",
    "JournalLockedError",
    "LiveError",
    "PermanentClose",
    "PublishError",
    "ReconnectGaveUp",
    "RecorderError",
    "SegmentFormatError",
]


class RecorderError(Exception):
    """Base class of every error raised by `recorder`."""


class JournalError(RecorderError):
    """The journal cannot be used as asked."""


class JournalLockedError(JournalError):
    """Another process holds the journal directory's lock file.

    Attributes:
        journal_dir: the directory.
        holder: what the lock file says about its holder (a pid), or "".
    """

    def __init__(self, journal_dir: str, holder: str) -> None:
        self.journal_dir = journal_dir
        self.holder = holder
        who = f" (held by pid {holder})" if holder else ""
        super().__init__(
            f"journal directory {journal_dir} is in use by another recorder{who}: "
            "stop it, or give this recorder its own journal directory"
        )


class JournalClosedError(JournalError):
    """A frame was appended after the writer was closed."""


class SegmentFormatError(JournalError):
    """A file is not a journal segment, or is of a format version this code cannot read."""


class PublishError(RecorderError):
    """A sealed segment could not be published; the segment is kept for a retry.

    Attributes:
        segment: path of the segment.
    """

    def __init__(self, segment: str, problem: str) -> None:
        self.segment = segment
        super().__init__(f"cannot publish journal segment {segment}: {problem}")


class CompactionError(RecorderError):
    """A partition could not be compacted or removed; nothing visible was changed."""


class LiveError(RecorderError):
    """The live connection cannot go on; the session ends with this error."""


class PermanentClose(LiveError):
    """The server closed with a code that forbids reconnecting (docs/protocol.md section 9.6).

    Attributes:
        code: the close code received (1002, 1003, 1007-1010, 4000-4999).
        reason: the close reason the server gave.
    """

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(
            f"the server closed the connection with code {code} ({reason or 'no reason'}); "
            "this code means reconnecting will not help, so the session stopped"
        )


class HandshakeRejected(LiveError):
    """The server answered the WebSocket upgrade with an HTTP error status.

    Attributes:
        status: the HTTP status code.
        url: the URL that refused us.
    """

    def __init__(self, status: int, url: str, hint: str = "") -> None:
        self.status = status
        self.url = url
        text = f"{url} refused the WebSocket upgrade with HTTP {status}"
        super().__init__(f"{text}: {hint}" if hint else text)


class AuthenticationFailed(HandshakeRejected):
    """HTTP 401 or 403 on the upgrade: the key id, the key or the clock is wrong."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(
            status,
            url,
            "check the key id, that the private key matches the key registered with Kalshi, "
            "and that this machine's clock is correct (the signed timestamp must be fresh)",
        )


class ReconnectGaveUp(LiveError):
    """The last allowed reconnect attempt failed; no more attempts will be made.

    Attributes:
        attempts: handshake attempts made since the last stable connection.
        last_error: the error of the last attempt or the last disconnect.
    """

    def __init__(self, attempts: int, last_error: BaseException | str | None) -> None:
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(
            f"gave up after {attempts} connection attempts; last error: {last_error}. "
            "Raise max_reconnect_attempts, or check the URL, the network and the server"
        )
