"""Hot-path decode of server frames into small msgspec Structs.

The engine routes every frame and maintains books, so it decodes each frame once,
into a Struct tagged on `type` that holds only what routing and books need: sid,
seq, id, the market, and for book frames the levels as exact Decimals. Payloads
of other types are not built here; consumers who want the full pydantic model get
it from `schemas.parse` at delivery (docs/performance.md section 4.1).

Legacy integer-cent book fields (docs/protocol.md section 8.14) are read here
too and normalised to dollars exactly (cents scaled by 10^-2, never through float).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from schemas.channels import CHANNEL_TYPES

__all__ = [
    "DATA_TYPES",
    "DECODE_ERRORS",
    "FRAME_TAGS",
    "Ack",
    "Command",
    "DataFrame",
    "DeltaBody",
    "DeltaFrame",
    "ErrorBody",
    "ErrorFrame",
    "Head",
    "OkFrame",
    "SnapshotBody",
    "SnapshotFrame",
    "SubscribedFrame",
    "UnsubscribedFrame",
    "decode_command",
    "decode_frame",
    "delta_fields",
    "msg_bytes",
    "snapshot_levels",
]

Levels = list[tuple[Decimal, Decimal]]

#: What `decode_frame` raises for a bad frame. Besides its own errors, msgspec raises
#: UnicodeDecodeError for invalid UTF-8 in a string it reads and RecursionError for
#: nesting beyond the recursion limit: bad frames, never bugs. Every caller catches all.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    msgspec.ValidationError,
    msgspec.DecodeError,
    UnicodeDecodeError,
    RecursionError,
)


class SnapshotBody(msgspec.Struct, gc=False):
    market_ticker: str
    clock: int | None = None
    yes_dollars_fp: Levels | None = (
        None  # a side's key is absent when it is empty (docs/protocol.md section 9.20)
    )
    no_dollars_fp: Levels | None = None
    yes: Levels | None = None  # legacy: [[cents, count], ...]
    no: Levels | None = None


class DeltaBody(msgspec.Struct, gc=False):
    market_ticker: str
    side: str
    clock: int | None = None
    price_dollars: Decimal | None = None
    delta_fp: Decimal | None = None
    price: Decimal | None = None  # legacy cents
    delta: Decimal | None = None  # legacy count


class Head(msgspec.Struct, gc=False):
    market_ticker: str | None = None
    ticker: str | None = None  # user_order


class Ack(msgspec.Struct, gc=False):
    channel: str
    sid: int


class ErrorBody(msgspec.Struct, gc=False):
    code: int | None = None
    msg: str | None = None


class SnapshotFrame(msgspec.Struct, tag="orderbook_snapshot", tag_field="type", gc=False):
    sid: int
    msg: SnapshotBody
    seq: int | None = None
    id: int | None = None


class DeltaFrame(msgspec.Struct, tag="orderbook_delta", tag_field="type", gc=False):
    sid: int
    msg: DeltaBody
    seq: int | None = None
    id: int | None = None


class SubscribedFrame(msgspec.Struct, tag="subscribed", tag_field="type", gc=False):
    msg: Ack
    id: int | None = None


class UnsubscribedFrame(msgspec.Struct, tag="unsubscribed", tag_field="type", gc=False):
    sid: int
    seq: int | None = None
    id: int | None = None


class OkFrame(msgspec.Struct, tag="ok", tag_field="type", gc=False):
    id: int | None = None
    sid: int | None = None
    seq: int | None = None
    msg: Any = None  # an object (market lists, filters) or, for list_subscriptions, an array


class ErrorFrame(msgspec.Struct, tag="error", tag_field="type", gc=False):
    msg: ErrorBody
    id: int | None = None
    sid: int | None = None
    seq: int | None = None


class DataFrame(msgspec.Struct, gc=False):
    """Base of the generated structs of every other data type (the tag names the type)."""

    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    msg: Head | list[Any] | None = None


def _data_structs() -> dict[str, type[Any]]:
    """One Struct per data type other than the book ones, tagged with the type name."""
    structs: dict[str, type[Any]] = {}
    for types in CHANNEL_TYPES.values():
        for type_ in types:
            if type_ in ("orderbook_snapshot", "orderbook_delta") or type_ in structs:
                continue
            name = "".join(part.title() for part in type_.split("_")) + "Frame"
            structs[type_] = msgspec.defstruct(
                name, [], bases=(DataFrame,), tag=type_, tag_field="type"
            )
    return structs


_DATA = _data_structs()
_DATA_STRUCTS = list(_DATA.values())
#: Every data (non-control) type the decoder knows.
DATA_TYPES: frozenset[str] = frozenset({"orderbook_snapshot", "orderbook_delta", *_DATA})


def _build_decoder() -> msgspec.json.Decoder[Any]:
    members: tuple[type[Any], ...] = (
        SnapshotFrame,
        DeltaFrame,
        SubscribedFrame,
        UnsubscribedFrame,
        OkFrame,
        ErrorFrame,
        *_DATA_STRUCTS,
    )
    union: Any = members[0]
    for member in members[1:]:
        union = union | member
    return msgspec.json.Decoder(union, strict=False)


_frame_decoder = _build_decoder()


#: Struct class -> the wire `type` it decodes (its tag).
FRAME_TAGS: dict[type[Any], str] = {
    SnapshotFrame: "orderbook_snapshot",
    DeltaFrame: "orderbook_delta",
    SubscribedFrame: "subscribed",
    UnsubscribedFrame: "unsubscribed",
    OkFrame: "ok",
    ErrorFrame: "error",
    **{cls: type_ for type_, cls in _DATA.items()},
}


def decode_frame(raw: bytes | bytearray | memoryview) -> Any:
    """Decode one server frame into its hot-path Struct.

    Raises:
        msgspec.ValidationError: a known type with a bad or missing routing field, or
            an unknown type (the caller falls back to `schemas.decode_envelope`).
        msgspec.DecodeError: not JSON.
        UnicodeDecodeError: invalid UTF-8 in a string the decoder reads.
        RecursionError: nesting deeper than the interpreter's recursion limit.
    """
    return _frame_decoder.decode(raw)


def snapshot_levels(body: SnapshotBody) -> tuple[Levels, Levels]:
    """YES and NO bid levels of a snapshot in dollars, from the current or legacy fields."""
    yes = body.yes_dollars_fp
    no = body.no_dollars_fp
    if yes is None and body.yes is not None:
        yes = [(p.scaleb(-2), q) for p, q in body.yes]
    if no is None and body.no is not None:
        no = [(p.scaleb(-2), q) for p, q in body.no]
    return yes or [], no or []


def delta_fields(body: DeltaBody) -> tuple[bool, Decimal, Decimal]:
    """(is_yes, price in dollars, signed delta) of a delta, from current or legacy fields.

    Raises:
        ValueError: the side is not yes/no, or the price or delta is missing.
    """
    side = body.side
    if side != "yes" and side != "no":
        raise ValueError(f"orderbook_delta.msg.side: expected 'yes' or 'no', got {side!r}")
    price = body.price_dollars
    if price is None:
        if body.price is None:
            raise ValueError("orderbook_delta.msg.price_dollars: field required")
        price = body.price.scaleb(-2)
    delta = body.delta_fp
    if delta is None:
        delta = body.delta
        if delta is None:
            raise ValueError("orderbook_delta.msg.delta_fp: field required")
    return side == "yes", price, delta


class _MsgOnly(msgspec.Struct, gc=False):
    msg: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b""))


_msg_decoder = msgspec.json.Decoder(_MsgOnly)


def msg_bytes(raw: bytes) -> bytes:
    """The exact bytes of a frame's `msg` payload (for de-duplicating across connections)."""
    return bytes(_msg_decoder.decode(raw).msg)


class Command(msgspec.Struct, gc=False):
    cmd: str
    id: int | None = None
    params: dict[str, Any] = {}


_command_decoder = msgspec.json.Decoder(Command, strict=False)


def decode_command(raw: bytes | bytearray | memoryview) -> Command:
    """Decode a command we sent (live) or that a capture recorded (replay).

    Raises:
        msgspec.ValidationError / msgspec.DecodeError: not a command.
    """
    return _command_decoder.decode(raw)
