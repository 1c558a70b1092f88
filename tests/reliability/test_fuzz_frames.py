"""Bad frames: fuzzed into the engine, the recorder's write path and a live socket.

Hypothesis builds frames of every bad kind the wire can carry: random bytes, invalid
UTF-8 inside the fields routing reads, deep nesting, huge numbers, wrong types,
missing fields, unknown types, and valid frames (the golden corpus and frames on the
subscribed sids) mutated. They go (a) into `stream.Engine` with owning and attached
consumers on subscribed sids, (b) through `JournalSink` into a real journal published
to Parquet, and (c) over a real loopback WebSocket, as text and as binary frames, into
a `LiveSession` writing to a `JournalSink`. Nothing may raise, every frame must come
back byte-exact, and every rejection must carry a reason.

Bad configs and command lines are in test_bad_cli.py.

`KT_FUZZ_EXAMPLES` scales the example counts (small by default). Which frames count
as rejected follows the recorder's rule: neither the engine's decode nor the envelope
decode reads them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve

from recorder.link.live import LiveSession
from recorder.storage.journal import JournalWriter
from recorder.storage.journal_sink import JournalSink
from recorder.storage.publisher import Publisher
from schemas.channels import ALL_CHANNELS
from schemas.envelope import decode_envelope
from schemas.errors import EnvelopeError
from schemas.events import FrameRejected, event_from_bytes
from stream import Delivery, DeliveryQueue, ErrorReport, Overflow
from stream.decode import DECODE_ERRORS, decode_frame
from tests.recorder.helpers import published
from tests.schemas.corpus import load_cases
from tests.stream.harness import Driver, wire

__all__ = ["bad_frames", "record_through_the_journal"]

pytestmark = pytest.mark.timeout(300)
RUN = "20260101T000000Z-0000f00d"
BASE_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
SCALE = float(os.environ.get("KT_FUZZ_EXAMPLES", "1"))
SUBSCRIBED_SIDS = (1, 2, 3)  # trade, orderbook_delta (KX-A), ticker
#: A ticker subscription no fuzzed frame names: no strategy draws (or coerces to) it.
CANARY_SID = 987_654_321


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


# ---------------------------------------------------------------- strategies

GOLDEN = [json.loads(case.raw) for case in load_cases() if case.raw.lstrip().startswith("{")]
ON_SUBSCRIBED = [
    json.loads(raw)
    for raw in (
        wire.trade(1, 2, "KX-A"),
        wire.delta(2, 2, "KX-A", "0.4000", "5.00"),
        wire.snapshot(2, 2, "KX-A"),
        wire.ticker(3, "KX-A"),
        wire.ok(7, {"market_tickers": ["KX-A"]}, sid=2, seq=3),
        wire.error(10, "Channel error", sid=1),
        wire.unsubscribed(1, 3),
        wire.ack(5, "trade", 4),
    )
]
SEEDS = GOLDEN + ON_SUBSCRIBED
KNOWN_TYPES = sorted({str(f["type"]) for f in SEEDS if isinstance(f.get("type"), str)})
INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82", b"\x80abc",
                b"\xf8\x88\x80\x80\x80", b"\xc0\xaf"]  # fmt: skip
HUGE_NUMBERS = [b"1" + b"0" * 30, b"-" + b"9" * 400, b"1e400", b"-1e400", b"1e-400", b"-0",
                b"18446744073709551616", b"9223372036854775808", b"NaN", b"Infinity",
                b"1.7976931348623157e309", b"0." + b"0" * 500 + b"1"]  # fmt: skip
MARK = "\u2063mark\u2063"  # a placeholder replaced at the byte level after encoding

sids = st.one_of(
    st.sampled_from(SUBSCRIBED_SIDS),
    st.integers(-(2**70), 2**70),
    st.none(),
    st.text(max_size=5),
)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)


json_values = st.recursive(json_leaves, _containers, max_leaves=10)


def _encode(frame: Any) -> bytes:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()


def _paths(frame: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(container, key) of every field of the frame and of its `msg` object."""
    out = [(frame, k) for k in frame]
    msg = frame.get("msg")
    if isinstance(msg, dict):
        out += [(msg, k) for k in msg]
    return out


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with 1-3 mutations: a field dropped, a wrong type, an unknown type,
    a sid or seq out of range; then maybe a byte-level one (invalid UTF-8 in a string,
    a number no decoder holds, deep nesting, a cut)."""
    frame = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        places = _paths(frame)
        op = draw(st.sampled_from(["drop", "retype", "type", "sid", "seq", "add"]))
        if op in ("drop", "retype") and places:
            holder, key = draw(st.sampled_from(places))
            if op == "drop":
                del holder[key]
            else:
                holder[key] = draw(json_values)
        elif op == "type":
            frame["type"] = draw(st.sampled_from(KNOWN_TYPES) | st.text(max_size=10) | json_values)
        elif op in ("sid", "seq"):
            frame[op] = draw(sids)
        else:
            frame[draw(st.text(max_size=6))] = draw(json_values)
    places = _paths(frame)
    byte_op = draw(st.sampled_from(["none", "utf8", "number", "nest", "cut"]))
    if byte_op == "none" or not places:
        return _encode(frame)
    holder, key = draw(st.sampled_from(places))
    holder[key] = MARK
    before, after = _encode(frame).split(_encode(MARK), 1)
    if byte_op == "utf8":
        text = draw(st.text(max_size=6)).encode()
        bad = draw(st.sampled_from(INVALID_UTF8))
        return before + b'"' + text + bad + text + b'"' + after
    if byte_op == "number":
        return before + draw(st.sampled_from(HUGE_NUMBERS)) + after
    if byte_op == "nest":
        depth = draw(st.integers(1, 3000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return before + opener * depth + b"1" + closer * depth + after
    whole = before + b"null" + after
    return whole[: draw(st.integers(0, len(whole)))]


@st.composite
def deeply_nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(500, 5000))
    where = draw(st.sampled_from(["top", "msg", "unknown_field"]))
    nest = b"[" * depth + b"]" * depth
    if where == "top":
        return nest
    if where == "msg":
        return b'{"type":"trade","sid":1,"seq":2,"msg":' + nest + b"}"
    return b'{"type":"ticker","sid":3,"x":' + nest + b',"msg":{"market_ticker":"KX-A"}}'


@st.composite
def invalid_utf8_in_routing_fields(draw: st.DrawFn) -> bytes:
    bad = draw(st.sampled_from(INVALID_UTF8))
    field = draw(st.sampled_from(["market_ticker", "ticker", "type", "channel", "note"]))
    if field == "type":
        return b'{"type":"tr' + bad + b'de","sid":1,"seq":2,"msg":{}}'
    if field == "channel":
        return b'{"id":5,"type":"subscribed","msg":{"channel":"tr' + bad + b'","sid":4}}'
    return b'{"type":"trade","sid":1,"seq":2,"msg":{"' + field.encode() + b'":"KX' + bad + b'"}}'


ENVELOPE_KEYS = ["type", "sid", "seq", "id", "msg", "cmd"]
#: Every kind of bad frame, and valid frames among them (mutations may leave one valid).
bad_frames = st.one_of(
    st.binary(max_size=200),
    json_values.map(_encode),
    st.dictionaries(st.sampled_from(ENVELOPE_KEYS), json_values).map(_encode),
    deeply_nested(),
    invalid_utf8_in_routing_fields(),
    mutated_frames(),
    mutated_frames(),
    mutated_frames(),
)
frame_lists = st.lists(bad_frames, min_size=1, max_size=25)

NASTY = [
    b'{"type":"trade","sid":1,"seq":2,"msg":' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"type":"trade","sid":1,"seq":2,"msg":{"market_ticker":"KX\xff\xfe"}}',
    b'{"type":"ticker","sid":3,"msg":{"market_ticker":"\xed\xa0\x80"}}',
    b'{"type":"orderbook_delta","sid":2,"seq":2,"msg":{"market_ticker":"KX-A","side":"yes",'
    b'"price_dollars":"1e400","delta_fp":' + b"9" * 400 + b"}}",
    b"\xff\xfe not json \x80",
]


def envelope_error(raw: bytes) -> str | None:
    """Why the envelope decode (`schemas.envelope`) rejects a frame (None: it parses)."""
    try:
        decode_envelope(raw)
    except EnvelopeError as exc:
        return str(exc)
    return None


def rejection(raw: bytes) -> str | None:
    """Why the recorder rejects a frame: neither the engine's decode (which the sink
    tries first) nor the envelope decode reads it; None if one does."""
    try:
        decode_frame(raw)
    except DECODE_ERRORS:
        return envelope_error(raw)
    return None


# ---------------------------------------------------------------- (a) the engine


class Subscribed:
    """An engine on one connection with four acked subscriptions and an attached consumer."""

    def __init__(self) -> None:
        d = self.d = Driver()
        d.open(1)

        def owning(channel: str, params: dict[str, Any], delivery: Delivery) -> DeliveryQueue:
            queue = DeliveryQueue(100_000, Overflow.DROP_OLDEST)
            d.engine.add_consumer(channel, params, owns_wire=True, delivery=delivery, queue=queue)
            d.flush()
            return queue

        self.queues = [
            owning("trade", {}, Delivery.FRAME),
            owning("orderbook_delta", {"market_tickers": ["KX-A"]}, Delivery.BOOK),
            owning("ticker", {}, Delivery.FRAME),
        ]
        self.canary = owning("ticker", {}, Delivery.FRAME)
        attached = DeliveryQueue(100_000, Overflow.DROP_OLDEST)
        d.engine.add_consumer("trade", {}, owns_wire=False, delivery=Delivery.FRAME,
                              queue=attached)  # fmt: skip
        self.queues.append(attached)
        acks = dict(zip(["trade", "orderbook_delta", "ticker", "canary"],
                        [*SUBSCRIBED_SIDS, CANARY_SID], strict=True))  # fmt: skip
        commands = [cmd for _, cmd in d.take_sent()]
        for cmd, name in zip(commands, acks, strict=True):
            channel = cmd["params"]["channels"][0]
            d.recv(wire.ack(cmd["id"], channel, acks[name]))
        d.recv(wire.snapshot(2, 1, "KX-A"))
        d.outputs.clear()

    def feed(self, raw: bytes) -> None:
        d, stats = self.d, self.d.engine.stats
        before = (stats.malformed + stats.unknown_types, len(d.outputs))
        sizes = [len(q) for q in self.queues]
        d.recv(raw)  # must not raise, whatever raw is
        d.take_sent()
        reports = [o for o in d.outputs[before[1] :] if isinstance(o, ErrorReport)]
        rejections = [r for r in reports if r.kind in ("malformed", "unknown_type")]
        assert stats.malformed + stats.unknown_types - before[0] == len(rejections), reports
        for report in rejections:
            assert report.raw == raw, report
            assert report.message.strip(), report  # the reason
        if any(r.kind == "malformed" for r in rejections):
            assert [len(q) for q in self.queues] == sizes, "a rejected frame was delivered"


@settings(max_examples=examples(300), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(frame_lists)
@example(NASTY)
def test_no_frame_makes_the_engine_raise_and_every_rejection_has_a_reason(
    frames: list[bytes],
) -> None:
    engine = Subscribed()
    for raw in frames:
        engine.feed(raw)
    # The engine is not wedged: a good frame on an untouched subscription still arrives.
    before = len(engine.canary)
    engine.d.recv(wire.ticker(CANARY_SID, "KX-C"))
    assert len(engine.canary) == before + 1


UNREADABLE = [NASTY[0], NASTY[1], NASTY[2], NASTY[4]]


@pytest.mark.parametrize("raw", UNREADABLE, ids=["deep", "utf8_ticker", "surrogate", "bytes"])
def test_frames_no_decoder_can_read_are_rejected_as_malformed_with_the_reason(raw: bytes) -> None:
    engine = Subscribed()
    engine.feed(raw)
    (report,) = [o for o in engine.d.outputs if isinstance(o, ErrorReport)]
    assert report.kind == "malformed" and report.raw == raw
    assert report.message == envelope_error(raw)


def test_a_huge_price_and_delta_are_exact_decimals_not_an_error() -> None:
    engine = Subscribed()
    engine.feed(NASTY[3])
    assert not [o for o in engine.d.outputs if isinstance(o, ErrorReport)]
    book = engine.d.engine.book("KX-A")
    assert book is not None and book.seq == 2 and Decimal("1e400") in dict(book.yes)


DIVERGENT = {
    # The envelope decode (`schemas.envelope`) rejects these (a `cmd` that is not a
    # string; a number where `msg.market_ticker` should be) while the engine acts on
    # them (delivers the trade; completes the subscribe). Filed under _unknown, which a
    # replay never reads, they would make live and replay differ: the recorder must
    # file them where the engine's decode puts them.
    "cmd_not_a_string": b'{"cmd":5,"type":"trade","sid":1,"seq":2,"msg":{"market_ticker":"KX-A"}}',
    "ack_with_a_numeric_market": b'{"id":41,"type":"subscribed","msg":{"channel":"trade",'
    b'"sid":4,"market_ticker":5}}',
}


def engine_acts_on(raw: bytes) -> bool:
    """Whether the engine delivers the frame, or (an ack) routes its sid's data after it."""
    d = Driver()
    d.open(1)
    queue = DeliveryQueue(1000, Overflow.DROP_OLDEST)
    d.engine.add_consumer("trade", {}, owns_wire=True, delivery=Delivery.FRAME, queue=queue)
    d.flush()
    ((_, cmd),) = d.take_sent()
    if b'"subscribed"' in raw:
        d.recv(raw.replace(b'"id":41', b'"id":%d' % cmd["id"]))
        d.recv(wire.trade(4, 1, "KX-A"))
    else:
        d.recv(wire.ack(cmd["id"], "trade", 1))
        d.recv(wire.trade(1, 1, "KX-A"))
        queue.drain(10)
        d.recv(raw)
    return len(queue) > 0


