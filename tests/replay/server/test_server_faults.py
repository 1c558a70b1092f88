"""Fault specs, their schedule, and every fault as a client observes it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from itertools import pairwise
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode

from replay.server import FaultKind, FaultSpec, Switches, parse_fault
from replay.server.faults import FaultScheduler, handshake_faults
from schemas.errors import ConfigError
from tests.replay.server.conftest import ExchangeClient, client, running

# -- the spec syntax and the scheduler (pure) ------------------------------------------------


def test_the_spec_syntax_parses_kind_argument_and_triggers() -> None:
    assert parse_fault("close:1011@every=5s") == FaultSpec(FaultKind.CLOSE, code=1011, every_s=5.0)
    assert parse_fault("gap@p=0.001") == FaultSpec(FaultKind.GAP, p=0.001)
    assert parse_fault("stall:3s@after=1000") == FaultSpec(
        FaultKind.STALL, duration_s=3.0, after_frames=1000
    )
    spec = parse_fault("drop@at=2s+750ms,conn=1+3,times=1")
    assert spec.at_s == (0.75, 2.0) and spec.conns == frozenset({1, 3}) and spec.times == 1
    assert parse_fault("reject:503@conn=1").status == 503
    assert parse_fault("slow_handshake").duration_s == 2.0
    assert parse_fault("gap@after=0,channel=orderbook_delta+trade").channels == frozenset(
        {"orderbook_delta", "trade"}
    )


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("explode@p=1", "unknown kind"),
        ("gap", "no trigger"),
        ("close:99@p=1", "close code"),
        ("gap@every=soon", "not a duration"),
        ("gap@p=2", "between 0 and 1"),
        ("gap@when=3", "unknown trigger"),
        ("gap:5@p=1", "takes no argument"),
        ("close@every=1s,channel=trade", "frame faults only"),
        ("gap@p=0.1,channel=orderbook", "unknown channel 'orderbook'"),
    ],
)
def test_a_bad_spec_is_a_config_error_naming_the_problem(text: str, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        parse_fault(text)


def test_every_fires_periodically_and_at_fires_once_per_time() -> None:
    sched = FaultScheduler(
        (parse_fault("close@every=2s"), parse_fault("drop@at=1s+3s")), 1, random.Random(0)
    )
    fired = [(t, [s.kind.value for s in sched.due(t)]) for t in (0.5, 1.0, 2.0, 3.5, 4.0, 9.0)]
    assert fired == [
        (0.5, []),
        (1.0, ["drop"]),
        (2.0, ["close"]),
        (3.5, ["drop"]),
        (4.0, ["close"]),
        (9.0, ["close"]),
    ]
    assert sched.next_due_s() == 10.0


def test_after_fires_once_and_times_bounds_the_probabilistic_faults() -> None:
    sched = FaultScheduler(
        (parse_fault("gap@after=3"), parse_fault("dup@p=1,times=2")), 1, random.Random(0)
    )
    kinds = [[s.kind.value for s in sched.on_frame(n)] for n in range(1, 6)]
    assert kinds == [["dup"], ["dup"], ["gap"], [], []]


def test_conn_limits_a_fault_to_some_connections() -> None:
    spec = parse_fault("reject@conn=2")
    rng = random.Random(0)
    assert [bool(handshake_faults((spec,), n, rng)) for n in (1, 2, 3)] == [False, True, False]
    assert not FaultScheduler((parse_fault("gap@p=1,conn=2"),), 1, rng).has_frame_triggers


# -- each fault, observed by a client --------------------------------------------------------


async def _book_client(server: Any, c: ExchangeClient) -> int:
    (sid,) = await c.subscribe(
        ["orderbook_delta"], market_tickers=list(server.tape.market_tickers())
    )
    for _ in range(10):
        await c.recv()
    return sid


async def _seqs_after(c: ExchangeClient, sid: int, count: int) -> list[int]:
    """The last seq read on `sid`, then the next `count - 1` seqs on it."""
    out = [c.data(sid)[-1]["seq"]] if c.data(sid) else []
    while len(out) < count:
        raw = await c.ws.recv(decode=False)
        frame = json.loads(raw)
        if frame.get("sid") == sid and "seq" in frame:
            out.append(frame["seq"])
    return out


async def _faulted_seq(server: Any, kind: str) -> int:
    """The seq of the frame the fault hit, once the exchange applied it: frames already
    sent before the injection may be many (the client reads behind the sender)."""
    async with asyncio.timeout(5):
        while not (faults := [f for f in server.truth.faults(1) if f["fault"] == kind]):
            await asyncio.sleep(0.005)
    return int(faults[0]["seq"])


async def _seqs_through(c: ExchangeClient, sid: int, last: int) -> list[int]:
    """The last seq read on `sid`, then every seq on it up to `last`."""
    out = [c.data(sid)[-1]["seq"]]
    while out[-1] < last:
        frame = json.loads(await c.ws.recv(decode=False))
        if frame.get("sid") == sid and "seq" in frame:
            out.append(frame["seq"])
    return out


@pytest.mark.parametrize("code", [1000, 1001, 1011, 1013, 4001])
async def test_close_with_a_given_code_reaches_the_client(code: int) -> None:
    async with running(rate_fps=500) as server, client(server) as c:
        await _book_client(server, c)
        server.inject("close", code=code)
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await c.ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == code


async def test_drop_ends_the_tcp_connection_without_a_close_frame() -> None:
    async with running(rate_fps=500) as server, client(server) as c:
        await _book_client(server, c)
        server.inject("drop")
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await c.ws.recv()
        assert info.value.rcvd is None  # 1006: no close frame came


async def test_gap_skips_one_seq() -> None:
    async with running(rate_fps=800) as server, client(server) as c:
        sid = await _book_client(server, c)
        server.inject("gap")
        dropped = await _faulted_seq(server, "gap")
        seqs = await _seqs_through(c, sid, dropped + 20)
        assert dropped not in seqs
        steps = [b - a for a, b in pairwise(seqs)]
        assert steps.count(2) == 1 and set(steps) == {1, 2}


async def test_a_frame_fault_narrowed_to_a_channel_waits_for_that_channel() -> None:
    """The exchange sends many more book frames than trades: a gap aimed at the trade
    channel still lands on a trade, one aimed at the book channel on a book frame."""
    async with running(rate_fps=800) as server, client(server) as c:
        await c.subscribe(["orderbook_delta", "trade"],
                          market_tickers=list(server.tape.market_tickers()))  # fmt: skip
        for channel in ("trade", "orderbook_delta", "trade", "trade", "orderbook_delta"):
            done = len(server.truth.faults(1))
            assert server.inject("gap", channel=channel) == 1
            async with asyncio.timeout(5):
                while len(server.truth.faults(1)) == done:
                    await c.recv()
            fault = server.truth.faults(1)[-1]
            want = ("trade",) if channel == "trade" else ("orderbook_delta", "orderbook_snapshot")
            assert fault["fault"] == "gap" and fault["type"] in want, fault


async def test_dup_sends_the_same_frame_twice() -> None:
    async with running(rate_fps=800) as server, client(server) as c:
        sid = await _book_client(server, c)
        server.inject("dup")
        twice = await _faulted_seq(server, "dup")
        raws: list[bytes] = []
        while not raws or json.loads(raws[-1]).get("seq", 0) < twice + 5:
            raws.append(await c.ws.recv(decode=False))
        dupes = [a for a, b in pairwise(raws) if a == b]
        assert len(dupes) == 1 and json.loads(dupes[0])["sid"] == sid


async def test_reorder_swaps_two_frames() -> None:
    async with running(rate_fps=3000) as server, client(server) as c:
        sid = await _book_client(server, c)
        server.inject("reorder")
        swapped = await _faulted_seq(server, "reorder")
        seqs = await _seqs_through(c, sid, swapped + 20)
        steps = [b - a for a, b in pairwise(seqs)]
        i = steps.index(-1)
        assert (
            steps.count(-1) == 1 and steps[i - 1 : i + 2] == [2, -1, 2] and set(steps) == {1, 2, -1}
        )
        assert sorted(seqs) == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_malformed_replaces_a_frame_with_broken_json_and_consumes_its_seq() -> None:
    async with running(rate_fps=800) as server, client(server) as c:
        sid = await _book_client(server, c)
        server.inject("malformed")
        seqs: list[int] = [c.data(sid)[-1]["seq"]]
        broken = 0
        while len(seqs) < 40:
            raw = await c.ws.recv(decode=False)
            try:
                frame = json.loads(raw)
            except ValueError:
                broken += 1
                continue
            if frame.get("sid") == sid:
                seqs.append(frame["seq"])
        assert broken == 1
        steps = [b - a for a, b in pairwise(seqs)]
        assert steps.count(2) == 1


async def test_bad_utf8_sends_a_text_frame_that_is_not_utf8() -> None:
    async with running(rate_fps=800) as server, client(server) as c:
        await _book_client(server, c)
        server.inject("bad_utf8")
        bad = 0
        for _ in range(40):
            raw = await c.ws.recv(decode=False)
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                bad += 1
        assert bad == 1


async def test_oversized_frame_exceeds_one_mib_and_a_default_client_closes_1009() -> None:
    async with running(rate_fps=800) as server:
        async with client(server) as big:
            await _book_client(server, big)
            server.inject("oversized")
            sizes = [len(await big.ws.recv(decode=False)) for _ in range(30)]
            assert max(sizes) > 1 << 20
        async with websockets.connect(server.url) as small:  # max_size 1 MiB by default
            small_client = ExchangeClient(small)
            await _book_client(server, small_client)
            server.inject("oversized")
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await small.recv()
            assert info.value.sent is not None and info.value.sent.code == 1009


async def test_stall_stops_data_but_keeps_answering_pings() -> None:
    async with running(rate_fps=800) as server, client(server) as c:
        await _book_client(server, c)
        t0 = time.monotonic()
        server.inject("stall", duration_s=1.0)
        waiter = await c.ws.ping(b"still there?")
        latency = await asyncio.wait_for(waiter, 0.5)
        assert latency < 0.5
        arrivals = [t0]
        while len(arrivals) < 100:
            await c.ws.recv(decode=False)
            arrivals.append(time.monotonic())
        gaps = [b - a for a, b in pairwise(arrivals)]
        assert max(gaps) > 0.7


async def test_no_pong_stops_answering_pings_while_data_flows() -> None:
    async with running(rate_fps=800) as server, client(server) as c:
        await _book_client(server, c)
        server.inject("no_pong")
        await asyncio.sleep(0.1)
        waiter = await c.ws.ping(b"hello?")
        for _ in range(20):
            await c.ws.recv(decode=False)  # data keeps coming
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(waiter, 0.5)


async def test_during_no_pong_commands_are_answered_and_after_it_pings_are_again() -> None:
    async with running(rate_fps=200) as server, client(server) as c:
        server.inject("no_pong", duration_s=0.6)
        await asyncio.sleep(0.05)
        unanswered = await c.ws.ping(b"during")
        assert (await c.sync())["type"] == "ok"  # the exchange still reads the client...
        assert not unanswered.done()  # ...and a pong would have come before that reply
        await asyncio.sleep(0.7)
        answered = await c.ws.ping(b"after")
        assert await asyncio.wait_for(answered, 1.0) < 1.0


async def test_a_client_close_during_no_pong_is_answered() -> None:
    async with running(rate_fps=200) as server, client(server) as c:
        server.inject("no_pong")
        await asyncio.sleep(0.05)
        await c.ws.close(1000)
        assert c.ws.close_code == 1000


async def test_server_initiated_unsubscribed_ends_the_subscription() -> None:
    async with running(rate_fps=800) as server, client(server) as c:
        sid = await _book_client(server, c)
        server.inject("unsubscribed")
        while True:
            frame = await c.recv()
            if frame["type"] == "unsubscribed":
                break
        assert frame["sid"] == sid and "id" not in frame and isinstance(frame["seq"], int)
        assert (await c.sync())["msg"] == []


async def test_error_25_ends_the_subscription_with_the_terminal_error() -> None:
    async with running(rate_fps=800) as server, client(server) as c:
        sid = await _book_client(server, c)
        server.inject("error25")
        while True:
            frame = await c.recv()
            if frame["type"] == "error":
                break
        assert frame["sid"] == sid and frame["msg"] == {
            "code": 25,
            "msg": "Subscription buffer overflow",
        }
        assert (await c.sync())["msg"] == []


async def test_a_rejected_handshake_gets_the_status_and_the_next_one_passes() -> None:
    async with running(faults=(parse_fault("reject:503@conn=1"),)) as server:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(server.url):
                pass
        assert info.value.response.status_code == 503
        async with websockets.connect(server.url) as ws:
            await ws.send('{"id":1,"cmd":"list_subscriptions"}')
            assert '"ok"' in await ws.recv()


async def test_a_slow_handshake_delays_the_upgrade() -> None:
    async with running(faults=(parse_fault("slow_handshake:400ms"),)) as server:
        t0 = time.monotonic()
        async with websockets.connect(server.url):
            assert time.monotonic() - t0 >= 0.4


async def test_scheduled_faults_fire_from_the_config() -> None:
    async with (
        running(rate_fps=1000, faults=(parse_fault("close:1013@after=40"),)) as server,
        client(server) as c,
    ):
        await c.subscribe(["orderbook_delta"], market_tickers=list(server.tape.market_tickers()))
        received = 0
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await c.ws.recv()
                received += 1
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        assert received <= 45


async def test_probabilistic_gaps_show_up_as_seq_jumps_and_in_the_truth() -> None:
    async with (
        running(rate_fps=2000, faults=(parse_fault("gap@p=0.05"),)) as server,
        client(server) as c,
    ):
        (sid,) = await c.subscribe(
            ["orderbook_delta"], market_tickers=list(server.tape.market_tickers())
        )
        seqs = await _seqs_after(c, sid, 400)
        jumps = sum(1 for a, b in pairwise(seqs) if b != a + 1)
        assert jumps >= 5
        assert server.truth is not None
        recorded = [f for f in server.truth.faults(1) if f["fault"] == "gap"]
        assert len(recorded) >= jumps


class _PingRecorder(ClientConnection):
    """A client connection that records the payload of every server ping."""

    pings: list[bytes]

    def process_event(self, event: Any) -> None:
        if getattr(event, "opcode", None) is Opcode.PING:
            self.pings = [*getattr(self, "pings", []), bytes(event.data)]
        super().process_event(event)


async def test_the_server_pings_with_the_heartbeat_payload() -> None:
    async with (
        running(rate_fps=0, switches=Switches(ping_interval_s=0.1)) as server,
        websockets.connect(server.url, create_connection=_PingRecorder) as ws,
    ):
        await asyncio.sleep(0.35)
        assert isinstance(ws, _PingRecorder)
        assert len(ws.pings) >= 2 and set(ws.pings) == {b"heartbeat"}


def test_a_tag_narrows_a_fault_to_the_connections_made_to_a_tagged_url() -> None:
    spec = parse_fault("drop@every=2s,tag=b+c")
    assert spec.tags == frozenset({"b", "c"})
    assert spec.applies_to(1, "b") and spec.applies_to(7, "c")
    assert not spec.applies_to(1, "a") and not spec.applies_to(1, None)
    rng = random.Random(1)
    assert FaultScheduler((spec,), 1, rng, "b").due(2.0) == [spec]
    assert FaultScheduler((spec,), 1, rng, None).due(2.0) == []
    reject = parse_fault("reject:503@tag=b")
    assert handshake_faults((reject,), 1, rng, "b") == [reject]
    assert handshake_faults((reject,), 1, rng, "a") == []
