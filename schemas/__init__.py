"""What a frame and a Kalshi message ARE: names, envelopes, message models, the capture record.

The capture record's columns and partition layout (`schemas.record`), the typed
connection events a capture stores (`schemas.events`), the message models
(`schemas.parse`), the exact units of prices and sizes (`schemas.units`), and the
exceptions every layer raises (`schemas.errors`).

Data only: nothing here reads a clock, a socket or a file. `schemas.arrow` (the
Arrow schema) and `schemas.parquet` (the one writer of capture files' bytes, shared by
the recorder and `kalshi-tape merge`) are the modules that import pyarrow
(`schemas.storage` only inside its functions); neither is imported here, so `stream`
can use this package without loading any I/O library.
"""

from typing import TYPE_CHECKING

from schemas.channels import (
    ALL_CHANNELS,
    BOOK_CHANNELS,
    CHANNEL_TYPES,
    COMMANDS,
    CONTROL_TYPES,
    SEQUENCED_CHANNELS,
    SEQUENCED_TYPES,
    TYPE_TO_CHANNEL,
    WIRE_CHANNELS,
    Channel,
    channel_of_type,
)
from schemas.envelope import Envelope, ack_channel_sid, decode_envelope, encode_json
from schemas.errors import (
    ConfigError,
    EnvelopeError,
    MessageError,
    MessageValidationError,
    PartitionError,
    SchemaError,
    UnknownMessageType,
)
from schemas.events import (
    EVENT_CLASSES,
    ConnectionEvent,
    EventError,
    UnknownEvent,
    event_from_bytes,
)
from schemas.lazy import lazy_exports
from schemas.record import (
    COLUMNS,
    CaptureRecord,
    ColumnDeriver,
    Derived,
    Dir,
    Event,
    partition_dir,
    partition_file,
)

if TYPE_CHECKING:
    from schemas.parse import (
        COMMAND_MODELS,
        MESSAGE_MODELS,
        Command,
        Message,
        parse_command,
        parse_message,
    )

# The message models take 0.2-0.4 s to import (pydantic builds their validators): they
# load on first use of these names, so `import schemas` stays cheap for the engine.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        name: "schemas.parse"
        for name in (
            "COMMAND_MODELS",
            "MESSAGE_MODELS",
            "Command",
            "Message",
            "parse_command",
            "parse_message",
        )
    },
)

__all__ = [
    "ALL_CHANNELS",
    "BOOK_CHANNELS",
    "CHANNEL_TYPES",
    "COLUMNS",
    "COMMANDS",
    "COMMAND_MODELS",
    "CONTROL_TYPES",
    "EVENT_CLASSES",
    "MESSAGE_MODELS",
    "SEQUENCED_CHANNELS",
    "SEQUENCED_TYPES",
    "TYPE_TO_CHANNEL",
    "WIRE_CHANNELS",
    "CaptureRecord",
    "Channel",
    "ColumnDeriver",
    "Command",
    "ConfigError",
    "ConnectionEvent",
    "Derived",
    "Dir",
    "Envelope",
    "EnvelopeError",
    "Event",
    "EventError",
    "Message",
    "MessageError",
    "MessageValidationError",
    "PartitionError",
    "SchemaError",
    "UnknownEvent",
    "UnknownMessageType",
    "ack_channel_sid",
    "channel_of_type",
    "decode_envelope",
    "encode_json",
    "event_from_bytes",
    "parse_command",
    "parse_message",
    "partition_dir",
    "partition_file",
]
