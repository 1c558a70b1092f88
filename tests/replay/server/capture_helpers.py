"""Shared pieces of the replay server's tests: captures, a raw client, the consumer's view.

Captures are real Parquet files: `record_live` (a scripted live session recorded the
way the recorder lays it out) or `RunBuilder` (records written one by one). The
expected frames come from a `ReplaySession` over the same capture, i.e. what the
live consumer saw; the client is a plain websockets client keeping raw bytes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

from replay.reading.session import ReplaySession
from replay.server import ServerConfig, SimServer
from replay.server.capture_tape import CaptureTape
from schemas.events import Attempt, Closed, Opened, RunStart, RunStop
from stream.decode import msg_bytes

from ..capture_factory import RunBuilder, dumps, subscribe, subscribed, trade
from ..rebuild import apply_book_frame
from .conftest import ExchangeClient

Level = dict[Decimal, Decimal]

#: `close` event details as the recorder writes them (recorder.link.sink): two reactive
#: disconnects, and a planned rotation that a client must not meet.
SERVER_1011 = {"code": 1011, "reason": "internal error", "disconnect_reason": "server_closed",
               "will_reconnect": True, "initiator": "server"}  # fmt: skip
NETWORK_1006 = {"code": 1006, "reason": "", "disconnect_reason": "network_error",
                "will_reconnect": True, "initiator": "server"}  # fmt: skip
PLANNED = {"code": 1000, "reason": "rotate", "disconnect_reason": "scheduled",
           "will_reconnect": True, "initiator": "client"}  # fmt: skip


@asynccontextmanager
async def serving(tape: CaptureTape, **config: Any) -> AsyncIterator[SimServer]:
    values: dict[str, Any] = {"auth": "open", "record_truth": True}
    values.update(config)
    async with SimServer(ServerConfig(**values), tape) as server:
        yield server


class RawClient(ExchangeClient):
    """The exchange tests' client, keeping every frame as bytes too."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        super().__init__(ws)
        self.raw: list[bytes] = []

    async def recv(self, timeout_s: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            raw = await self.ws.recv(decode=False)
        self.raw.append(raw)
        frame: dict[str, Any] = json.loads(raw)
        self.frames.append(frame)
        return frame

    async def until_reply(self, cid: int, timeout_s: float = 5.0) -> dict[str, Any]:
        while True:
            frame = await self.recv(timeout_s)
            if frame.get("id") == cid and frame.get("type") != "orderbook_snapshot":
                return frame

    async def subscribe(self, channels: list[str], **params: Any) -> list[int]:
        cid = await self.command("subscribe", {"channels": channels, **params})
        return [(await self.until_reply(cid))["msg"]["sid"] for _ in channels]

    async def sync(self) -> None:
        """Every frame sent before now has been read (a list_subscriptions round trip)."""
        await self.until_reply(await self.command("list_subscriptions"))

    async def read_until_closed(self, timeout_s: float = 10.0) -> int | None:
        """Read until the server closes; return the close code received (None: no frame)."""
        try:
            while True:
                await self.recv(timeout_s)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None

    def data(self, type_: str | None = None) -> list[tuple[dict[str, Any], bytes]]:
        """Data frames (and their raw bytes), in arrival order."""
        return [
            (f, r)
            for f, r in zip(self.frames, self.raw, strict=True)
            if f.get("type") not in ("subscribed", "ok", "error", "unsubscribed")
            and (type_ is None or f.get("type") == type_)
        ]


@asynccontextmanager
async def raw_client(server: SimServer) -> AsyncIterator[RawClient]:
    async with websockets.connect(server.url, max_size=None, close_timeout=0.5) as ws:
        yield RawClient(ws)


async def until_served(server: SimServer, tape: CaptureTape, timeout_s: float = 10.0) -> None:
    """Wait until the whole capture was served and written to every connection."""
    async with asyncio.timeout(timeout_s):
        while not tape.finished:
            await asyncio.sleep(0.005)
    await server.quiesce()


async def consumer_view(root: Path, channels: list[str], **kw: Any) -> ReplaySession:
    """Replay the capture as a consumer does; keep every raw frame of `channels` in
    `session.frames` (in order) and each market's last book in `session.last_books`."""
    session = ReplaySession(root, **kw)
    frames: list[Any] = []
    books: dict[str, Any] = {}

    def keep(frame: Any) -> None:
        frames.append(frame)
        if frame.channel == "orderbook_delta":
            books[frame.market_ticker] = session.book(frame.market_ticker)

    for channel in channels:
        session.on(channel, raw=True)(keep)
    async with session:
        await session.run_forever()
    session.frames = frames  # type: ignore[attr-defined]
    session.last_books = books  # type: ignore[attr-defined]
    return session


def recorded(frames: list[Any]) -> list[tuple[str, bytes]]:
    """(type, msg bytes) of a consumer's frames, snapshots left out (never re-sent)."""
    return [(f.type, msg_bytes(f.raw)) for f in frames if f.type != "orderbook_snapshot"]


def received(client: RawClient) -> list[tuple[str, bytes]]:
    return [(f["type"], msg_bytes(raw)) for f, raw in client.data()]


def client_books(client: RawClient) -> dict[str, tuple[Level, Level, int]]:
    """Each market's book from the client's snapshots and deltas: (yes, no, clock)."""
    books: dict[str, tuple[Level, Level]] = {}
    clocks: dict[str, int] = {}
    for frame, _ in client.data():
        if frame["type"] == "orderbook_delta":
            assert frame["msg"]["market_ticker"] in books, f"{frame} before its snapshot"
        if apply_book_frame(books, frame):
            clocks[frame["msg"]["market_ticker"]] = frame["msg"]["clock"]
    return {market: (*books[market], clocks[market]) for market in books}


def truth_levels(server: SimServer, ticker: str) -> tuple[Level, Level]:
    truth = server.book(ticker)
    assert truth is not None
    return (
        {Decimal(p): Decimal(q) for p, q in truth["yes"].items()},
        {Decimal(p): Decimal(q) for p, q in truth["no"].items()},
    )


def trades_capture(
    root: Path,
    segments: list[tuple[int, dict[str, Any] | None]],
    *,
    step_ns: int = 1_000_000,
    market: str = "KX-T",
) -> RunBuilder:
    """One run of trade-only connections: `segments` is [(trades, close detail), ...];
    each connection subscribes to `trade`, receives its trades (ids numbered on from 1),
    then ends with the close event given (None: the run ends with it open)."""
    run = RunBuilder(root, step_ns=step_ns)
    run.event(RunStart(run_id=run.run_id, version="test"), 0)
    number = 1
    for conn, (count, close) in enumerate(segments, start=1):
        run.event(Attempt(url="wss://x", attempt=1), 0)
        run.event(Opened(url="wss://x", standby=False), conn)
        run.send(subscribe(conn, ["trade"]), conn)
        run.receive(subscribed(conn, "trade", 1), conn)
        for seq in range(1, count + 1):
            frame = trade(1, seq, market, "0.5000", "0.5000", "1.00")
            frame["msg"]["trade_id"] = f"T{number}"
            run.receive(frame, conn)
            number += 1
        if close is not None:
            run.event(Closed(**close), conn)
    run.event(RunStop(reason="test"), 0)
    run.write()
    return run


def trade_ids(client: RawClient) -> list[str]:
    return [f["msg"]["trade_id"] for f, _ in client.data("trade")]


__all__ = [
    "NETWORK_1006",
    "PLANNED",
    "SERVER_1011",
    "RawClient",
    "client_books",
    "consumer_view",
    "dumps",
    "raw_client",
    "received",
    "recorded",
    "serving",
    "trade_ids",
    "trades_capture",
    "truth_levels",
    "until_served",
]
