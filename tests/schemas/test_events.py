"""Typed connection events: exact bytes both ways, and the old captures' bytes still read."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replay.reading.bulk import iter_frames
from replay.reading.capture import Capture
from replay.sql.build import event_field
from schemas.events import (
    EVENT_CLASSES,
    Attempt,
    AttemptFailed,
    CaptureGap,
    Closed,
    ConnectionEvent,
    EventError,
    FrameRejected,
    Opened,
    ReconnectWait,
    RunStart,
    UnknownEvent,
    event_from_bytes,
)
from schemas.record import Event

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample"

_text = st.text(max_size=20)
_int = st.integers(-(2**53), 2**53)
_value = {
    str: _text,
    int: _int,
    float: st.floats(allow_nan=False, allow_infinity=False),
    bool: st.booleans(),
}


def _strategy(cls: type[ConnectionEvent]) -> st.SearchStrategy[ConnectionEvent]:
    """Any instance of an event class, drawn from its fields' types (`int | None`, ...)."""
    fields = {}
    for f in msgspec.structs.fields(cls):
        kinds = typing.get_args(f.type) or (f.type,)
        fields[f.name] = st.one_of(*(st.none() if k is type(None) else _value[k] for k in kinds))
    return st.builds(cls, **fields)


def test_every_event_name_has_a_class_and_each_class_its_name() -> None:
    assert set(EVENT_CLASSES) == set(Event)
    for name, cls in EVENT_CLASSES.items():
        assert cls.name == name
        assert cls.__struct_config__.tag == name.value


@given(st.one_of(*(_strategy(cls) for cls in EVENT_CLASSES.values())))
def test_every_event_reads_back_from_its_bytes_as_the_same_event(event: ConnectionEvent) -> None:
    raw = event.to_bytes()
    back = event_from_bytes(raw)
    assert back == event and type(back) is type(event)
    assert back.to_bytes() == raw
    assert json.loads(raw)["type"] == event.name.value


def test_the_bytes_are_the_name_then_the_fields_in_declaration_order() -> None:
    close = Closed(code=1011, reason="x", disconnect_reason="server_closed", initiator="server")
    assert close.to_bytes() == (
        b'{"type":"close","code":1011,"reason":"x","disconnect_reason":"server_closed",'
        b'"will_reconnect":true,"initiator":"server"}'
    )
    gap = CaptureGap(lost_frames=3, first_idx=7, last_idx=9, reason="disk full")
    assert list(json.loads(gap.to_bytes())) == [
        "type", "lost_frames", "lost_bytes", "first_idx", "last_idx", "reason",
    ]  # fmt: skip


def test_a_required_field_is_required() -> None:
    with pytest.raises(TypeError, match="code"):
        Closed()  # type: ignore[call-arg]
    with pytest.raises(EventError, match="open"):
        event_from_bytes(b'{"type":"open","standby":true}')  # no url


def test_an_older_writers_event_reads_with_defaults_and_extra_keys_ignored() -> None:
    # An early recorder wrote closes without will_reconnect or initiator, opens without
    # standby, errors without will_retry, and numbers as strings in places.
    assert event_from_bytes(
        b'{"type":"close","code":1006,"reason":"","disconnect_reason":"network"}'
    ) == Closed(code=1006, disconnect_reason="network")
    assert event_from_bytes(b'{"type":"open","url":"wss://x"}') == Opened(url="wss://x")
    assert event_from_bytes(b'{"type":"error","error":"boom"}') == AttemptFailed(error="boom")
    assert event_from_bytes(
        b'{"type":"reconnect_wait","delay_s":"0.5","attempt":"2","later":1}'
    ) == ReconnectWait(delay_s=0.5, attempt=2)
    assert event_from_bytes(
        b'{"type":"run_start","run_id":"r","version":"0.1.0","config":{"a":1}}'
    ) == RunStart(run_id="r", version="0.1.0")


def test_an_event_this_version_does_not_know_keeps_its_bytes() -> None:
    raw = b'{"type":"quota_warning","left":3}'
    event = event_from_bytes(raw)
    assert event == UnknownEvent("quota_warning", raw)
    assert event.to_bytes() == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object with a type"),
        (b'{"code": 1000}', "not a JSON object with a type"),
        (b'{"type":"close","code":"abc"}', "close: .*code"),
        (b'{"type":"frame_rejected","idx":1}', "frame_rejected: .*reason"),
    ],
)
def test_bytes_that_are_not_an_event_raise_an_event_error_naming_the_problem(
    raw: bytes, message: str
) -> None:
    with pytest.raises(EventError, match=message):
        event_from_bytes(raw)


def test_the_sample_capture_written_before_typed_events_reads_byte_for_byte() -> None:
    """examples/sample was recorded before the events had classes: each of its events
    reads as a known class, and writing that class back gives the stored bytes."""
    events = list(iter_frames(Capture(SAMPLE), channels=["_session"]))
    kinds = set()
    for record in events:
        event = event_from_bytes(record.raw)
        assert not isinstance(event, UnknownEvent), record.raw
        assert event.name == record.type
        assert event.to_bytes() == record.raw
        kinds.add(type(event))
    assert {Attempt, Opened, Closed, RunStart} <= kinds


def test_sql_names_event_fields_through_their_classes() -> None:
    assert event_field(Closed, "code", "INTEGER") == "TRY_CAST(d->>'code' AS INTEGER)"
    assert event_field(Opened, "standby", "BOOLEAN") == (
        "COALESCE(TRY_CAST(d->>'standby' AS BOOLEAN), false)"
    )  # the class's default, for an event written without the field
    assert event_field(Closed, "reason") == "COALESCE(d->>'reason', '')"
    assert event_field(FrameRejected, "idx", detail="detail") == "detail->>'idx'"
    with pytest.raises(AttributeError, match="Closed has no field 'status'"):
        event_field(Closed, "status")
