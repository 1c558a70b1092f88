"""Hot-path decode of server frames into small msgspec Structs.

The engine routes every frame and maintains books, so it decodes each frame once,
into a Struct tagged on `type` that holds only what routing and books need: sid,
seq, id, the market, and for book frames the levels as the wire's text. Payloads
of other types are not built here; consumers who want the full pydantic model get
it from `schemas.parse` at delivery (docs/performance.md section 4.1).

Book numbers become exact integers in the wire's units (`stream.fixed`):
`delta_units` and `snapshot_units` read the current fields or the legacy
integer-cent ones (docs/protocol.md section 8.14). A number sent as a JSON
number rather than a string (which the hot decoder refuses) is re-read by
`decode_book_exact` with every number kept as its text, so it is exact too.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.channels import CHANNEL_TYPES
from stream.fixed import (
    PRICE_DIGITS,
    SIZE_DIGITS,
    Units,
    price_memo,
    price_units,
    size_memo,
    size_units,
    units,
)

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
    "decode_book_exact",
    "decode_command",
    "decode_frame",
    "delta_units",
    "msg_bytes",
    "snapshot_units",
]

#: A number as the wire sends it: a decimal string (the current form) or an integer.
Num = str | int
Levels = list[tuple[Num, Num]]
Ladder = dict[Units, Units]

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
    market_id: str | None = None  # kept on the book: frames built from it carry it


class DeltaBody(msgspec.Struct, gc=False):
    market_ticker: str
    side: str
    clock: int | None = None
    price_dollars: Num | None = None
    delta_fp: Num | None = None
    price: Num | None = None  # legacy cents
    delta: Num | None = None  # legacy count


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


def snapshot_units(body: SnapshotBody) -> tuple[Ladder, Ladder, int]:
    """The YES and NO ladders of a snapshot in units (price -> size, sizes above zero),
    from the current or legacy fields, and how many of their values are finer than the
    unit (kept exact, as Decimals). A price listed twice keeps its last size.

    Raises:
        ValueError: a price or size is not a decimal number.
    """
    yes, no = body.yes_dollars_fp, body.no_dollars_fp
    if yes is None:
        yes_side, yes_finer = _legacy_levels([] if body.yes is None else body.yes)
    else:
        yes_side, yes_finer = _current_levels(yes)
    if no is None:
        no_side, no_finer = _legacy_levels([] if body.no is None else body.no)
    else:
        no_side, no_finer = _current_levels(no)
    return yes_side, no_side, yes_finer + no_finer


def _current_levels(levels: Levels) -> tuple[Ladder, int]:
    side: Ladder
    try:  # every value a memoised whole unit: one dict comprehension
        side = {price_memo[p]: size_memo[q] for p, q in levels}  # type: ignore[index]
    except (KeyError, TypeError):
        return _ladder([(price_units(p), size_units(q)) for p, q in levels])
    if side and min(side.values()) <= 0:
        side = {p: q for p, q in side.items() if q > 0}
    return side, 0


def _ladder(levels: list[tuple[Units, Units]]) -> tuple[Ladder, int]:
    """A ladder from levels in units (zero and negative sizes left out), and how many of
    the values are finer than the unit."""
    side = {p: q for p, q in levels}
    finer = sum((type(p) is not int) + (type(q) is not int) for p, q in side.items())
    return {p: q for p, q in side.items() if q > 0}, finer


def _legacy_levels(levels: Levels) -> tuple[Ladder, int]:
    """[[cents, count], ...] in units: cents are 1e-2 dollars, counts whole contracts."""
    return _ladder([(units(p, PRICE_DIGITS - 2), units(q, SIZE_DIGITS)) for p, q in levels])


def delta_units(body: DeltaBody) -> tuple[bool, Units, Units]:
    """(is_yes, price in 1e-4 dollars, signed delta in 1e-2 contracts) of a delta, from
    the current or legacy fields.

    Raises:
        ValueError: the side is not yes/no, a price or delta is missing, or one is not
            a decimal number.
    """
    side = body.side
    if side != "yes" and side != "no":
        raise ValueError(f"orderbook_delta.msg.side: expected 'yes' or 'no', got {side!r}")
    if body.price_dollars is not None:
        price = price_units(body.price_dollars)
    elif body.price is not None:
        price = units(body.price, PRICE_DIGITS - 2)
    else:
        raise ValueError("orderbook_delta.msg.price_dollars: field required")
    if body.delta_fp is not None:
        delta = size_units(body.delta_fp)
    elif body.delta is not None:
        delta = units(body.delta, SIZE_DIGITS)
    else:
        raise ValueError("orderbook_delta.msg.delta_fp: field required")
    return side == "yes", price, delta


# ---------------------------------------------------------------------- exact re-read

#: Book frames whose numbers came as JSON numbers: the same shapes with every number
#: kept as its raw JSON text, which `units` then reads exactly (never as a float).
_RawNum = msgspec.Raw


class _ExactSnapshotBody(msgspec.Struct, gc=False):
    market_ticker: str
    clock: int | None = None
    yes_dollars_fp: list[tuple[_RawNum, _RawNum]] | None = None
    no_dollars_fp: list[tuple[_RawNum, _RawNum]] | None = None
    yes: list[tuple[_RawNum, _RawNum]] | None = None
    no: list[tuple[_RawNum, _RawNum]] | None = None
    market_id: str | None = None


class _ExactDeltaBody(msgspec.Struct, gc=False):
    market_ticker: str
    side: str
    clock: int | None = None
    price_dollars: _RawNum = msgspec.field(default_factory=lambda: msgspec.Raw(b""))
    delta_fp: _RawNum = msgspec.field(default_factory=lambda: msgspec.Raw(b""))
    price: _RawNum = msgspec.field(default_factory=lambda: msgspec.Raw(b""))
    delta: _RawNum = msgspec.field(default_factory=lambda: msgspec.Raw(b""))


class _ExactSnapshot(msgspec.Struct, tag="orderbook_snapshot", tag_field="type", gc=False):
    sid: int
    msg: _ExactSnapshotBody
    seq: int | None = None
    id: int | None = None


class _ExactDelta(msgspec.Struct, tag="orderbook_delta", tag_field="type", gc=False):
    sid: int
    msg: _ExactDeltaBody
    seq: int | None = None
    id: int | None = None


_exact_decoder = msgspec.json.Decoder(_ExactSnapshot | _ExactDelta, strict=False)
_text_decoder = msgspec.json.Decoder(Num)


def _num(raw: msgspec.Raw) -> Num | None:
    """The text of a raw JSON number or string (None if absent or null)."""
    data = bytes(raw)
    if not data or data == b"null":
        return None
    if data[:1] == b'"':
        return _text_decoder.decode(data)
    return data.decode("ascii")  # a JSON number: its digits, as `units` reads them


def _levels(raw: list[tuple[msgspec.Raw, msgspec.Raw]] | None) -> Levels | None:
    if raw is None:
        return None
    out: Levels = []
    for p, q in raw:
        price, size = _num(p), _num(q)
        if price is None or size is None:
            raise msgspec.ValidationError("a book level holds null")
        out.append((price, size))
    return out


def decode_book_exact(raw: bytes | bytearray | memoryview) -> SnapshotFrame | DeltaFrame:
    """Decode a book frame the hot decoder refused because a number came as a JSON number.

    Returns the same Structs as `decode_frame`, with those numbers as their exact text.

    Raises:
        msgspec.ValidationError / msgspec.DecodeError (and the other DECODE_ERRORS):
            not a well-formed book frame either way.
    """
    frame = _exact_decoder.decode(raw)
    if isinstance(frame, _ExactDelta):
        body = frame.msg
        delta = DeltaBody(
            body.market_ticker, body.side, body.clock, _num(body.price_dollars),
            _num(body.delta_fp), _num(body.price), _num(body.delta),
        )  # fmt: skip
        return DeltaFrame(frame.sid, delta, frame.seq, frame.id)
    levels = frame.msg
    snapshot = SnapshotBody(
        levels.market_ticker, levels.clock, _levels(levels.yes_dollars_fp),
        _levels(levels.no_dollars_fp), _levels(levels.yes), _levels(levels.no),
        levels.market_id,
    )  # fmt: skip
    return SnapshotFrame(frame.sid, snapshot, frame.seq, frame.id)


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
