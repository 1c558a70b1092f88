"""The cheap envelope decode: type, sid, seq, id and market ticker of a raw frame.

Hot paths (the recorder's write path, the engine's routing, pruning columns) need
only these few fields. msgspec decodes them without building the payload, skipping
everything else in C. Full typed models live in `schemas.messages`.

The envelope is tolerant by design: numbers given as strings are coerced, unknown
fields are ignored, and anything that is not a JSON object raises `EnvelopeError`
with a reason, so the caller can store the frame under `_unknown` and report it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.errors import EnvelopeError

__all__ = ["Envelope", "ack_channel_sid", "decode_envelope", "encode_json"]


class _Head(msgspec.Struct, gc=False):
    market_ticker: str | None = None
    ticker: str | None = None  # user_order names its market `ticker` (docs/protocol.md section 8.6)


class _Wire(msgspec.Struct, gc=False):
    type: str | None = None
    cmd: str | None = None
    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    msg: _Head | list[msgspec.Raw] | None = None


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """What routing needs to know about a frame.

    Attributes:
        type: the message type, or the command name for a frame we sent (`cmd`).
        sid: server subscription id, top level (the `subscribed` ack keeps it in
            `msg.sid`; see `ack_sid`).
        seq: per-subscription sequence number, when present.
        id: the command id echoed by the server, or chosen by us in a command.
        market_ticker: the market the frame is about, when it names exactly one.
        is_command: True for a client command (`{"id", "cmd", "params"}`).
    """

    type: str
    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    market_ticker: str | None = None
    is_command: bool = False


_decoder = msgspec.json.Decoder(_Wire, strict=False)
_encoder = msgspec.json.Encoder()


class _Ack(msgspec.Struct, gc=False):
    channel: str | None = None
    sid: int | None = None


class _AckWire(msgspec.Struct, gc=False):
    msg: _Ack | None = None


_ack_decoder = msgspec.json.Decoder(_AckWire, strict=False)


def decode_envelope(raw: bytes | bytearray | memoryview | str) -> Envelope:
    """Decode the envelope of one frame.

    Raises:
        EnvelopeError: the frame is not a JSON object with a string `type` or `cmd`;
            the message says why (invalid JSON, wrong type of a field...).
    """
    try:
        wire = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise EnvelopeError(f"invalid envelope: {exc}") from None
    except msgspec.DecodeError as exc:
        raise EnvelopeError(f"not JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec's error for invalid UTF-8 in a string it reads
        raise EnvelopeError(f"not UTF-8: {exc}") from None
    except RecursionError:  # nesting deeper than the interpreter's recursion limit
        raise EnvelopeError("not JSON this decoder can read: nested too deeply") from None
    if wire.cmd is not None:
        return Envelope(wire.cmd, wire.sid, wire.seq, wire.id, None, True)
    if wire.type is None:
        raise EnvelopeError("invalid envelope: no `type` field")
    market = None
    msg = wire.msg
    if isinstance(msg, _Head):
        market = msg.market_ticker if msg.market_ticker is not None else msg.ticker
    return Envelope(wire.type, wire.sid, wire.seq, wire.id, market, False)


def ack_channel_sid(raw: bytes | bytearray | memoryview | str) -> tuple[str, int] | None:
    """Return (channel, sid) of a `subscribed` ack, or None if the frame lacks them."""
    try:
        ack = _ack_decoder.decode(raw).msg
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if ack is None or ack.channel is None or ack.sid is None:
        return None
    return ack.channel, ack.sid


def encode_json(obj: Any) -> bytes:
    """Encode a command or an event detail as compact JSON bytes."""
    return _encoder.encode(obj)
