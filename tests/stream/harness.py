"""A scripted, in-memory edge for engine and session tests (no sockets).

`wire` builds server frames in the current Kalshi form (docs/protocol.md section 8).
`Driver` plays the edge around an `Engine`: it stamps times, sends what the
engine asks to send (reporting it back with `command_sent`, as a live edge does)
and keeps every output for the test to inspect. `ScriptedSource` does the same
for a whole `Session`, with a responder that answers commands like a server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.events import Attempt, Closed, ConnectionEvent, Opened
from stream import Engine, EngineConfig, Session, Source
from stream.events import Output, SendCommand


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class wire:
    @staticmethod
    def ack(cmd_id: int | None, channel: str, sid: int) -> bytes:
        return dumps({"id": cmd_id, "type": "subscribed", "msg": {"channel": channel, "sid": sid}})

    @staticmethod
    def snapshot(
        sid: int,
        seq: int,
        market: str,
        yes: Iterable[tuple[str, str]] | None = (("0.4000", "10.00"),),
        no: Iterable[tuple[str, str]] | None = (("0.5500", "20.00"),),
        cmd_id: int | None = None,
    ) -> bytes:
        msg: dict[str, Any] = {"market_ticker": market, "market_id": "m-" + market, "clock": seq}
        if yes is not None:
            msg["yes_dollars_fp"] = [list(level) for level in yes]
        if no is not None:
            msg["no_dollars_fp"] = [list(level) for level in no]
        frame: dict[str, Any] = {"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": msg}
        if cmd_id is not None:
            frame["id"] = cmd_id
        return dumps(frame)

    @staticmethod
    def delta(sid: int, seq: int, market: str, price: str, delta: str, side: str = "yes") -> bytes:
        return dumps(
            {
                "type": "orderbook_delta",
                "sid": sid,
                "seq": seq,
                "msg": {
                    "market_ticker": market,
                    "market_id": "m-" + market,
                    "clock": seq,
                    "price_dollars": price,
                    "delta_fp": delta,
                    "side": side,
                    "ts_ms": 1795244476657,
                },
            }
        )

    @staticmethod
    def trade(
        sid: int, seq: int, market: str, trade_id: str = "t1", price: str = "0.4500"
    ) -> bytes:
        no = f"{1 - float(price):.4f}"
        return dumps(
            {
                "type": "trade",
                "sid": sid,
                "seq": seq,
                "msg": {
                    "trade_id": trade_id,
                    "market_ticker": market,
                    "yes_price_dollars": price,
                    "no_price_dollars": no,
                    "count_fp": "3.00",
                    "taker_side": "yes",
                    "taker_outcome_side": "yes",
                    "taker_book_side": "bid",
                    "is_block_trade": False,
                    "ts": 1795244476,
                    "ts_ms": 1795244476657,
                },
            }
        )

    @staticmethod
    def ticker(sid: int, market: str, price: str = "0.4500") -> bytes:
        return dumps(
            {
                "type": "ticker",
                "sid": sid,
                "msg": {
                    "market_ticker": market,
                    "market_id": "m-" + market,
                    "price_dollars": price,
                    "yes_bid_dollars": "0.4400",
                    "yes_ask_dollars": "0.4600",
                    "volume_fp": "100.00",
                    "open_interest_fp": "50.00",
                    "dollar_volume": 45,
                    "dollar_open_interest": 22,
                    "yes_bid_size_fp": "1.00",
                    "yes_ask_size_fp": "2.00",
                    "last_trade_size_fp": "1.00",
                    "ts": 1795244476,
                    "ts_ms": 1795244476657,
                    "time": "2026-11-21T08:00:00Z",
                },
            }
        )

    @staticmethod
    def unsubscribed(sid: int, seq: int = 1, cmd_id: int | None = None) -> bytes:
        frame: dict[str, Any] = {"type": "unsubscribed", "sid": sid, "seq": seq}
        if cmd_id is not None:
            frame["id"] = cmd_id
        return dumps(frame)

    @staticmethod
    def error(code: int, message: str, cmd_id: int | None = None, sid: int | None = None) -> bytes:
        frame: dict[str, Any] = {"type": "error", "msg": {"code": code, "msg": message}}
        if cmd_id is not None:
            frame["id"] = cmd_id
        if sid is not None:
            frame["sid"] = sid
        return dumps(frame)

    @staticmethod
    def ok(cmd_id: int, msg: Any, sid: int | None = None, seq: int | None = None) -> bytes:
        frame: dict[str, Any] = {"id": cmd_id, "type": "ok", "msg": msg}
        if sid is not None:
            frame["sid"] = sid
        if seq is not None:
            frame["seq"] = seq
        return dumps(frame)


@dataclass
class Driver:
    """Plays the edge around an engine: a clock, a socket that records, the outputs."""

    engine: Engine = field(default_factory=Engine)
    now_ns: int = 1_795_244_476_000_000_000
    mono_ns: int = 1_000_000_000
    outputs: list[Output] = field(default_factory=list)
    sent: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def with_config(cls, **kw: Any) -> Driver:
        return cls(engine=Engine(EngineConfig(**kw)))

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1e9)
        self.mono_ns += int(seconds * 1e9)
        self.engine.tick(self.now_ns, self.mono_ns)
        self.flush()

    def step(self) -> None:
        self.now_ns += 1000
        self.mono_ns += 1000

    def open(self, conn: int = 1, standby: bool = False) -> None:
        self.step()
        self.engine.connection_attempt(self.now_ns, self.mono_ns)
        self.engine.connection_opened(conn, self.now_ns, self.mono_ns, standby=standby)
        self.flush()

    def close(self, conn: int = 1, code: int = 1006, will_reconnect: bool = True) -> None:
        self.step()
        self.engine.connection_closed(
            conn, self.now_ns, self.mono_ns, code=code, will_reconnect=will_reconnect
        )
        self.flush()

    def recv(self, raw: bytes, conn: int = 1) -> None:
        self.step()
        self.engine.frame_received(raw, self.now_ns, self.mono_ns, conn)
        self.flush()

    def flush(self) -> None:
        """Send every command the engine asked for (as a live edge would) and keep outputs."""
        outbox = self.engine.outbox
        while outbox:
            out = outbox.popleft()
            self.outputs.append(out)
            if isinstance(out, SendCommand):
                self.sent.append((out.conn, json.loads(out.raw)))
                self.engine.command_sent(out.raw, self.now_ns, self.mono_ns, out.conn)

    def take_sent(self) -> list[tuple[int, dict[str, Any]]]:
        sent, self.sent = self.sent, []
        return sent

    def of(self, kind: type) -> list[Any]:
        return [o for o in self.outputs if isinstance(o, kind)]

    def reports(self, kind: str) -> list[Any]:
        from stream.events import ErrorReport

        return [o for o in self.outputs if isinstance(o, ErrorReport) and o.kind == kind]


Responder = Callable[[int, dict[str, Any]], list[bytes]]


class ScriptedSource(Source):
    """A Source for Session tests: frames come from the test, commands go to a responder.

    The responder plays the server: given (conn, command) it returns the frames the
    server would answer with. `auto_server()` is a responder that acks subscribes
    with sids from 1, and answers get_snapshot and list_subscriptions.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        owns_wire: bool = True,
        log: Callable[[str, int, bytes, int, int], None] | None = None,
    ) -> None:
        self.owns_wire = owns_wire
        self.log = log or (lambda dir_, conn, raw, recv_ns, mono_ns: None)
        self.responder = responder or auto_server()
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.now_ns = 1_795_244_476_000_000_000
        self.mono_ns = 1_000_000_000
        self.sent: list[tuple[int, dict[str, Any]]] = []
        self.session: Session | None = None
        self.stopped = asyncio.Event()
        self.handled: list[Output] = []

    def now(self) -> tuple[int, int]:
        return self.now_ns, self.mono_ns

    def _step(self) -> None:
        self.now_ns += 1000
        self.mono_ns += 1000

    async def run(self, session: Session) -> None:
        self.session = session
        engine = session.engine
        while True:
            get = asyncio.ensure_future(self.inbox.get())
            stop = asyncio.ensure_future(self.stopped.wait())
            done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                return
            stop.cancel()
            kind, arg = get.result()
            self._step()
            if kind == "open":
                self._event(arg, Attempt(url="ws://scripted", attempt=1))
                engine.connection_attempt(self.now_ns, self.mono_ns)
                self._event(arg, Opened(url="ws://scripted"))
                engine.connection_opened(arg, self.now_ns, self.mono_ns)
            elif kind == "close":
                self._event(arg, Closed(code=1006, disconnect_reason="network_error"))
                engine.connection_closed(arg, self.now_ns, self.mono_ns, code=1006)
            elif kind == "frame":
                conn, raw = arg
                self.log("in", conn, raw, self.now_ns, self.mono_ns)
                engine.frame_received(raw, self.now_ns, self.mono_ns, conn)
            elif kind == "tick":
                self.now_ns += int(arg * 1e9)
                self.mono_ns += int(arg * 1e9)
                engine.tick(self.now_ns, self.mono_ns)
            elif kind == "end":
                return
            elif kind == "fail":
                raise arg
            await session.pump()

    async def send(self, conn: int, raw: bytes) -> None:
        assert self.session is not None
        cmd = json.loads(raw)
        self.sent.append((conn, cmd))
        self.log("out", conn, raw, self.now_ns, self.mono_ns)
        self.session.engine.command_sent(raw, self.now_ns, self.mono_ns, conn)
        for reply in self.responder(conn, cmd):
            self.inbox.put_nowait(("frame", (conn, reply)))

    def _event(self, conn: int, event: ConnectionEvent) -> None:
        self.log("event", conn, event.to_bytes(), self.now_ns, self.mono_ns)

    async def handle(self, output: Output) -> None:
        self.handled.append(output)
        from stream.events import Checkpoint

        if isinstance(output, Checkpoint):
            from schemas.envelope import encode_json

            self.log(
                "checkpoint",
                output.conn,
                encode_json(output.record),
                output.recv_ns,
                output.mono_ns,
            )

    async def stop(self) -> None:
        self.stopped.set()

    # what a test does
    def open(self, conn: int = 1) -> None:
        self.inbox.put_nowait(("open", conn))

    def close_conn(self, conn: int = 1) -> None:
        self.inbox.put_nowait(("close", conn))

    def frame(self, raw: bytes, conn: int = 1) -> None:
        self.inbox.put_nowait(("frame", (conn, raw)))

    def tick(self, seconds: float) -> None:
        self.inbox.put_nowait(("tick", seconds))

    def end(self) -> None:
        self.inbox.put_nowait(("end", None))

    def fail(self, exc: BaseException) -> None:
        self.inbox.put_nowait(("fail", exc))

    async def settle(self) -> None:
        """Wait until every queued input has been processed."""
        while not self.inbox.empty():
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)


def auto_server(start_sid: int = 1, snapshot: bool = True) -> Responder:
    """A responder that acks subscribes (one sid per channel) and sends book snapshots."""
    sids = iter(range(start_sid, 1_000_000))
    subs: dict[int, tuple[str, list[str]]] = {}

    def respond(conn: int, cmd: dict[str, Any]) -> list[bytes]:
        name, params, cmd_id = cmd["cmd"], cmd.get("params", {}), cmd.get("id")
        out: list[bytes] = []
        if name == "subscribe":
            for channel in params["channels"]:
                sid = next(sids)
                tickers = params.get("market_tickers") or []
                subs[sid] = (channel, tickers)
                out.append(wire.ack(cmd_id, channel, sid))
                if channel == "orderbook_delta" and snapshot:
                    out.extend(wire.snapshot(sid, i + 1, t) for i, t in enumerate(tickers))
        elif name == "list_subscriptions":
            out.append(wire.ok(cmd_id, [{"channel": c, "sid": s} for s, (c, _) in subs.items()]))
        elif name == "unsubscribe":
            out.extend(wire.unsubscribed(s, 1, cmd_id) for s in params["sids"])
        return out

    return respond