@pytest.mark.parametrize("raw", DIVERGENT.values(), ids=DIVERGENT.keys())
def test_a_frame_the_engine_acts_on_is_filed_where_a_replay_reads_it(
    raw: bytes, tmp_path: Path
) -> None:
    assert envelope_error(raw) is not None  # the slow, strict decode rejects it
    assert engine_acts_on(raw)
    (row,) = [r for r in record_through_the_journal([raw], tmp_path) if r["dir"] == "in"]
    assert row["channel"] in ("trade", "_control")  # not _unknown


# ---------------------------------------------------------------- (b) the write path

PARTITION = re.compile(r"^channel=(?P<channel>[^/]+)/date=\d{4}-\d{2}-\d{2}/[^/]+\.parquet$")


def record_through_the_journal(frames: list[bytes], workdir: Path) -> list[dict[str, Any]]:
    """Append frames through a JournalSink, close, publish; the rows in idx order."""
    journal_dir, root = workdir / "journal", workdir / "root"
    journal = JournalWriter(journal_dir, RUN, commit_interval_s=0.005)
    sink = JournalSink(journal)
    for i, raw in enumerate(frames):
        sink.frame_in(1, BASE_NS + i * 1000, time.monotonic_ns(), raw)
    stats = journal.close()
    assert stats.frames_dropped == 0
    Publisher(journal_dir, root).publish_pending()
    for path in root.rglob("*"):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            match = PARTITION.match(rel)
            assert match and match["channel"] in ALL_CHANNELS, rel
    return published(root, ["dir", "channel", "type", "raw"]).to_pylist()


