"""Exceptions of the `schemas` package.

    SchemaError                  anything this package rejects
    ├── EnvelopeError            a frame is not a JSON object with a `type` (or `cmd`)
    ├── MessageError             a frame has a type but its content is wrong
    │   ├── UnknownMessageType   the `type` is not one PROTOCOL.md lists
    │   └── MessageValidationError  a field is missing or has a bad value
    ├── PartitionError           a channel or date that cannot name a partition
    └── ConfigError              a config value or command-line argument is wrong

Every message names what was wrong and where (`trade.msg.count_fp: ...`), so a
report or a log line tells the reader which field of which type to look at.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EnvelopeError",
    "MessageError",
    "MessageValidationError",
    "PartitionError",
    "SchemaError",
    "UnknownMessageType",
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
