"""Exceptions of the `schemas` package.

    SchemaError                  anything this package rejects
    ├── EnvelopeError            a frame is not a JSON object with a `type` (or `cmd`)
    ├── MessageError             a frame has a type but its content is wrong
    │   ├── UnknownMessageType   the `type` is not one docs/protocol.md section 8 lists
    │   └── MessageValidationError  a field is missing or has a bad value
    ├── PartitionError           a channel or date that cannot name a partition
    └── ConfigError              a config value or command-line argument is wrong

    OperationalError             the environment stops a command (carries its exit status)
    ├── PortInUse                a port to listen on is taken or refused (exit 3)
    ├── StorageUnavailable       a capture root or journal cannot be reached or written (exit 4)
    ├── DamagedFile              a capture file cannot be read (exit 5)
    ├── PermissionDenied         the process may not read or write a path (exit 6)
    └── QueryLimit               a query reached its time or memory limit (exit 7)

Every message names what was wrong and where (`trade.msg.count_fp: ...`), so a
report or a log line tells the reader which field of which type to look at.
`ConfigError` exits 2 from the command line; each `OperationalError` has its own
exit status (`EXIT_CODES`), so a supervisor can tell a taken port from a damaged
file without reading the message.
"""

from __future__ import annotations

import errno
from typing import Final

__all__ = [
    "EXIT_CODES",
    "ConfigError",
    "DamagedFile",
    "EnvelopeError",
    "MessageError",
    "MessageValidationError",
    "OperationalError",
    "PartitionError",
    "PermissionDenied",
    "PortInUse",
    "QueryLimit",
    "SchemaError",
    "StorageUnavailable",
    "UnknownMessageType",
    "storage_error",
]


class SchemaError(ValueError):
    """Base class of every error raised by `schemas`."""


class EnvelopeError(SchemaError):
    """The frame is not a JSON object with a string `type` or `cmd`."""


class MessageError(SchemaError):
    """The frame has a type, but it does not match the model of that type."""

    def __init__(self, message: str, *, type_: str | None = None) -> None:
        super().__init__(message)
        self.type = type_


class UnknownMessageType(MessageError):
    """The frame's `type` is not a message type of the protocol."""


class MessageValidationError(MessageError):
    """A field of a known message type is missing or has a bad value.

    Attributes:
        type: the message type.
        errors: (field path, reason) pairs, the field path dotted from the frame root
            (`msg.count_fp`, `msg.yes_dollars_fp.3.0`).
    """

    def __init__(self, type_: str, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        detail = "; ".join(f"{type_}.{path}: {reason}" for path, reason in errors)
        super().__init__(f"invalid {type_} message: {detail}", type_=type_)


class PartitionError(SchemaError):
    """A channel outside the fixed list, or a bad date, was asked to name a partition."""


class ConfigError(SchemaError):
    """A configuration value or command-line argument is invalid.

    The message names the field (`record.fsync_interval_ms`, `--shard`) and says
    how to fix it. The command line prints it and exits with status 2.
    """

    def __init__(self, field: str, problem: str, fix: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        text = f"{field}: {problem}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class OperationalError(Exception):
    """The machine, not the input, stops a command: one line, and a distinct exit status.

    Attributes:
        exit_code: the command's exit status (see `EXIT_CODES`).
        problem, fix: what happened (naming the path, port or file) and what to do.
    """

    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} ({fix})" if fix else problem)


class PortInUse(OperationalError):
    """A port to listen on is taken by another process, or may not be bound."""

    exit_code = 3


class StorageUnavailable(OperationalError):
    """A capture root or journal directory cannot be reached, created or written."""

    exit_code = 4


class DamagedFile(OperationalError):
    """A capture file cannot be read (truncated, not Parquet, wrong schema)."""

    exit_code = 5


class PermissionDenied(OperationalError):
    """The process may not read or write a path it needs."""

    exit_code = 6


class QueryLimit(OperationalError):
    """A query ran past its time limit or needed more memory than its limit allows."""

    exit_code = 7


#: Every exit status of `kalshi-tape`, for the docs and for supervisors.
EXIT_CODES: Final[dict[int, str]] = {
    0: "success",
    1: "the run failed (a connection that failed for good; verify found corruption)",
    2: "a bad flag, config value or missing credentials (usage)",
    PortInUse.exit_code: "a port to listen on is in use or refused",
    StorageUnavailable.exit_code: "storage cannot be reached or written",
    DamagedFile.exit_code: "a damaged capture file",
    PermissionDenied.exit_code: "permission denied on a path",
    QueryLimit.exit_code: "a query reached its --timeout or --memory-limit",
    130: "interrupted (Ctrl+C)",
    143: "terminated (SIGTERM)",
}


_PERMISSION_ERRNOS: Final = frozenset({errno.EACCES, errno.EPERM})


def storage_error(exc: OSError, doing: str) -> OperationalError:
    """The one-line error for an `OSError` met while `doing` something with storage.

    `doing` names the action and the path ("cannot create the journal directory
    /var/lib/kt/journal"). A refused permission is `PermissionDenied`; anything else
    (read-only or full filesystem, a mount that is gone, a network error) is
    `StorageUnavailable`.
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in _PERMISSION_ERRNOS or isinstance(exc, PermissionError):
        return PermissionDenied(
            f"{doing}: {reason}", "run as a user who may write there, or choose another path"
        )
    return StorageUnavailable(f"{doing}: {reason}", "check that the disk or mount is there, "
                              "writable and has free space")  # fmt: skip
