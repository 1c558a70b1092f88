"""What a frame and a Kalshi message ARE: names, envelopes, message models, the capture record.

Data only: nothing here reads a clock, a socket or a file. `schemas.arrow` (the
Arrow schema) is the one module that imports pyarrow; it is not imported here, so
`stream` can use this package without loading any I/O library.
"""

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
from schemas.record import (
    COLUMNS,
    CaptureRecord,
    ColumnDeriver,
    Derived,
    Dir,
    Event,
    event_raw,
    partition_dir,
    partition_file,
)

__all__ = [
    "ALL_CHANNELS",
    "BOOK_CHANNELS",
    "CHANNEL_TYPES",
    "COLUMNS",
    "COMMANDS",
    "CONTROL_TYPES",
    "SEQUENCED_CHANNELS",
    "SEQUENCED_TYPES",
    "TYPE_TO_CHANNEL",
    "WIRE_CHANNELS",
    "CaptureRecord",
    "ConfigError",
    "Channel",
    "ColumnDeriver",
    "Derived",
    "Dir",
    "Envelope",
    "EnvelopeError",
    "Event",
    "MessageError",
    "MessageValidationError",
    "PartitionError",
    "SchemaError",
    "UnknownMessageType",
    "ack_channel_sid",
    "channel_of_type",
    "decode_envelope",
    "encode_json",
    "event_raw",
    "partition_dir",
    "partition_file",
]