def check_stored(frames: list[bytes], rows: list[dict[str, Any]]) -> None:
    inbound = [r for r in rows if r["dir"] == "in"]
    assert [r["raw"] for r in inbound] == frames  # every frame, byte-exact, in order
    rejected = {}
    for r in rows:
        if r["type"] == "frame_rejected":
            event = event_from_bytes(r["raw"])
            assert isinstance(event, FrameRejected)
            rejected[event.idx] = event.reason
    for r in inbound:
        reason = rejection(r["raw"])
        if reason is None:
            assert r["idx"] not in rejected
        else:
            assert (r["channel"], r["type"]) == ("_unknown", "_malformed")
            assert rejected[r["idx"]] == reason and reason.strip()
    assert len(rejected) == sum(rejection(f) is not None for f in frames)


@settings(max_examples=examples(30), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(frame_lists)
@example(NASTY)
def test_the_write_path_stores_every_frame_byte_exact_and_names_each_rejection(
    frames: list[bytes],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        check_stored(frames, record_through_the_journal(frames, Path(tmp)))


# ---------------------------------------------------------------- (c) over a live socket


async def _serve_and_record(frames: list[tuple[bytes, bool]], workdir: Path) -> dict[str, Any]:
    """A loopback server that acks one trade subscribe (sid 1) and sends `frames`, each
    as text or binary; a LiveSession records them through a JournalSink."""
    handshakes = 0
    ack_bytes = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal handshakes, ack_bytes
        handshakes += 1
        command = json.loads(await ws.recv())
        ack = wire.ack(command["id"], "trade", 1)
        ack_bytes += len(ack)
        await ws.send(ack.decode())
        if handshakes == 1:
            for raw, as_text in frames:
                await ws.send(raw, text=as_text)
        await ws.wait_closed()

    journal = JournalWriter(workdir / "journal", RUN, commit_interval_s=0.005)
    sink = JournalSink(journal)
    errors: list[ErrorReport] = []
    expected_bytes = sum(len(raw) for raw, _ in frames)
    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        live = LiveSession(f"ws://127.0.0.1:{port}/trade-api/ws/v2", sink=sink,
                           on_error=errors.append, close_timeout_s=0.5)  # fmt: skip
        async with live.connect() as session:
            await session.subscribe_trade(raw=True)
            deadline = time.monotonic() + 20
            while sink.bytes_in < expected_bytes + ack_bytes and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
        stats = live.stats
    journal.close()
    Publisher(workdir / "journal", workdir / "root").publish_pending()
    return {"handshakes": handshakes, "errors": errors, "stats": stats}


@settings(max_examples=examples(8), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(st.lists(st.tuples(bad_frames, st.booleans()), min_size=1, max_size=25))
@example([(raw, True) for raw in NASTY])
def test_a_live_socket_survives_every_bad_frame_and_stores_each_byte_exact(
    frames: list[tuple[bytes, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        seen = asyncio.run(_serve_and_record(frames, workdir))
        rows = published(workdir / "root", ["dir", "channel", "type", "raw"]).to_pylist()
    assert seen["handshakes"] == 1, "the socket was dropped and reconnected"
    stats = seen["stats"]
    assert stats.reactive_disconnects == 0 and stats.connects == 1
    kinds = {e.kind for e in seen["errors"] if isinstance(e, ErrorReport)}
    assert not kinds & {"sink_error", "internal_error", "connection_lost"}, seen["errors"]
    inbound = [r["raw"] for r in rows if r["dir"] == "in"]
    sent = [raw for raw, _ in frames]
    assert inbound[1:] == sent  # after the ack: every frame, byte-exact, in order
    check_stored(inbound, rows)
