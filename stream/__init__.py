"""What frames MEAN: sequence, books, subscriptions, queues and the one Session API.

Pure: nothing here touches a socket or a file or reads a clock. `Engine` is the
sans-I/O state machine; `Session` is the consumer API written once over a
`Source`, which the live edge (`recorder`) and the historical edge (`replay`)
each implement.
"""

from stream.book import BookSnapshot, Level, OrderBook
from stream.core import EngineConfig, EngineStats
from stream.engine import Engine
from stream.errors import (
    BackpressureError,
    IllegalTransition,
    NotSubscribed,
    ServerError,
    SessionClosed,
    StreamError,
    SubscribeTimeout,
    SubscriptionError,
    SubscriptionTerminated,
)
from stream.events import (
    BinaryMessage,
    Checkpoint,
    CloseConnection,
    CommandReply,
    ErrorReport,
    Fatal,
    Frame,
    GapDetected,
    Output,
    ResyncRequested,
    SendCommand,
    StateChanged,
    SubscribeResult,
    Switched,
)
from stream.queues import DeliveryQueue, Overflow
from stream.session import Session, Source, Subscription
from stream.state import ConnectionState
from stream.subscriptions import ConsumerSubscription, Delivery, WireSubscription

__all__ = [
    "BackpressureError",
    "BinaryMessage",
    "BookSnapshot",
    "Checkpoint",
    "CloseConnection",
    "CommandReply",
    "ConnectionState",
    "ConsumerSubscription",
    "Delivery",
    "DeliveryQueue",
    "Engine",
    "EngineConfig",
    "EngineStats",
    "ErrorReport",
    "Fatal",
    "Frame",
    "GapDetected",
    "IllegalTransition",
    "Level",
    "NotSubscribed",
    "OrderBook",
    "Output",
    "Overflow",
    "ResyncRequested",
    "SendCommand",
    "ServerError",
    "Session",
    "SessionClosed",
    "Source",
    "StateChanged",
    "StreamError",
    "SubscribeResult",
    "SubscribeTimeout",
    "Subscription",
    "SubscriptionError",
    "SubscriptionTerminated",
    "Switched",
    "WireSubscription",
]
